//! Errors from opening or reading a capture, worded so the user knows what to do next.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CaptureError {
    #[error(
        "no permission to capture on {interface}\n\
         hint: run as root (sudo portsniff ...), or give the binary the capture capabilities once:\n      \
         sudo setcap cap_net_raw,cap_net_admin=eip \"$(command -v portsniff)\""
    )]
    PermissionDenied { interface: String },

    #[error("no interface named {interface:?}\nhint: interfaces that exist here: {available}")]
    NoSuchInterface {
        interface: String,
        available: String,
    },

    #[error("cannot capture on {interface}: {detail}")]
    Live { interface: String, detail: String },

    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{path} is not a capture file that libpcap can read ({detail})\n\
         hint: portsniff reads pcap and pcapng, as written by tcpdump -w, Wireshark or dumpcap"
    )]
    NotACapture { path: String, detail: String },

    #[error(
        "{path}: the capture is damaged after packet {packets} ({detail}); \
         everything before it has been reported"
    )]
    Truncated {
        path: String,
        packets: u64,
        detail: String,
    },

    #[error("the capture filter {filter:?} was rejected: {detail}")]
    Filter { filter: String, detail: String },

    #[error(
        "invalid filter expression {expression:?}: {detail}\n\
         hint: the expression uses tcpdump's syntax (man 7 pcap-filter), e.g. 'host 127.0.0.1'"
    )]
    Expression { expression: String, detail: String },

    #[error("cannot install the Ctrl-C handler: {0}")]
    Signal(String),
}

impl CaptureError {
    /// Sorts libpcap's activation errors into the ones a user can fix.
    pub(crate) fn from_live(interface: &str, e: pcap::Error) -> CaptureError {
        let detail = e.to_string();
        let lower = detail.to_ascii_lowercase();
        if lower.contains("permission") || lower.contains("not permitted") {
            CaptureError::PermissionDenied {
                interface: interface.to_string(),
            }
        } else if lower.contains("no such device") {
            CaptureError::NoSuchInterface {
                interface: interface.to_string(),
                available: super::interfaces()
                    .map(|v| v.join(", "))
                    .unwrap_or_else(|_| "(unknown)".to_string()),
            }
        } else {
            CaptureError::Live {
                interface: interface.to_string(),
                detail,
            }
        }
    }
}
