//! The kernel witness: what the kernel itself did to the watched port's packets and
//! sockets, from stable tracepoints through a small BPF program (`bpf/witness.bpf.c`):
//! drops with the kernel's reason (`skb:kfree_skb`), resets TCP sent or took
//! (`tcp:tcp_send_reset`, `tcp:tcp_receive_reset`), socket state changes
//! (`sock:inet_sock_set_state`) and SYN-ACK retransmissions. A packet capture sees none
//! of these; with them a finding states the kernel's reason instead of inferring one.
//!
//! - [`event`]: one record, `Copy`, as the ring buffer delivers it.
//! - [`witness`]: loading, attaching and reading the program (feature `kernel-witness`).
//! - [`names`]: reason names from the running kernel's BTF, function names from
//!   /proc/kallsyms.
//! - [`facts`]: the events joined to one connection ([`KernelFacts`], the JSON `kernel`
//!   object) and the table that holds them until their connection ends.
//!
//! Live only, and only where the kernel allows it; otherwise [`Unavailable`] says why,
//! once, and the diagnosis infers as before.

// Built without the witness, the records and names are still the types the reporters
// and the diagnosis know, but nothing makes them.
#![cfg_attr(not(feature = "kernel-witness"), allow(dead_code))]

pub mod event;
pub mod facts;
pub mod names;
#[cfg(feature = "kernel-witness")]
mod witness;

pub use event::{EventKind, KernelEvent, TcpState};
pub use facts::{KernelFacts, ResetOrigin, Witnessed};
pub use names::Names;
#[cfg(feature = "kernel-witness")]
pub use witness::Witness;

use std::fmt;

/// Why a run has no kernel events. Said once on stderr and in the summary's
/// `kernel_events.why`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// `--no-kernel-events`.
    TurnedOff,
    /// Built with `--no-default-features`.
    NotBuilt,
    /// Reading a capture file: the kernel's events are not in it.
    Replay,
    /// Neither CAP_BPF with CAP_PERFMON nor CAP_SYS_ADMIN.
    NotPermitted,
    /// No /sys/kernel/btf/vmlinux: the program cannot be relocated to this kernel.
    NoBtf,
    /// The kernel refused the program or a tracepoint (an older kernel, a locked-down
    /// container).
    Load { step: &'static str, message: String },
}

impl Unavailable {
    #[cfg(feature = "kernel-witness")]
    fn load(step: &'static str, e: impl fmt::Display) -> Unavailable {
        Unavailable::Load {
            step,
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
            Unavailable::NotPermitted => f.write_str(
                "loading BPF needs CAP_BPF and CAP_PERFMON (or root); see the README's setcap line",
            ),
            Unavailable::NoBtf => {
                f.write_str("this kernel has no BTF (/sys/kernel/btf/vmlinux is missing)")
            }
            Unavailable::Load { step, message } => {
                write!(f, "the kernel refused the BPF program ({step}: {message})")
            }
        }
    }
}

/// Whether this process may load and attach the witness: CAP_BPF with CAP_PERFMON
/// (tracing programs), or CAP_SYS_ADMIN which implies both.
pub fn permitted() -> bool {
    use caps::{CapSet, Capability};
    let has = |c| caps::has_cap(None, CapSet::Effective, c).unwrap_or(false);
    has(Capability::CAP_SYS_ADMIN) || (has(Capability::CAP_BPF) && has(Capability::CAP_PERFMON))
}
