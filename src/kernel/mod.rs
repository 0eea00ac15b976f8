//! The kernel witness: what the kernel itself did to the watched port's packets and
//! sockets, from stable tracepoints through a small BPF program (`bpf/witness.bpf.c`):
//! drops with the kernel's reason (`skb:kfree_skb`), resets TCP sent or took
//! (`tcp:tcp_send_reset`, `tcp:tcp_receive_reset`), socket state changes
//! (`sock:inet_sock_set_state`: a listener's at once, a connection's socket's whole path
//! in one record when it closes) and SYN-ACK retransmissions. A packet capture sees none
//! of these; with them a finding states the kernel's reason instead of inferring one.
//!
//! - [`event`]: one record, `Copy`, as the ring buffer delivers it.
//! - [`witness`]: loading, attaching and reading the program (feature `kernel-witness`);
//!   `core_btf` cuts the kernel's types it relocates against out of the kernel's BTF,
//!   so libbpf need not search all of it.
//! - [`names`]: reason names from the running kernel's BTF (the program names the
//!   functions drops happen in itself, and [`witness`] reads those names).
//! - [`storm`]: past a few thousand drops a second, the program counts them by kind
//!   instead of sending each: the counts, and the stretches of time they cover.
//! - [`facts`]: the events joined to one connection ([`KernelFacts`], the JSON `kernel`
//!   object) and the table that holds them until their connection ends.
//!
//! Live only, and only where the kernel allows it; otherwise [`Unavailable`] says why,
//! once, and the diagnosis infers as before.

// Built without the witness, the records and names are still the types the reporters
// and the diagnosis know, but nothing makes them.
#![cfg_attr(not(feature = "kernel-witness"), allow(dead_code))]

#[cfg(feature = "kernel-witness")]
mod core_btf;
pub mod event;
pub mod facts;
pub mod names;
pub mod storm;
#[cfg(feature = "kernel-witness")]
mod witness;

pub use event::{EventKind, KernelEvent, TcpState};
pub use facts::{KernelFacts, ResetOrigin, Witnessed};
pub use names::Names;
#[cfg(feature = "kernel-witness")]
pub use witness::{Reader, Witness};

use std::fmt;

/// Why a run has no kernel events. Said once on stderr and in the summary's
/// `kernel_events.why`: each says what stood in the way and, where there is one, what
/// the user can do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// `--no-kernel-events`.
    TurnedOff,
    /// Built with `--no-default-features`.
    NotBuilt,
    /// Reading a capture file: the kernel's events are not in it.
    Replay,
    /// Neither CAP_BPF with CAP_PERFMON nor CAP_SYS_ADMIN: the capabilities missing.
    NotPermitted { missing: Vec<&'static str> },
    /// In a user namespace other than the initial one (a rootless container, `unshare
    /// -U`): its capabilities, whatever they are, do not let it load tracing programs,
    /// which the kernel checks against the initial user namespace.
    UserNamespace,
    /// No /sys/kernel/btf/vmlinux: the program cannot be relocated to this kernel.
    NoBtf,
    /// Kernel lockdown in confidentiality mode: BPF may not read kernel memory.
    LockedDown,
    /// The kernel refused the program or a tracepoint at `step` (an older kernel without
    /// the tracepoints or drop reasons, a locked-down container).
    Load { step: String, message: String },
}

impl Unavailable {
    #[cfg(feature = "kernel-witness")]
    fn load(step: impl Into<String>, e: impl fmt::Display) -> Unavailable {
        Unavailable::Load {
            step: step.into(),
            message: e.to_string(),
        }
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::TurnedOff => f.write_str("turned off with --no-kernel-events"),
            Unavailable::NotBuilt => {
                f.write_str("this portsniff was built without the kernel witness")
            }
            Unavailable::Replay => f.write_str("a capture file holds packets, not kernel events"),
            Unavailable::NotPermitted { missing } => write!(
                f,
                "not permitted: loading the kernel witness needs CAP_BPF and CAP_PERFMON (or \
                 root's CAP_SYS_ADMIN), and this process lacks {}; add cap_bpf,cap_perfmon to \
                 the README's setcap line",
                missing.join(" and ")
            ),
            Unavailable::UserNamespace => f.write_str(
                "not permitted: portsniff runs in a user namespace (a rootless container?), \
                 whose capabilities cannot load kernel tracing programs; run it in the host's \
                 user namespace with CAP_BPF and CAP_PERFMON",
            ),
            Unavailable::NoBtf => {
                f.write_str("this kernel has no BTF (/sys/kernel/btf/vmlinux is missing)")
            }
            Unavailable::LockedDown => f.write_str(
                "the kernel is locked down (confidentiality mode, /sys/kernel/security/lockdown): \
                 BPF may not read kernel memory",
            ),
            Unavailable::Load { step, message } => {
                write!(f, "the kernel refused the BPF program ({step}: {message})")
            }
        }
    }
}

/// Whether this process may load and attach the witness: CAP_BPF with CAP_PERFMON
/// (tracing programs), or CAP_SYS_ADMIN which implies both, in the initial user
/// namespace (the kernel's `bpf_capable()` and `perfmon_capable()` ask there).
pub fn permitted() -> Result<(), Unavailable> {
    use caps::{CapSet, Capability};
    if !in_initial_user_namespace() {
        return Err(Unavailable::UserNamespace);
    }
    let has = |c| caps::has_cap(None, CapSet::Effective, c).unwrap_or(false);
    if has(Capability::CAP_SYS_ADMIN) {
        return Ok(());
    }
    let missing: Vec<&'static str> = [
        (Capability::CAP_BPF, "CAP_BPF"),
        (Capability::CAP_PERFMON, "CAP_PERFMON"),
    ]
    .into_iter()
    .filter(|&(c, _)| !has(c))
    .map(|(_, name)| name)
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Unavailable::NotPermitted { missing })
    }
}

/// The initial user namespace's inode, fixed by the kernel (`PROC_USER_INIT_INO`).
const INITIAL_USER_NAMESPACE: u64 = 0xEFFF_FFFD;

fn in_initial_user_namespace() -> bool {
    use std::os::unix::fs::MetadataExt;
    // Unreadable (no /proc): assume so, and let the kernel's answer speak.
    std::fs::metadata("/proc/self/ns/user").map_or(true, |m| m.ino() == INITIAL_USER_NAMESPACE)
}

/// Whether `/sys/kernel/security/lockdown` (`none integrity [confidentiality]`) says
/// the kernel forbids BPF to read its memory.
pub fn locked_down(lockdown: &str) -> bool {
    lockdown.contains("[confidentiality]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_permitted_names_the_capabilities_missing_and_the_fix() {
        let why = Unavailable::NotPermitted {
            missing: vec!["CAP_BPF", "CAP_PERFMON"],
        }
        .to_string();
        assert!(why.starts_with("not permitted: "), "{why}");
        assert!(why.contains("lacks CAP_BPF and CAP_PERFMON"), "{why}");
        assert!(why.contains("setcap"), "{why}");
    }

    #[test]
    fn only_confidentiality_lockdown_forbids_reading_kernel_memory() {
        assert!(locked_down("none integrity [confidentiality]\n"));
        assert!(!locked_down("none [integrity] confidentiality\n"));
        assert!(!locked_down("[none] integrity confidentiality\n"));
    }
}
