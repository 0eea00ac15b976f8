//! `--ladder`: a terminal sequence diagram of the first packets of a connection, the
//! client on the left and the server on the right, like the ladder diagrams of RFCs and
//! textbooks. A picture of "S, then R." is read at a glance where a packet list is not.
//!
//! The flow table only knows a flow's outcome when the flow ends, so the
//! [`LadderRecorder`] keeps the first [`MAX_PACKETS`] segments of every flow in flight,
//! raw, and only orients and relativises them (who is the client, which ISNs) once the
//! final [`FlowRecord`] says so. Memory is bounded twice: per flow and in flows held at
//! once, so a SYN flood costs at most a few megabytes.

use crate::decode::{Endpoint, Segment, SegmentKind};
use crate::flow::{FlowRecord, Side};
use crate::report::text::Style;
use serde::Serialize;
use std::collections::HashMap;
use std::io::{self, Write};

/// Packets kept (and drawn) per flow: a failed connection shows its cause in its first
/// few packets, and a screenful is as much as a person reads.
pub const MAX_PACKETS: usize = 16;
/// Flows buffered at once; beyond it the oldest buffer is dropped. At ~1.2 KB a buffer
/// this is ~5 MB at worst.
pub const MAX_FLOWS: usize = 4096;

const NIL: u32 = u32::MAX;
/// Columns between the two vertical bars of the ladder; with the time column this makes
/// lines of about 72 columns.
const BODY: usize = 55;
/// The time column is at least this wide so short and long flows line up alike.
const TIME_WIDTH: usize = 11;

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

    fn with_max_flows(only_flow: Option<u16>, max_flows: usize) -> LadderRecorder {
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
    fn buffered(&self) -> usize {
        self.index.len()
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

/// A drawn ladder: the packets, relative to the ISNs and the first packet.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Ladder {
    pub id: u64,
    pub client: String,
    pub server: String,
    pub packets: Vec<LadderPacket>,
    /// More packets than drawn.
    pub truncated: bool,
}

/// One arrow of a [`Ladder`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LadderPacket {
    /// Since the flow's first packet.
    pub t_us: u64,
    /// `"client"` or `"server"`.
    pub from: &'static str,
    /// tcpdump notation (`S`, `S.`, `P.`, `none` for no flags), or e.g.
    /// `ICMP port unreachable`.
    pub flags: String,
    /// Relative to the sender's ISN (ISN itself = 0); absolute if the ISN is unknown
    /// (mid-stream). For an ICMP error: the quoted segment's, relative to its sender's ISN.
    pub seq: u32,
    /// Relative to the peer's ISN (absolute if unknown), None if no ACK flag.
    pub ack: Option<u32>,
    pub len: u32,
    pub win: u16,
}

/// `x` relative to `isn`, as tcpdump prints it; absolute when the ISN was not seen.
fn relative(x: u32, isn: Option<u32>) -> u32 {
    isn.map_or(x, |i| x.wrapping_sub(i))
}

#[derive(Serialize)]
struct LadderJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: u64,
    client: &'a str,
    server: &'a str,
    packets: &'a [LadderPacket],
    truncated: bool,
}

impl Ladder {
    fn build(rec: &FlowRecord, segs: &[Segment], truncated: bool) -> Ladder {
        // Same rule as the flow table: whatever is not the client is the server.
        let side_of = |e: Endpoint| {
            if e == rec.client {
                Side::Client
            } else {
                Side::Server
            }
        };
        let mut isn: [Option<u32>; 2] = [None, None];
        let mut synack_ack = None;
        for s in segs {
            if let SegmentKind::Tcp(t) = s.kind {
                if t.flags.syn() {
                    let side = side_of(s.src);
                    isn[side.index()].get_or_insert(t.seq);
                    if side == Side::Server && t.flags.ack() && synack_ack.is_none() {
                        synack_ack = Some(t.ack);
                    }
                }
            }
        }
        // The SYN may be missing (cut by the cap, or before the capture began) while the
        // SYN-ACK, which acknowledges ISN + 1, is there.
        let c = Side::Client.index();
        if isn[c].is_none() {
            isn[c] = synack_ack.map(|a| a.wrapping_sub(1));
        }
        let t0 = segs.first().map_or(rec.first_ts, |s| s.ts);
        // `if let` rather than `match`: only TCP segments and ICMP errors are drawn, and
        // any other kind of segment the decoder may produce is left out, not a compile
        // error here.
        let packets = segs
            .iter()
            .filter_map(|s| {
                let t_us = s.ts.micros_since(t0);
                if let SegmentKind::Tcp(t) = s.kind {
                    let side = side_of(s.src);
                    let flags = t.flags.to_string();
                    Some(LadderPacket {
                        t_us,
                        from: side.as_str(),
                        flags: if flags.is_empty() {
                            "none".to_string()
                        } else {
                            flags
                        },
                        seq: relative(t.seq, isn[side.index()]),
                        ack: t
                            .flags
                            .ack()
                            .then(|| relative(t.ack, isn[side.other().index()])),
                        len: t.payload_len,
                        win: t.window,
                    })
                } else if let SegmentKind::Icmp(e) = s.kind {
                    // The segment's endpoints are those of the quoted segment; the error
                    // travels back to its sender, from the other side.
                    let quoted_by = side_of(s.src);
                    Some(LadderPacket {
                        t_us,
                        from: quoted_by.other().as_str(),
                        flags: format!("ICMP {}", e.kind.as_str().replace('_', " ")),
                        seq: relative(e.quoted_seq, isn[quoted_by.index()]),
                        ack: None,
                        len: 0,
                        win: 0,
                    })
                } else {
                    None
                }
            })
            .collect();
        Ladder {
            id: rec.id,
            client: rec.client.to_string(),
            server: rec.server.to_string(),
            packets,
            truncated,
        }
    }

    /// Text drawing, client on the left, server on the right, one packet per line, e.g.
    ///
    /// ```text
    ///   client 127.0.0.1:40000                          server 127.0.0.1:61999
    ///      0.000 ms  |---- S  seq 0 win 65495 ------------------------------>|
    ///      0.012 ms  |<--- R. seq 0 ack 1 win 0 -----------------------------|
    /// ```
    ///
    /// Times relative to the first packet (human units, aligned), flags in tcpdump
    /// notation, seq/ack relative. Plain ASCII (|, -, <, >) so it survives any terminal;
    /// width ~72 columns. If `style.color`, client→server and server→client arrows (and
    /// ICMP errors) have different colours.
    pub fn write_text(&self, out: &mut dyn Write, style: Style) -> io::Result<()> {
        // One unit for the whole ladder, so the decimal points line up and the eye can
        // compare gaps: milliseconds for a sub-second ladder, seconds otherwise, both to
        // the microsecond the capture gives.
        let max_us = self.packets.iter().map(|p| p.t_us).max().unwrap_or(0);
        let times: Vec<String> = self
            .packets
            .iter()
            .map(|p| {
                if max_us < 1_000_000 {
                    format!("{}.{:03} ms", p.t_us / 1_000, p.t_us % 1_000)
                } else {
                    format!("{}.{:06} s", p.t_us / 1_000_000, p.t_us % 1_000_000)
                }
            })
            .collect();
        let tw = times
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(0)
            .max(TIME_WIDTH);

        // Header: the client over the left bar, the server ending over the right one.
        let left = format!("client {}", self.client);
        let right = format!("server {}", self.server);
        let line_width = 2 + tw + 2 + 1 + BODY + 1;
        let gap = line_width
            .saturating_sub(2 + left.len() + right.len())
            .max(2);
        writeln!(out, "  {left}{:gap$}{right}", "")?;

        for (p, t) in self.packets.iter().zip(&times) {
            let mut label = format!("{:<2} seq {}", p.flags, p.seq);
            if let Some(ack) = p.ack {
                label.push_str(&format!(" ack {ack}"));
            }
            if !p.flags.starts_with("ICMP") {
                label.push_str(&format!(" win {}", p.win));
            }
            if p.len > 0 {
                label.push_str(&format!(" len {}", p.len));
            }
            let to_server = p.from == Side::Client.as_str();
            // "---- " or "<--- ", the label, a space, then dashes (and the head).
            let head = usize::from(to_server);
            let fill = BODY.saturating_sub(5 + label.len() + 1 + head).max(1);
            let body = if to_server {
                format!("---- {label} {}>", "-".repeat(fill))
            } else {
                format!("<--- {label} {}", "-".repeat(fill))
            };
            let code = if p.flags.starts_with("ICMP") {
                "31"
            } else if to_server {
                "36"
            } else {
                "35"
            };
            writeln!(out, "  {t:>tw$}  |{}|", paint(style, code, &body))?;
        }
        if self.truncated {
            writeln!(
                out,
                "  {:tw$}  ... more packets follow (only the first {MAX_PACKETS} are drawn)",
                ""
            )?;
        }
        Ok(())
    }

    /// One JSON line:
    /// `{"type":"ladder","id":…,"client":…,"server":…,"packets":[…],"truncated":…}`
    pub fn write_json(&self, out: &mut dyn Write) -> io::Result<()> {
        let j = LadderJson {
            kind: "ladder",
            id: self.id,
            client: &self.client,
            server: &self.server,
            packets: &self.packets,
            truncated: self.truncated,
        };
        serde_json::to_writer(&mut *out, &j)?;
        out.write_all(b"\n")
    }
}

/// ANSI colour when asked for; `Style`'s own painter is private to `text.rs`.
fn paint(style: Style, code: &str, text: &str) -> String {
    if style.color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{IcmpError, TcpFlags, TcpSegment, Timestamp, Unreachable};
    use crate::flow::{EndReason, FlowConfig, FlowEvent, FlowTable, Outcome};
    use std::net::{IpAddr, Ipv4Addr};

    const S: u8 = TcpFlags::SYN;
    const A: u8 = TcpFlags::ACK;
    const F: u8 = TcpFlags::FIN;
    const R: u8 = TcpFlags::RST;
    const P: u8 = TcpFlags::PSH;

    const CISN: u32 = 3_000_000_000;
    const SISN: u32 = 4_294_967_000; // wraps past 2^32 within the flow

    fn ep(port: u16) -> Endpoint {
        Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    }

    fn client() -> Endpoint {
        ep(40000)
    }

    fn server() -> Endpoint {
        ep(61999)
    }

    struct Seg {
        from: Side,
        flags: u8,
        seq: u32,
        ack: u32,
        len: u32,
        win: u16,
        t_us: u64,
    }

    fn tcp(s: Seg) -> Segment {
        tcp_on(client(), s)
    }

    fn tcp_on(c: Endpoint, s: Seg) -> Segment {
        let (src, dst) = match s.from {
            Side::Client => (c, server()),
            Side::Server => (server(), c),
        };
        Segment {
            ts: Timestamp(1_700_000_000_000_000 + s.t_us),
            src,
            dst,
            kind: SegmentKind::Tcp(TcpSegment {
                seq: s.seq,
                ack: s.ack,
                flags: TcpFlags(s.flags),
                window: s.win,
                payload_len: s.len,
                options: Default::default(),
            }),
        }
    }

    fn seg(from: Side, flags: u8, seq: u32, ack: u32, len: u32, t_us: u64) -> Segment {
        tcp(Seg {
            from,
            flags,
            seq,
            ack,
            len,
            win: if flags & R != 0 { 0 } else { 512 },
            t_us,
        })
    }

    /// A real final record from the flow table (so the test does not break when
    /// `FlowRecord` gains fields), with the fields the recorder reads set by hand.
    fn record(id: u64, c: Endpoint, outcome: Outcome) -> FlowRecord {
        let mut table = FlowTable::new(FlowConfig {
            port: 61999,
            max_flows: 16,
            syn_timeout_us: 1_000_000,
            pending_notices: false,
        });
        let mut events = Vec::new();
        table.process(&seg(Side::Client, S, CISN, 0, 0, 0), &mut events);
        table.finish_all(&mut events);
        let base = match events.first() {
            Some(FlowEvent::Finished(r)) => *r,
            other => panic!("no final record: {other:?}"),
        };
        FlowRecord {
            id,
            client: c,
            server: server(),
            outcome,
            end: Some(EndReason::Packets),
            ..base
        }
    }

    fn text(l: &Ladder) -> String {
        let mut out = Vec::new();
        l.write_text(&mut out, Style { color: false }).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn pkt(
        t_us: u64,
        from: &'static str,
        flags: &str,
        seq: u32,
        ack: Option<u32>,
        len: u32,
        win: u16,
    ) -> LadderPacket {
        LadderPacket {
            t_us,
            from,
            flags: flags.to_string(),
            seq,
            ack,
            len,
            win,
        }
    }

    #[test]
    fn refused_flow_is_two_arrows_with_relative_numbers() {
        let mut r = LadderRecorder::new(None);
        r.segment(
            1,
            &tcp(Seg {
                from: Side::Client,
                flags: S,
                seq: CISN,
                ack: 0,
                len: 0,
                win: 65495,
                t_us: 0,
            }),
        );
        r.segment(1, &seg(Side::Server, R | A, 0, CISN + 1, 0, 12));
        let l = r.finish(&record(1, client(), Outcome::Refused)).unwrap();
        assert_eq!(
            l.packets,
            vec![
                pkt(0, "client", "S", 0, None, 0, 65495),
                // The RST's seq is 0 on the wire and the server has no ISN: absolute.
                pkt(12, "server", "R.", 0, Some(1), 0, 0),
            ]
        );
        assert!(!l.truncated);
        let t = text(&l);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert_eq!(
            lines,
            [
                "  client 127.0.0.1:40000                          server 127.0.0.1:61999",
                "     0.000 ms  |---- S  seq 0 win 65495 ------------------------------>|",
                "     0.012 ms  |<--- R. seq 0 ack 1 win 0 -----------------------------|",
            ],
            "{t}"
        );
        // Every arrow line and the header are the same width.
        assert!(lines.iter().all(|l| l.len() == lines[1].len()), "{t}");
        assert_eq!(lines[1].len(), 72, "{t}");
        assert!(r.finish(&record(1, client(), Outcome::Refused)).is_none());
    }

    fn clean_flow(r: &mut LadderRecorder, id: u64) {
        let c = CISN;
        let s = SISN;
        let w = |x: u32, n: u32| x.wrapping_add(n);
        for sg in [
            seg(Side::Client, S, c, 0, 0, 0),
            seg(Side::Server, S | A, s, w(c, 1), 0, 30),
            seg(Side::Client, A, w(c, 1), w(s, 1), 0, 60),
            seg(Side::Client, P | A, w(c, 1), w(s, 1), 100, 100_000),
            seg(Side::Server, A, w(s, 1), w(c, 101), 0, 100_040),
            seg(Side::Client, F | A, w(c, 101), w(s, 1), 0, 200_000),
            seg(Side::Server, A, w(s, 1), w(c, 102), 0, 200_040),
            seg(Side::Server, F | A, w(s, 1), w(c, 102), 0, 500_000),
            seg(Side::Client, A, w(c, 102), w(s, 2), 0, 500_030),
        ] {
            r.segment(id, &sg);
        }
    }

    #[test]
    fn clean_handshake_and_close_relative_to_both_isns() {
        let mut r = LadderRecorder::new(Some(40000));
        clean_flow(&mut r, 1);
        let l = r.finish(&record(1, client(), Outcome::Closed)).unwrap();
        let got: Vec<(&str, &str, u32, Option<u32>, u32)> = l
            .packets
            .iter()
            .map(|p| (p.from, p.flags.as_str(), p.seq, p.ack, p.len))
            .collect();
        assert_eq!(
            got,
            vec![
                ("client", "S", 0, None, 0),
                ("server", "S.", 0, Some(1), 0),
                ("client", ".", 1, Some(1), 0),
                ("client", "P.", 1, Some(1), 100),
                ("server", ".", 1, Some(101), 0),
                ("client", "F.", 101, Some(1), 0),
                ("server", ".", 1, Some(102), 0),
                ("server", "F.", 1, Some(102), 0),
                ("client", ".", 102, Some(2), 0),
            ]
        );
        let t = text(&l);
        assert!(
            t.contains("100.000 ms  |---- P. seq 1 ack 1 win 512 len 100 "),
            "{t}"
        );
        assert!(
            t.contains("500.030 ms  |---- .  seq 102 ack 2 win 512 "),
            "{t}"
        );
        assert_eq!(t.lines().count(), 10, "{t}");
    }

    #[test]
    fn more_than_sixteen_packets_draws_sixteen_and_says_truncated() {
        let mut r = LadderRecorder::new(None);
        r.segment(7, &seg(Side::Client, S, CISN, 0, 0, 0));
        r.segment(7, &seg(Side::Server, S | A, SISN, CISN + 1, 0, 10));
        r.segment(
            7,
            &seg(Side::Client, A, CISN + 1, SISN.wrapping_add(1), 0, 20),
        );
        for i in 0..20u32 {
            r.segment(
                7,
                &seg(
                    Side::Client,
                    P | A,
                    CISN + 1 + 10 * i,
                    SISN.wrapping_add(1),
                    10,
                    1_000 * u64::from(i) + 1_000,
                ),
            );
        }
        r.segment(
            7,
            &seg(Side::Server, R | A, SISN.wrapping_add(1), 0, 0, 99_000),
        );
        let l = r.finish(&record(7, client(), Outcome::Reset)).unwrap();
        assert!(l.truncated);
        assert_eq!(l.packets.len(), MAX_PACKETS);
        assert_eq!(l.packets[15].seq, 1 + 10 * 12);
        let t = text(&l);
        assert_eq!(t.lines().count(), 1 + MAX_PACKETS + 1, "{t}");
        assert!(t.contains("only the first 16 are drawn"), "{t}");
    }

    #[test]
    fn exactly_sixteen_packets_is_not_truncated() {
        let mut r = LadderRecorder::new(None);
        for i in 0..16u32 {
            r.segment(3, &seg(Side::Client, S, CISN, 0, 0, u64::from(i)));
        }
        let l = r.finish(&record(3, client(), Outcome::Unanswered)).unwrap();
        assert_eq!(l.packets.len(), 16);
        assert!(!l.truncated);
    }

    #[test]
    fn icmp_unreachable_is_an_arrow_from_the_server_side() {
        let mut r = LadderRecorder::new(None);
        r.segment(2, &seg(Side::Client, S, CISN, 0, 0, 0));
        r.segment(
            2,
            &Segment {
                ts: Timestamp(1_700_000_000_000_000 + 45),
                src: client(),
                dst: server(),
                kind: SegmentKind::Icmp(IcmpError {
                    reporter: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    kind: Unreachable::Port,
                    quoted_seq: CISN,
                }),
            },
        );
        let l = r
            .finish(&record(2, client(), Outcome::Unreachable))
            .unwrap();
        assert_eq!(
            l.packets[1],
            pkt(45, "server", "ICMP port unreachable", 0, None, 0, 0)
        );
        let t = text(&l);
        assert!(
            t.contains("0.045 ms  |<--- ICMP port unreachable seq 0 -----"),
            "{t}"
        );
        assert!(!t.contains("win 0"), "{t}");
    }

    #[test]
    fn only_flow_draws_the_chosen_flow_whatever_its_outcome() {
        let mut chosen = LadderRecorder::new(Some(40000));
        clean_flow(&mut chosen, 1);
        assert!(chosen
            .finish(&record(1, client(), Outcome::Closed))
            .is_some());

        let mut other = LadderRecorder::new(Some(40001));
        clean_flow(&mut other, 1);
        assert_eq!(
            other.buffered(),
            0,
            "a flow on other ports is not even kept"
        );
        assert!(other
            .finish(&record(1, client(), Outcome::Closed))
            .is_none());

        let mut problems = LadderRecorder::new(None);
        clean_flow(&mut problems, 1);
        assert!(problems
            .finish(&record(1, client(), Outcome::Closed))
            .is_none());
        assert_eq!(
            problems.buffered(),
            0,
            "the buffer is forgotten all the same"
        );
    }

    #[test]
    fn flow_buffers_are_capped_by_dropping_the_oldest() {
        let mut r = LadderRecorder::new(None);
        let n = MAX_FLOWS as u64 + 1;
        for id in 1..=n {
            let c = ep(1024 + (id % 60000) as u16);
            r.segment(id, &tcp_on(c, Seg::syn(id)));
        }
        assert_eq!(r.buffered(), MAX_FLOWS);
        assert_eq!(r.bufs.len(), MAX_FLOWS, "the dropped slot was reused");
        // Flow 1's buffer went; its late packets do not bring it back.
        r.segment(1, &seg(Side::Server, R | A, 0, CISN + 1, 0, 5));
        assert_eq!(r.buffered(), MAX_FLOWS);
        assert!(r.finish(&record(1, ep(1025), Outcome::Refused)).is_none());
        assert!(r.finish(&record(2, ep(1026), Outcome::Refused)).is_some());
        let last = r
            .finish(&record(n, ep(1024 + (n % 60000) as u16), Outcome::Refused))
            .unwrap();
        assert_eq!(last.packets.len(), 1);
        assert_eq!(r.buffered(), MAX_FLOWS - 2);
    }

    impl Seg {
        fn syn(t_us: u64) -> Seg {
            Seg {
                from: Side::Client,
                flags: S,
                seq: CISN,
                ack: 0,
                len: 0,
                win: 65495,
                t_us,
            }
        }
    }

    #[test]
    fn small_cap_drops_oldest_and_late_packets_of_finished_flows_are_ignored() {
        let mut r = LadderRecorder::with_max_flows(None, 2);
        r.segment(1, &seg(Side::Client, S, CISN, 0, 0, 0));
        r.segment(2, &seg(Side::Client, S, CISN, 0, 0, 1));
        r.segment(1, &seg(Side::Client, S, CISN, 0, 0, 2));
        r.segment(3, &seg(Side::Client, S, CISN, 0, 0, 3));
        // Oldest by creation, not by activity: flow 1 goes.
        assert!(r
            .finish(&record(1, client(), Outcome::Unanswered))
            .is_none());
        assert!(r
            .finish(&record(2, client(), Outcome::Unanswered))
            .is_some());
        // A straggler after flow 2 finished is not buffered again.
        r.segment(2, &seg(Side::Server, R | A, 0, CISN + 1, 0, 4));
        assert_eq!(r.buffered(), 1);
        assert!(r
            .finish(&record(3, client(), Outcome::Unanswered))
            .is_some());
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn syn_missing_uses_the_synack_and_midstream_stays_absolute() {
        let mut r = LadderRecorder::new(None);
        r.segment(1, &seg(Side::Server, S | A, SISN, CISN + 1, 0, 0));
        r.segment(1, &seg(Side::Client, R, CISN + 1, 0, 0, 5));
        let l = r
            .finish(&record(1, client(), Outcome::HandshakeIncomplete))
            .unwrap();
        assert_eq!(l.packets[0].ack, Some(1));
        assert_eq!(l.packets[1].seq, 1);

        let mut r = LadderRecorder::new(None);
        r.segment(1, &seg(Side::Client, P | A, 1234, 5678, 100, 0));
        r.segment(1, &seg(Side::Server, R | A, 5678, 1334, 0, 5));
        let l = r.finish(&record(1, client(), Outcome::Reset)).unwrap();
        assert_eq!((l.packets[0].seq, l.packets[0].ack), (1234, Some(5678)));
        assert_eq!((l.packets[1].seq, l.packets[1].ack), (5678, Some(1334)));
    }

    #[test]
    fn odd_input_does_not_panic() {
        let mut r = LadderRecorder::new(None);
        // Clock going backwards, no flags at all, huge numbers.
        r.segment(1, &seg(Side::Client, S, 0, 0, 0, 1_000));
        r.segment(1, &seg(Side::Server, 0, u32::MAX, u32::MAX, u32::MAX, 0));
        let l = r.finish(&record(1, client(), Outcome::Refused)).unwrap();
        assert_eq!(l.packets[1].t_us, 0);
        assert_eq!(l.packets[1].flags, "none");
        let t = text(&l);
        assert!(t.contains("none seq 4294967295"), "{t}");

        // A flow longer than a second switches to seconds.
        let mut r = LadderRecorder::new(None);
        r.segment(1, &seg(Side::Client, S, CISN, 0, 0, 0));
        r.segment(1, &seg(Side::Client, S, CISN, 0, 0, 3_000_042));
        let l = r.finish(&record(1, client(), Outcome::Unanswered)).unwrap();
        let t = text(&l);
        assert!(t.contains("   0.000000 s  |"), "{t}");
        assert!(t.contains("   3.000042 s  |"), "{t}");

        // A record for a flow never seen, and an empty ladder.
        let mut r = LadderRecorder::new(None);
        assert!(r.finish(&record(9, client(), Outcome::Refused)).is_none());
        let empty = Ladder {
            id: 1,
            client: "a".into(),
            server: "b".into(),
            packets: vec![],
            truncated: false,
        };
        assert_eq!(text(&empty).lines().count(), 1);
    }

    #[test]
    fn a_pending_notice_keeps_the_buffer_for_the_final_record() {
        let mut r = LadderRecorder::new(None);
        r.segment(1, &seg(Side::Client, S, CISN, 0, 0, 0));
        let mut pending = record(1, client(), Outcome::Unanswered);
        pending.end = None;
        assert!(r.finish(&pending).is_none());
        r.segment(1, &seg(Side::Client, S, CISN, 0, 0, 1_000_000));
        let l = r.finish(&record(1, client(), Outcome::Unanswered)).unwrap();
        assert_eq!(l.packets.len(), 2);
    }

    #[test]
    fn json_line_has_the_schema() {
        let mut r = LadderRecorder::new(None);
        r.segment(1, &seg(Side::Client, S, CISN, 0, 0, 0));
        r.segment(1, &seg(Side::Server, R | A, 0, CISN + 1, 0, 12));
        let l = r.finish(&record(1, client(), Outcome::Refused)).unwrap();
        let mut out = Vec::new();
        l.write_json(&mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.ends_with('\n') && s.lines().count() == 1, "{s}");
        assert!(
            s.starts_with(r#"{"type":"ladder","id":1,"client":"127.0.0.1:40000","server":"127.0.0.1:61999","packets":[{"t_us":0,"from":"client","flags":"S","seq":0,"ack":null,"len":0,"win":512},"#),
            "{s}"
        );
        assert!(s.trim_end().ends_with(r#"],"truncated":false}"#), "{s}");
    }

    #[test]
    fn colour_tells_the_directions_apart_and_keeps_alignment() {
        let mut r = LadderRecorder::new(None);
        r.segment(1, &seg(Side::Client, S, CISN, 0, 0, 0));
        r.segment(1, &seg(Side::Server, R | A, 0, CISN + 1, 0, 12));
        let l = r.finish(&record(1, client(), Outcome::Refused)).unwrap();
        let mut out = Vec::new();
        l.write_text(&mut out, Style { color: true }).unwrap();
        let t = String::from_utf8(out).unwrap();
        assert!(t.contains("|\x1b[36m---- S "), "{t}");
        assert!(t.contains("|\x1b[35m<--- R. "), "{t}");
        let plain = t
            .replace("\x1b[36m", "")
            .replace("\x1b[35m", "")
            .replace("\x1b[0m", "");
        assert_eq!(plain, text(&l));
    }
}
