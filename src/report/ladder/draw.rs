//! A finished flow's kept segments, oriented (client or server) and relative to the
//! ISNs and the first packet: a [`Ladder`], written as text (an ASCII sequence diagram)
//! or one JSON line. Knows nothing of recording or of which format was chosen.

use super::MAX_PACKETS;
use crate::decode::{Endpoint, Segment, SegmentKind};
use crate::flow::{FlowRecord, SeqNumber, Side};
use crate::report::text::Style;
use serde::Serialize;
use std::io::{self, Write};

/// Columns between the two vertical bars of the ladder; with the time column this makes
/// lines of about 72 columns.
const BODY: usize = 55;
/// The time column is at least this wide so short and long flows line up alike.
const TIME_WIDTH: usize = 11;

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
    isn.map_or(x, |i| SeqNumber(x).offset_from(SeqNumber(i)))
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
    pub(super) fn build(rec: &FlowRecord, segs: &[Segment], truncated: bool) -> Ladder {
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
            isn[c] = synack_ack.map(|a| (SeqNumber(a) - 1usize).0);
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
