//! Errors from opening or reading a capture: what happened and to which interface or
//! file, the cause (libpcap's error, the I/O error) kept as `source()`, and a hint where
//! the user can do something about it. Printing them is `main`'s job.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("no permission to capture on {interface}")]
    PermissionDenied {
        interface: String,
        #[source]
        source: pcap::Error,
    },

    #[error("no interface named {interface:?}")]
    NoSuchInterface {
        interface: String,
        /// The interfaces libpcap lists here; `None` if listing them failed too.
        available: Option<Vec<String>>,
        /// libpcap's own error, when it (not our check against the list) said so.
        #[source]
        source: Option<pcap::Error>,
    },

    #[error("cannot capture on {interface}: {source}")]
    Live {
        interface: String,
        #[source]
        source: pcap::Error,
    },

    /// Listing the interfaces (for `-D`, or to check `-i`) failed.
    #[error("cannot capture on (list): {source}")]
    List {
        #[source]
        source: pcap::Error,
    },

    /// The capture thread stopped without saying how it ended (it panicked, or stays
    /// blocked in a read after Ctrl-C).
    #[error("cannot capture on {interface}: the capture thread ended without a report")]
    NoReport { interface: String },

    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// portsniff's own reader (`capture/file.rs`) reads files, not libpcap: the message
    /// must not send the user looking at libpcap.
    #[error("{path} is not a capture file portsniff can read ({damage})")]
    NotACapture {
        path: String,
        #[source]
        damage: Damage,
    },

    #[error(
        "{path}: the capture is damaged after packet {packets} ({damage}); \
         everything before it has been reported"
    )]
    Truncated {
        path: String,
        packets: u64,
        #[source]
        damage: Damage,
    },

    #[error("the capture filter {filter:?} was rejected: {source}")]
    Filter {
        filter: String,
        #[source]
        source: pcap::Error,
    },

    #[error("invalid filter expression {expression:?}: {source}")]
    Expression {
        expression: String,
        #[source]
        source: pcap::Error,
    },

    #[error("cannot install the Ctrl-C handler: {0}")]
    Signal(#[source] ctrlc::Error),
}

/// What is wrong in a capture file, at its start ([`CaptureError::NotACapture`]) or after
/// the records read so far ([`CaptureError::Truncated`]). The wording follows libpcap's
/// where it has one ("truncated dump file").
#[derive(Debug, Error)]
pub enum Damage {
    #[error("the file is empty: only got 0 bytes of a capture file header")]
    Empty,
    #[error("unknown file format: it starts with neither a pcap nor a pcapng header")]
    UnknownFormat,
    /// A compressed file (by its magic number): the tool that decompresses it.
    #[error("it is compressed with {0}")]
    Compressed(&'static str),
    #[error("it is a directory")]
    Directory,
    #[error("the file ends inside its header: only got {got} bytes")]
    HeaderCut { got: usize },
    #[error("a pcapng file with no interface description before its first packet")]
    NoInterface,
    #[error(
        "interface {index} has link type {linktype}, the first one {first}: portsniff reads \
         one link type per file"
    )]
    MixedLinkTypes {
        index: usize,
        linktype: i32,
        first: i32,
    },
    #[error("a packet names interface {0}, which was never described")]
    UndescribedInterface(u32),
    #[error(
        "a record claims {caplen} captured bytes, more than the maximum snapshot length {max}"
    )]
    RecordTooLong { caplen: u32, max: u32 },
    #[error("a block longer than {max_mib} MiB")]
    BlockTooLong { max_mib: usize },
    #[error(
        "truncated dump file: the last record holds {caplen} captured bytes, only {left} are left"
    )]
    CutRecord { caplen: u32, left: usize },
    #[error("truncated dump file: it ends {0} bytes into a record")]
    EndsInRecord(usize),
    /// A classic pcap record the parser could not read.
    #[error("an unreadable record")]
    UnreadableRecord,
    /// A pcapng block the parser could not read.
    #[error("unreadable record ({0})")]
    UnreadableBlock(#[source] pcap_parser::PcapError<&'static [u8]>),
    #[error("read error: {0}")]
    Read(#[source] std::io::Error),
    /// A read failed and its `io::Error` was already taken.
    #[error("read error")]
    ReadUnknown,
}

impl CaptureError {
    /// Sorts libpcap's activation errors into the ones a user can fix.
    pub(crate) fn from_live(interface: &str, e: pcap::Error) -> CaptureError {
        let lower = e.to_string().to_ascii_lowercase();
        if lower.contains("permission") || lower.contains("not permitted") {
            CaptureError::PermissionDenied {
                interface: interface.to_string(),
                source: e,
            }
        } else if lower.contains("no such device") {
            CaptureError::NoSuchInterface {
                interface: interface.to_string(),
                available: super::interfaces().ok(),
                source: Some(e),
            }
        } else {
            CaptureError::Live {
                interface: interface.to_string(),
                source: e,
            }
        }
    }

    /// What the user can do about it: the text after `hint: `, possibly several lines.
    pub fn hint(&self) -> Option<String> {
        match self {
            CaptureError::PermissionDenied { .. } => Some(
                "run as root (sudo portsniff ...), or give the binary the capture capabilities \
                 once:\n      \
                 sudo setcap cap_net_raw,cap_net_admin=eip \"$(command -v portsniff)\""
                    .to_string(),
            ),
            CaptureError::NoSuchInterface { available, .. } => Some(format!(
                "interfaces that exist here: {}",
                available
                    .as_ref()
                    .map_or_else(|| "(unknown)".to_string(), |names| names.join(", "))
            )),
            CaptureError::NotACapture {
                path,
                damage: Damage::Compressed(tool),
            } => Some(format!(
                "decompress it on the way in: {tool} -dc {path} | portsniff -r - --port PORT"
            )),
            CaptureError::NotACapture { .. } => Some(
                "portsniff reads pcap and pcapng, as written by tcpdump -w, Wireshark or dumpcap"
                    .to_string(),
            ),
            CaptureError::Expression { .. } => Some(
                "the expression uses tcpdump's syntax (man 7 pcap-filter), e.g. 'host 127.0.0.1'"
                    .to_string(),
            ),
            CaptureError::Live { .. }
            | CaptureError::List { .. }
            | CaptureError::NoReport { .. }
            | CaptureError::Open { .. }
            | CaptureError::Truncated { .. }
            | CaptureError::Filter { .. }
            | CaptureError::Signal(_) => None,
        }
    }
}
