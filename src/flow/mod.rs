//! Flow: the per-connection TCP state machine and the table that holds the connections.
//!
//! Input: decoded [`Segment`](crate::decode::Segment)s, in capture order, and clock ticks.
//! Output: [`FlowEvent`]s carrying [`FlowRecord`]s. This stage knows nothing about how
//! packets were captured or how records are printed.

mod account;
mod packed;
pub mod record;
pub mod seq;
pub mod state;
pub mod table;
#[cfg(test)]
mod testing;
pub mod zeek;

pub use record::{EndReason, FlowEvent, FlowRecord, History, IcmpAnswer, Outcome, Side, SynGaps};
pub use seq::SeqNumber;
pub use state::{Control, State};
pub use table::{FlowConfig, FlowTable, TableStats};
pub use zeek::ConnState;
