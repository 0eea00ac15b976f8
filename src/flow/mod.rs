//! Flow: the per-connection TCP state machine and the table that holds the connections.
//!
//! Input: decoded [`Segment`](crate::decode::Segment)s, in capture order, and clock ticks.
//! Output: [`FlowEvent`]s carrying [`FlowRecord`]s. This stage knows nothing about how
//! packets were captured or how records are printed.

pub mod record;
pub mod state;
pub mod table;

pub use record::{EndReason, FlowEvent, FlowRecord, History, IcmpAnswer, Outcome, Side, SynGaps};
pub use state::{Control, State};
pub use table::{FlowConfig, FlowTable, TableStats};
