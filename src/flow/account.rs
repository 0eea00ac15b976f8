//! What one segment adds to a flow besides its state: packet and byte counts, the
//! handshake's SYN and SYN-ACK details, the highest sequence number sent (to tell
//! retransmissions), zero windows, and Zeek's history letters.
//!
//! Pure bookkeeping: it never changes the flow's state (that is `state.rs`), and it runs
//! on every segment, so it must not allocate or format.

use super::packed::{
    Flow, MaybeTs, PackedOptions, Rares, Seq, HAS_ANSWERED_SYN, HAS_LAST_SYN, LAST_PAYLOAD_BY,
    SAW_ACK, SAW_DATA,
};
use super::record::{History, Side};
use super::seq::SeqNumber;
use super::state::Control;
use crate::decode::{TcpSegment, Timestamp};

impl Flow {
    /// Counters, history letters and sequence tracking for one segment.
    pub(super) fn account(
        &mut self,
        side: Side,
        seg: &TcpSegment,
        ctl: Control,
        ts: Timestamp,
        rares: &mut Rares,
    ) {
        let i = side.index();
        self.last_ts = self.last_ts.max(ts);
        self.packets[i] = self.packets[i].saturating_add(1);
        self.bytes[i] += u64::from(seg.payload_len);

        self.history_letters(side, seg);
        self.handshake_details(side, seg, ctl, ts, rares);
        if seg.payload_len > 0 {
            self.sides.set(LAST_PAYLOAD_BY, side);
        }
        self.sequence_space(side, seg, rares);
        self.zero_window(side, seg, ts, rares);
    }

    /// The client's ISN and SYN schedule, each side's handshake options, and the SYN the
    /// first SYN-ACK answered (where the handshake RTT starts).
    fn handshake_details(
        &mut self,
        side: Side,
        seg: &TcpSegment,
        ctl: Control,
        ts: Timestamp,
        rares: &mut Rares,
    ) {
        let i = side.index();
        match ctl {
            Control::Syn if side == Side::Client => {
                if self.client_isn().is_none() {
                    self.set_client_isn(SeqNumber(seg.seq));
                    self.options[i] = PackedOptions::pack(seg.options);
                }
                if self.facts.has(HAS_LAST_SYN) {
                    let gap = ts.micros_since(self.at(self.last_syn));
                    rares.get_or_make(&mut self.rare).syn_gaps.push(gap);
                }
                self.syn_count = self.syn_count.saturating_add(1);
                self.last_syn = self.offset(ts);
                self.facts.set(HAS_LAST_SYN);
            }
            Control::SynAck if side == Side::Server => {
                if self.synack_count == 0 {
                    self.options[i] = PackedOptions::pack(seg.options);
                    if self.facts.has(HAS_LAST_SYN) {
                        self.handshake = self.last_syn;
                        self.facts.set(HAS_ANSWERED_SYN);
                    }
                    // The SYN-ACK acknowledges the client's ISN + 1.
                    if self.client_isn().is_none() {
                        self.set_client_isn(SeqNumber(seg.ack) - 1);
                    }
                }
                self.synack_count = self.synack_count.saturating_add(1);
            }
            Control::Syn
            | Control::SynAck
            | Control::Rst
            | Control::Fin
            | Control::Segment
            | Control::Unreachable
            | Control::SoftUnreachable => {}
        }
    }

    /// Retransmissions (a segment ending at or before the highest number already sent),
    /// the new highest number, and where the FIN sits.
    fn sequence_space(&mut self, side: Side, seg: &TcpSegment, rares: &mut Rares) {
        let i = side.index();
        let seq = SeqNumber(seg.seq);
        let payload = seg.payload_len as usize;
        // RFC 9293 §3.4: SYN and FIN take one sequence number each.
        let end = seq + payload + usize::from(seg.flags.syn()) + usize::from(seg.flags.fin());
        let snd_max = self.seq(side, Seq::SndMax);
        if !seg.flags.syn() && !seg.flags.rst() && (seg.payload_len > 0 || seg.flags.fin()) {
            // RFC 9293 §3.8.4: a keep-alive carries one old octet (or none) just below
            // SND.NXT; it is sent again on purpose, not lost.
            let is_keepalive =
                seg.payload_len <= 1 && !seg.flags.fin() && snd_max.is_some_and(|m| seq + 1 == m);
            if let Some(max) = snd_max {
                if end.at_or_before(max) && !is_keepalive {
                    let rare = rares.get_or_make(&mut self.rare);
                    rare.retransmits[i] = rare.retransmits[i].saturating_add(1);
                    if seg.payload_len > 0 {
                        let n = rare.data_retransmits[i].saturating_add(1);
                        rare.data_retransmits[i] = n;
                        log_letter(&mut self.history, side, b'T', n);
                    }
                }
            }
        }
        // A RST's sequence number says nothing of what was sent (RFC 9293 §3.10.7.3 only
        // checks it is in the window).
        if !seg.flags.rst() {
            let max = match snd_max {
                Some(max) if end.at_or_before(max) => max,
                _ => end,
            };
            self.set_seq(side, Seq::SndMax, max);
        }
        if seg.flags.fin() {
            // The latest FIN: a FIN at a new sequence number replaces the old one.
            self.set_seq(side, Seq::Fin, seq + payload);
        }
    }

    /// A zero window means the receiving application stopped reading (RFC 9293
    /// §3.8.6.2); count each time it closes, not every segment while it stays shut.
    fn zero_window(&mut self, side: Side, seg: &TcpSegment, ts: Timestamp, rares: &mut Rares) {
        if seg.flags.syn() || seg.flags.rst() {
            return;
        }
        let i = side.index();
        let since = rares.get(self.rare).and_then(|r| r.zero_since[i].get());
        match (seg.window, since) {
            (0, None) => {
                let rare = rares.get_or_make(&mut self.rare);
                rare.zero_since[i] = MaybeTs::some(ts);
                rare.zero_windows[i] = rare.zero_windows[i].saturating_add(1);
                log_letter(&mut self.history, side, b'W', rare.zero_windows[i]);
            }
            (0, Some(_)) => {}
            (_, Some(since)) => {
                let rare = rares.get_or_make(&mut self.rare);
                rare.zero_since[i] = MaybeTs::NONE;
                let held = ts.micros_since(since);
                rare.zero_window_us[i] = rare.zero_window_us[i].max(held);
            }
            (_, None) => {}
        }
    }

    /// Zeek's history letters for one segment, by its `update_history`
    /// (`TCPSessionAdapter.cc`): a segment with two of SYN, FIN and RST is `I` (FIN+RST)
    /// or `Q`; one with a single one is `S`/`H` (SYN, by its ACK bit), `F` or `R`, again
    /// only when its sequence number differs from that flag's last one; one with none is
    /// `D` if it carries data, else `A` if it acknowledges, each once per side. (`T` and
    /// `W` are counted where retransmissions and zero windows are.)
    fn history_letters(&mut self, side: Side, seg: &TcpSegment) {
        let f = seg.flags;
        let i = side.index();
        let seq = SeqNumber(seg.seq);
        let once = |h: &mut History, letter: u8| {
            if !h.contains(side, letter) {
                h.push(side, letter);
            }
        };
        match (f.syn(), f.fin(), f.rst()) {
            (true, true, _) | (true, _, true) => once(&mut self.history, b'Q'),
            (false, true, true) => once(&mut self.history, b'I'),
            (true, false, false) => {
                // One SYN letter per side in Zeek, S or H by the first SYN's ACK bit. A
                // client SYN at a new sequence number is a new connection here (the
                // table splits it off), so the repeat rule never applies to it.
                if !self.history.contains(side, b'S') && !self.history.contains(side, b'H') {
                    let letter = if f.ack() { b'H' } else { b'S' };
                    self.history.push(side, letter);
                }
            }
            (false, true, false) => {
                // A FIN's number is the one after its data.
                if self.seq(side, Seq::Fin) != Some(seq + seg.payload_len as usize) {
                    self.history.push(side, b'F');
                }
            }
            (false, false, true) => {
                if self.seq(side, Seq::LastRst) != Some(seq) {
                    self.history.push(side, b'R');
                }
                self.set_seq(side, Seq::LastRst, seq);
            }
            (false, false, false) if seg.payload_len > 0 => {
                if !self.facts.has(SAW_DATA[i]) {
                    self.facts.set(SAW_DATA[i]);
                    self.history.push(side, b'D');
                }
            }
            (false, false, false) if f.ack() => {
                if !self.facts.has(SAW_ACK[i]) {
                    self.facts.set(SAW_ACK[i]);
                    self.history.push(side, b'A');
                }
            }
            (false, false, false) => {}
        }
    }
}

/// Zeek records retransmissions (`T`) and zero windows (`W`) logarithmically: the letter
/// again at the 10th, 100th, … occurrence.
fn log_letter(h: &mut History, side: Side, letter: u8, count: u32) {
    if matches!(count, 1 | 10 | 100 | 1000 | 10_000 | 100_000) {
        h.push(side, letter);
    }
}

#[cfg(test)]
mod tests;
