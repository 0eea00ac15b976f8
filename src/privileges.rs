//! Privileges: once the capture handle is open, portsniff keeps only what it still needs,
//! as tcpdump does with `-Z`.
//!
//! Opening a live capture needs CAP_NET_RAW (and CAP_NET_ADMIN for some interfaces);
//! reading packets from the open handle needs nothing. Naming the processes behind a
//! socket means reading other users' `/proc/PID/fd` and `/proc/PID/ns/net`, which the
//! kernel allows with CAP_SYS_PTRACE (ptrace access mode read). So after the handle is
//! open:
//!
//! - started through sudo, portsniff becomes the invoking user (`SUDO_UID`/`SUDO_GID`);
//!   with `-Z USER` it becomes that user;
//! - it keeps CAP_SYS_PTRACE in its permitted and effective sets (only if it had it), or
//!   nothing at all with `--no-attribution`; the inheritable and ambient sets are
//!   cleared, and the bounding set is cut to the same, so nothing can come back.
//!
//! This must run before any other thread exists: capability sets are per thread.

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid, User};
use std::path::Path;
use thiserror::Error;

/// Why portsniff could not become who it should be or keep only what it needs; the
/// system's own error is kept as `source()`.
#[derive(Debug, Error)]
pub enum PrivilegeError {
    /// `-Z USER` names no account (or the lookup itself failed: its error is the source).
    #[error("-Z {user}: no such user")]
    NoSuchUser {
        user: String,
        #[source]
        source: Option<nix::Error>,
    },
    #[error("cannot switch to user {user} (uid {uid}): {source}")]
    Switch {
        user: String,
        uid: u32,
        #[source]
        source: nix::Error,
    },
    #[error("cannot reduce capabilities: {0}")]
    Capabilities(#[source] caps::errors::CapsError),
    #[error("-Z {0}: only root can switch users")]
    NotRoot(String),
}

/// Who to become and what to keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// `None`: stay who we are (not started by root through sudo, and no `-Z`).
    pub become_user: Option<Account>,
    /// Keep CAP_SYS_PTRACE for process attribution.
    pub keep_ptrace: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Once the capture is open: switches user (the sudo caller, or `run_as` from `-Z USER`)
/// and drops the capabilities no longer needed (CAP_SYS_PTRACE stays with
/// `attribution`). The `-w` file portsniff created is handed to that user first, as
/// tcpdump does, so they can read and delete it; `write` is only ever a file portsniff
/// created (never a device such as `/dev/null`, which must keep its owner). Call it
/// before any other thread exists: capabilities are per thread.
pub fn relinquish(plan: &Plan, write: Option<&Path>) -> Result<(), PrivilegeError> {
    if let (Some(user), Some(path)) = (&plan.become_user, write) {
        if let Err(e) = std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)) {
            tracing::warn!(error = %e, "cannot hand the -w file to {}", user.name);
        }
    }
    drop_privileges(plan)
}

/// Decides who to become: `-Z USER` first, else the sudo caller when we are root.
pub fn plan(run_as: Option<&str>, attribution: bool) -> Result<Plan, PrivilegeError> {
    let root = Uid::effective().is_root();
    let become_user = match run_as {
        Some(name) => {
            if !root {
                return Err(PrivilegeError::NotRoot(name.to_string()));
            }
            let no_such_user = |source| PrivilegeError::NoSuchUser {
                user: name.to_string(),
                source,
            };
            let user = match name.parse::<u32>() {
                Ok(uid) => User::from_uid(Uid::from_raw(uid)),
                Err(_) => User::from_name(name),
            }
            .map_err(|e| no_such_user(Some(e)))?
            .ok_or_else(|| no_such_user(None))?;
            Some(Account {
                name: user.name,
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            })
        }
        None if root => sudo_caller(),
        None => None,
    };
    Ok(Plan {
        become_user,
        keep_ptrace: attribution,
    })
}

/// The user who ran `sudo portsniff`, if that is how we were started (and not root).
fn sudo_caller() -> Option<Account> {
    let uid: u32 = std::env::var("SUDO_UID").ok()?.parse().ok()?;
    let gid: u32 = std::env::var("SUDO_GID").ok()?.parse().ok()?;
    if uid == 0 {
        return None;
    }
    let name = std::env::var("SUDO_USER").unwrap_or_else(|_| uid.to_string());
    Some(Account { name, uid, gid })
}

/// Carries out the plan. Call once, from the only thread.
pub fn drop_privileges(plan: &Plan) -> Result<(), PrivilegeError> {
    let cap_err = PrivilegeError::Capabilities;
    let mut keep = CapsHashSet::new();
    if plan.keep_ptrace
        && caps::has_cap(None, CapSet::Permitted, Capability::CAP_SYS_PTRACE).map_err(cap_err)?
    {
        keep.insert(Capability::CAP_SYS_PTRACE);
    }
    // The bounding set can only shrink with CAP_SETPCAP, which root has and a binary with
    // file capabilities does not; such a binary's caps end with the permitted set below.
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        for cap in caps::all() {
            if !keep.contains(&cap) {
                // Capabilities this kernel does not know cannot be dropped: ignore.
                let _ = caps::drop(None, CapSet::Bounding, cap);
            }
        }
    }
    if let Some(user) = &plan.become_user {
        let switch_err = |source: nix::Error| PrivilegeError::Switch {
            user: user.name.clone(),
            uid: user.uid,
            source,
        };
        // Without keepcaps, setuid from root clears the permitted set (capabilities(7)).
        caps::securebits::set_keepcaps(!keep.is_empty()).map_err(cap_err)?;
        let gid = Gid::from_raw(user.gid);
        let uid = Uid::from_raw(user.uid);
        nix::unistd::setgroups(&[gid]).map_err(switch_err)?;
        nix::unistd::setresgid(gid, gid, gid).map_err(switch_err)?;
        nix::unistd::setresuid(uid, uid, uid).map_err(switch_err)?;
        caps::securebits::set_keepcaps(false).map_err(cap_err)?;
    }
    caps::clear(None, CapSet::Ambient).map_err(cap_err)?;
    caps::clear(None, CapSet::Inheritable).map_err(cap_err)?;
    caps::set(None, CapSet::Effective, &keep).map_err(cap_err)?;
    caps::set(None, CapSet::Permitted, &keep).map_err(cap_err)?;
    tracing::info!(
        user = plan.become_user.as_ref().map_or("(unchanged)", |u| u.name.as_str()),
        kept = ?keep,
        "privileges dropped"
    );
    Ok(())
}

/// The process's credentials as the kernel reports them (`/proc/self/status`), so the
/// summary can prove what portsniff runs with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// Hex bitmasks, as in /proc/self/status.
    pub cap_effective: String,
    pub cap_permitted: String,
    pub cap_inheritable: String,
    pub cap_bounding: String,
    pub cap_ambient: String,
}

impl Credentials {
    pub fn current() -> Credentials {
        let mut c = Credentials::default();
        let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
            return c;
        };
        for line in status.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let first = value.split_whitespace().next().unwrap_or("").to_string();
            match key {
                "Uid" => c.uid = first.parse().unwrap_or(u32::MAX),
                "Gid" => c.gid = first.parse().unwrap_or(u32::MAX),
                "CapEff" => c.cap_effective = first,
                "CapPrm" => c.cap_permitted = first,
                "CapInh" => c.cap_inheritable = first,
                "CapBnd" => c.cap_bounding = first,
                "CapAmb" => c.cap_ambient = first,
                _ => {}
            }
        }
        c
    }
}
