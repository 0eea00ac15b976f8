//! portsniff: watch one TCP port and tell, connection by connection, why connections to
//! it fail.
//!
//! The pipeline, each stage a module, data flowing one way:
//!
//! ```text
//! capture ──Batch of Segments──▶ flow (table + state machine) ──FlowEvent──▶ report
//!  libpcap, BPF,                  one TCP state machine per        │          text / JSON lines,
//!  decode in place                connection, timers, eviction     │          summary, -w pcap
//!                                                                  ▼            ▲
//!                                   diagnose: flow records + /proc facts ──Finding
//! ```
//!
//! [`cli`] turns arguments into a [`Config`]; [`pipeline::run`] wires the stages with a
//! capture thread and a bounded channel.

pub mod capture;
pub mod cli;
pub mod decode;
pub mod diagnose;
pub mod flow;
pub mod pipeline;
pub mod privileges;
pub mod report;

pub use pipeline::{run, Config, RunResult};

/// Everything that can stop a run, with messages meant for the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Capture(#[from] capture::CaptureError),
    #[error(transparent)]
    Write(#[from] report::pcap_writer::WriteError),
    #[error("cannot write the report: {0}")]
    Output(std::io::Error),
    #[error("cannot start the capture thread: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    Privileges(#[from] privileges::PrivilegeError),
}
