//! Keeps the first [`MAX_PACKETS`] segments of each flow in flight until its final record
//! says whether to draw it. Called for every decoded segment: once a flow's buffer
//! exists nothing here allocates, and nothing here formats or writes.

use super::{Ladder, MAX_FLOWS, MAX_PACKETS};
use crate::decode::{Segment, SegmentKind};
use crate::flow::FlowRecord;
use std::collections::HashMap;

const NIL: u32 = u32::MAX;

/// The first packets of one flow, in a slab slot threaded on a creation-order list.
struct Buffer {
    id: u64,
    /// Only `segs[..len]` is meaningful; the rest are copies of the first segment, which
    /// spares an `Option` per slot (and `Segment` has no `Default`).
    segs: [Segment; MAX_PACKETS],
    len: u8,
    /// Segments seen, kept or not: more than `len` means the ladder is truncated.
    seen: u32,
    /// Neighbours on the creation-order list (older, newer).
    prev: u32,
    next: u32,
}

/// Keeps the first packets of each flow until its outcome is known, then draws it.
pub struct LadderRecorder {
    only_flow: Option<u16>,
    max_flows: usize,
    index: HashMap<u64, u32, ahash::RandomState>,
    /// Slots are reused through `free`, so once the slab has grown, recording allocates
    /// nothing.
    bufs: Vec<Buffer>,
    free: Vec<u32>,
    /// Oldest buffer (first to drop when full) and newest.
    head: u32,
    tail: u32,
    /// Highest flow id seen. The flow table numbers flows in order of first packet, so a
    /// segment of a lower id without a buffer belongs to a flow already finished (a
    /// straggler after the RST, say) or dropped by the cap: buffering it again would
    /// leak a buffer that no `finish` ever frees, and draw a ladder without its start.
    newest: Option<u64>,
}

impl LadderRecorder {
    /// `only_flow`: Some(client_port) = draw only flows whose client port is this (the
    /// `--flow CLIENT_PORT` option), whatever their outcome; None = draw every problem
    /// flow (outcome.is_problem()).
    pub fn new(only_flow: Option<u16>) -> LadderRecorder {
        LadderRecorder::with_max_flows(only_flow, MAX_FLOWS)
    }

    pub(super) fn with_max_flows(only_flow: Option<u16>, max_flows: usize) -> LadderRecorder {
        let max_flows = max_flows.clamp(1, NIL as usize - 1);
        LadderRecorder {
            only_flow,
            max_flows,
            index: HashMap::with_capacity_and_hasher(max_flows.min(1024), Default::default()),
            bufs: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            newest: None,
        }
    }

    /// One segment of flow `flow` (the flow id the flow table returned), in capture order.
    /// Called for every decoded segment, TCP or ICMP; must be cheap and never allocate once
    /// a flow's buffer exists (keep at most MAX_PACKETS = 16 per flow; cap the number of
    /// flows buffered at once, e.g. 4096, dropping the oldest buffer beyond it, so a flood
    /// cannot exhaust memory).
    ///
    /// Call it for a segment before [`finish`](Self::finish) for the record that segment
    /// ended, or the last packet (the RST, the final ACK) is missing from the drawing.
    pub fn segment(&mut self, flow: u64, seg: &Segment) {
        // Only what is drawn is kept, so other kinds of segment cannot fill a buffer.
        if !matches!(seg.kind, SegmentKind::Tcp(_) | SegmentKind::Icmp(_)) {
            return;
        }
        if let Some(&slot) = self.index.get(&flow) {
            let b = &mut self.bufs[slot as usize];
            if let Some(s) = b.segs.get_mut(usize::from(b.len)) {
                *s = *seg;
                b.len += 1;
            }
            b.seen = b.seen.saturating_add(1);
            return;
        }
        if self.newest.is_some_and(|n| flow <= n) {
            return;
        }
        self.newest = Some(flow);
        // With `--flow PORT` only one flow is wanted: a segment with neither port equal to
        // it cannot start that flow, so a flood of other flows costs nothing.
        if let Some(port) = self.only_flow {
            if seg.src.port != port && seg.dst.port != port {
                return;
            }
        }
        self.insert(flow, seg);
    }

    /// The flow's final record: if it should be drawn, return its ladder; in every case
    /// forget its buffer.
    ///
    /// A live "still unanswered" notice (`rec.end` is None) is not final: it draws nothing
    /// and keeps the buffer, since the flow's final record follows and should be drawn
    /// with all its SYNs.
    pub fn finish(&mut self, rec: &FlowRecord) -> Option<Ladder> {
        if !rec.is_final() {
            return None;
        }
        let slot = self.index.remove(&rec.id)?;
        self.unlink(slot);
        self.free.push(slot);
        let draw = match self.only_flow {
            Some(port) => rec.client.port == port,
            None => rec.outcome.is_problem(),
        };
        if !draw {
            return None;
        }
        let b = &self.bufs[slot as usize];
        let kept = &b.segs[..usize::from(b.len)];
        let truncated = usize::try_from(b.seen).map_or(true, |seen| seen > kept.len());
        Some(Ladder::build(rec, kept, truncated))
    }

    /// Flows currently buffered.
    #[cfg(test)]
    pub(super) fn buffered(&self) -> usize {
        self.index.len()
    }

    /// Slab slots ever made (reused ones count once).
    #[cfg(test)]
    pub(super) fn slots(&self) -> usize {
        self.bufs.len()
    }

    fn insert(&mut self, flow: u64, seg: &Segment) {
        if self.index.len() >= self.max_flows {
            let oldest = self.head;
            if oldest != NIL {
                let id = self.bufs[oldest as usize].id;
                self.index.remove(&id);
                self.unlink(oldest);
                self.free.push(oldest);
            }
        }
        let buf = Buffer {
            id: flow,
            segs: [*seg; MAX_PACKETS],
            len: 1,
            seen: 1,
            prev: NIL,
            next: NIL,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.bufs[slot as usize] = buf;
                slot
            }
            None => {
                self.bufs.push(buf);
                // At most `max_flows` slots, which is below NIL.
                u32::try_from(self.bufs.len() - 1).unwrap_or(NIL - 1)
            }
        };
        self.index.insert(flow, slot);
        self.link_tail(slot);
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let b = &self.bufs[slot as usize];
            (b.prev, b.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.bufs[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.bufs[next as usize].prev = prev;
        }
        let b = &mut self.bufs[slot as usize];
        b.prev = NIL;
        b.next = NIL;
    }

    fn link_tail(&mut self, slot: u32) {
        let old_tail = self.tail;
        {
            let b = &mut self.bufs[slot as usize];
            b.prev = old_tail;
            b.next = NIL;
        }
        if old_tail == NIL {
            self.head = slot;
        } else {
            self.bufs[old_tail as usize].next = slot;
        }
        self.tail = slot;
    }
}
