//! `--ladder`: a terminal sequence diagram of the first packets of a connection, the
//! client on the left and the server on the right, like the ladder diagrams of RFCs and
//! textbooks. A picture of "S, then R." is read at a glance where a packet list is not.
//!
//! The flow table only knows a flow's outcome when the flow ends, so the
//! [`LadderRecorder`] keeps the first [`MAX_PACKETS`] segments of every flow in flight,
//! raw, and only orients and relativises them (who is the client, which ISNs) once the
//! final [`FlowRecord`](crate::flow::FlowRecord) says so. Memory is bounded twice: per
//! flow and in flows held at once, so a SYN flood costs at most a few megabytes.
//!
//! Two halves: [`record`] keeps segments while flows are in flight (called per packet,
//! so it must not allocate once a flow's buffer exists); [`draw`] turns a finished
//! flow's segments into a [`Ladder`] and writes it as text or a JSON line. Neither
//! decides which format is printed: the printers do.

mod draw;
mod record;
#[cfg(test)]
mod tests;

pub use draw::Ladder;
pub use record::LadderRecorder;

/// Packets kept (and drawn) per flow: a failed connection shows its cause in its first
/// few packets, and a screenful is as much as a person reads.
pub const MAX_PACKETS: usize = 16;
/// Flows buffered at once; beyond it the oldest buffer is dropped. At ~1.2 KB a buffer
/// this is ~5 MB at worst.
pub const MAX_FLOWS: usize = 4096;
