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
//!                                                 ▲
//!  kernel witness (BPF on tracepoints) ──KernelEvents──▶ flow (joined per connection)
//! ```
//!
//! [`cli`] turns arguments (and the terminal facts `main` reads) into a [`Config`];
//! [`run`] wires the stages with a capture thread and a bounded channel and
//! returns an [`Error`] when a run cannot go on.

// The public surface is deliberate: what the binary, the integration tests, the benches
// and the fuzz targets use. `decode` and `flow` are public whole because the benches,
// fuzz targets and property tests drive the decoder and the flow table directly; `cli`,
// `config` and `docs` (`--generate`) because the binary builds on them. Everything else
// is reached through the re-exports below.
mod capture;
pub mod cli;
pub mod config;
pub mod decode;
mod diagnose;
pub mod docs;
mod error;
pub mod flow;
mod kernel;
mod pipeline;
mod privileges;
mod report;

pub use capture::{install_stop_handler, interface_lines, Limits, Source};
pub use config::{Config, Terminal};
pub use diagnose::Evidence;
// The firewall reader, whole: the live test reads a namespace's ruleset with it.
pub use diagnose::host::firewall;
pub use error::Error;
pub use pipeline::{prepare, run, Prepared, RunResult};
pub use privileges::{plan as plan_privileges, relinquish, Account, Plan};
pub use report::pcap_writer::PcapOutput;
pub use report::progress::Bar;
pub use report::{undo_on_forced_exit, Format, Style};
