//! The crate's error: everything that can stop a run, one variant per layer, each
//! keeping its cause as `source()`.
//!
//! A message says what happened and to what (an interface, a file, a user); a separate
//! [`Error::hint`] says what the user can do about it. Printing, and choosing the exit
//! status, belong to `main`, not here.

use crate::capture::CaptureError;
use crate::privileges::PrivilegeError;
use crate::report::pcap_writer::WriteError;
use std::io;

/// Everything that can stop a run, with messages meant for the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("cannot write the report: {0}")]
    Output(#[source] io::Error),
    #[error("cannot start the capture thread: {0}")]
    Thread(#[source] io::Error),
    #[error(transparent)]
    Privileges(#[from] PrivilegeError),
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// What the user can do about it, if there is something to say: the text after
    /// `hint: `, possibly over several lines.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Capture(e) => e.hint(),
            Error::Metrics { addr, source } => match source.kind() {
                io::ErrorKind::AddrInUse => Some(format!(
                    "another program serves on port {}: choose another with --metrics (9464 is the usual exporter port)",
                    addr.port()
                )),
                io::ErrorKind::AddrNotAvailable => Some(format!(
                    "{} is not an address of this machine: give one of its addresses, 127.0.0.1, or 0.0.0.0 for all",
                    addr.ip()
                )),
                io::ErrorKind::PermissionDenied => Some(
                    "ports below 1024 need root or CAP_NET_BIND_SERVICE: use a higher port".to_string(),
                ),
                _ => None,
            },
            Error::Write(_) | Error::Output(_) | Error::Thread(_) | Error::Privileges(_) => None,
        }
    }
}
