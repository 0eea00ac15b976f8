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
//! [`cli`] turns arguments (and the terminal facts `main` reads) into a [`Config`];
//! [`pipeline::run`] wires the stages with a capture thread and a bounded channel and
//! returns an [`Error`] when a run cannot go on.

pub mod capture;
pub mod cli;
pub mod config;
pub mod decode;
pub mod diagnose;
pub mod error;
pub mod flow;
pub mod pipeline;
pub mod privileges;
pub mod report;

pub use config::Config;
pub use error::Error;
pub use pipeline::{run, RunResult};
