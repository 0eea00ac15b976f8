//! `--format zeek` and `--format zeek-json`: the final flow records as a Zeek conn.log,
//! so `zeek-cut` and existing Zeek pipelines read portsniff's output unchanged.
//!
//! The TSV is what Zeek's ASCII writer writes (`src/logging/writers/ascii/Ascii.cc`): the
//! `#separator` … `#types` header, one row per connection, `#close` at the end; times and
//! intervals with six decimals, unset fields `-`. The JSON is Zeek's `LogAscii::use_json=T`
//! style: one object per line, keys named like the TSV columns, unset fields omitted, `ts`
//! as epoch seconds.
//!
//! `conn_state` follows Zeek's `Conn::conn_state` (`base/protocols/conn/main.zeek`) on the
//! endpoint states Zeek's TCP analyzer (`src/analyzer/protocol/tcp/TCP.cc`) would have
//! reached, replayed from the record's history letters: [`conn_state`].
//!
//! This module sees only final records: live pending notices, findings, ladders and the
//! summary are not conn.log lines.

use crate::decode::Timestamp;
use crate::flow::{FlowRecord, History, Side};
use std::io::{self, Write};

/// Zeek's conn.log columns (Zeek 6 `Conn::Info`, without the later `ip_proto`), in order.
pub const FIELDS: [&str; 21] = [
    "ts",
    "uid",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "proto",
    "service",
    "duration",
    "orig_bytes",
    "resp_bytes",
    "conn_state",
    "local_orig",
    "local_resp",
    "missed_bytes",
    "history",
    "orig_pkts",
    "orig_ip_bytes",
    "resp_pkts",
    "resp_ip_bytes",
    "tunnel_parents",
];

/// The Zeek types of [`FIELDS`], as the `#types` line names them.
pub const TYPES: [&str; 21] = [
    "time",
    "string",
    "addr",
    "port",
    "addr",
    "port",
    "enum",
    "string",
    "interval",
    "count",
    "count",
    "string",
    "bool",
    "bool",
    "count",
    "string",
    "count",
    "count",
    "count",
    "count",
    "set[string]",
];

/// Zeek's `unset_field`: a value portsniff does not know.
const UNSET: &str = "-";

/// A connection's `conn_state`, with Zeek's definitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Connection attempt seen, no reply.
    S0,
    /// Connection established, not terminated.
    S1,
    /// Normal establishment and termination.
    SF,
    /// Connection attempt rejected.
    Rej,
    /// Connection established and close attempt by originator seen (but no reply from
    /// responder).
    S2,
    /// Connection established and close attempt by responder seen (but no reply from
    /// originator).
    S3,
    /// Connection established, originator aborted (sent a RST).
    Rsto,
    /// Responder sent a RST.
    Rstr,
    /// Originator sent a SYN followed by a RST, we never saw a SYN-ACK from the responder.
    Rstos0,
    /// Responder sent a SYN ACK followed by a RST, we never saw a SYN from the (purported)
    /// originator.
    Rstrh,
    /// Originator sent a SYN followed by a FIN, we never saw a SYN ACK from the responder
    /// (hence the connection was "half" open).
    Sh,
    /// Responder sent a SYN ACK followed by a FIN, we never saw a SYN from the originator.
    Shr,
    /// No SYN seen, just midstream traffic (one example of this is a "partial connection"
    /// that was not later closed).
    Oth,
}

impl ConnState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::S0 => "S0",
            ConnState::S1 => "S1",
            ConnState::SF => "SF",
            ConnState::Rej => "REJ",
            ConnState::S2 => "S2",
            ConnState::S3 => "S3",
            ConnState::Rsto => "RSTO",
            ConnState::Rstr => "RSTR",
            ConnState::Rstos0 => "RSTOS0",
            ConnState::Rstrh => "RSTRH",
            ConnState::Sh => "SH",
            ConnState::Shr => "SHR",
            ConnState::Oth => "OTH",
        }
    }
}

/// Zeek's `TCP_ENDPOINT_*` states of one side of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tcp {
    Inactive,
    SynSent,
    SynAckSent,
    Partial,
    Established,
    Closed,
    Reset,
}

#[derive(Clone, Copy, Debug)]
struct Endpoint {
    state: Tcp,
    /// Zeek's `prev_state`: a FIN after the peer's FIN-then-RST turns the peer back to
    /// CLOSED.
    prev: Tcp,
}

impl Endpoint {
    fn set(&mut self, state: Tcp) {
        if state != self.state {
            self.prev = self.state;
            self.state = state;
        }
    }

    fn inactive(self) -> bool {
        matches!(self.state, Tcp::Inactive | Tcp::Partial)
    }
}

/// What a history letter says a side sent, as Zeek's state machine distinguishes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    Syn,
    SynAck,
    Fin,
    Rst,
    /// A segment without SYN, FIN or RST: a pure ACK (`A`) or data (`D`).
    Ack,
    Data,
}

impl Sent {
    /// The side and event of a history letter; `None` for letters that accompany another
    /// letter's segment (`T` retransmission, `W` zero window) and change no state.
    fn of_letter(letter: u8) -> Option<(Side, Sent)> {
        let side = if letter.is_ascii_uppercase() {
            Side::Client
        } else {
            Side::Server
        };
        let sent = match letter.to_ascii_uppercase() {
            b'S' => Sent::Syn,
            b'H' => Sent::SynAck,
            b'F' => Sent::Fin,
            b'R' => Sent::Rst,
            b'A' => Sent::Ack,
            b'D' => Sent::Data,
            _ => return None,
        };
        Some((side, sent))
    }
}

/// Both endpoints, driven like Zeek's `TCP_Analyzer::UpdateStateMachine`.
struct Endpoints([Endpoint; 2]);

impl Endpoints {
    fn new() -> Endpoints {
        let e = Endpoint {
            state: Tcp::Inactive,
            prev: Tcp::Inactive,
        };
        Endpoints([e, e])
    }

    fn get(&self, side: Side) -> Endpoint {
        self.0[side.index()]
    }

    fn set(&mut self, side: Side, state: Tcp) {
        self.0[side.index()].set(state);
    }

    fn apply(&mut self, side: Side, sent: Sent) {
        let me = self.get(side);
        let peer = side.other();
        match me.state {
            Tcp::Inactive => self.inactive(side, sent),
            // UpdateSYN_SentState: only FIN and RST move a side that sent a SYN.
            Tcp::SynSent | Tcp::SynAckSent => match sent {
                Sent::Fin => self.set(side, Tcp::Closed),
                Sent::Rst => self.set(side, Tcp::Reset),
                Sent::Syn | Sent::SynAck | Sent::Ack | Sent::Data => {}
            },
            // UpdateEstablishedState.
            Tcp::Established | Tcp::Partial => match sent {
                Sent::Syn if me.state == Tcp::Partial && self.get(peer).state == Tcp::Inactive => {
                    self.set(side, Tcp::SynSent)
                }
                Sent::Fin => {
                    self.set(side, Tcp::Closed);
                    // "The peer sent a FIN followed by a RST. Turn it back into CLOSED
                    // state, because this was actually normal termination."
                    let p = self.get(peer);
                    if p.state == Tcp::Reset && p.prev == Tcp::Closed {
                        self.set(peer, Tcp::Closed);
                    }
                }
                Sent::Rst => self.set(side, Tcp::Reset),
                Sent::Syn | Sent::SynAck | Sent::Ack | Sent::Data => {}
            },
            // UpdateClosedState: a RST after both FINs changes nothing.
            Tcp::Closed => {
                if sent == Sent::Rst && self.get(peer).state != Tcp::Closed {
                    self.set(side, Tcp::Reset);
                }
            }
            Tcp::Reset => {}
        }
    }

    /// UpdateInactiveState.
    fn inactive(&mut self, side: Side, sent: Sent) {
        let peer = side.other();
        match (side, sent) {
            (Side::Client, Sent::Syn) => self.set(side, Tcp::SynSent),
            (Side::Client, Sent::SynAck) => self.set(side, Tcp::SynAckSent),
            (Side::Server, Sent::Syn | Sent::SynAck) => {
                // A SYN-ACK answering the originator's SYN establishes both sides; a
                // responder's bare SYN after the originator's SYN-ACK is Zeek's "SYN/SYN-ACK
                // reversal" (it flips roles; here the roles are fixed by the port).
                let p = self.get(peer).state;
                if p == Tcp::SynSent || (sent == Sent::Syn && p == Tcp::SynAckSent) {
                    self.set(peer, Tcp::Established);
                }
                self.set(side, Tcp::Established);
            }
            (_, Sent::Fin) => self.set(side, Tcp::Closed),
            (_, Sent::Rst) => self.set(side, Tcp::Reset),
            (_, Sent::Ack | Sent::Data) => {
                let orig = self.get(Side::Client).state;
                if side == Side::Server && sent == Sent::Ack && orig == Tcp::SynSent {
                    // "Some eccentric TCP's will ack an initial SYN prior to sending a
                    // SYN reply": not a partial connection.
                } else if self.get(peer).state == Tcp::Established {
                    // A SYN-ACK seen without its SYN, then this side's ACK.
                    self.set(side, Tcp::Established);
                } else {
                    self.set(side, Tcp::Partial);
                }
            }
        }
    }
}

/// The endpoint states Zeek would have reached: the history letters in order, then the
/// FINs and RSTs the record knows of but a full history could not hold.
fn endpoints(r: &FlowRecord) -> Endpoints {
    let mut e = Endpoints::new();
    for &letter in r.history.as_bytes() {
        if let Some((side, sent)) = Sent::of_letter(letter) {
            e.apply(side, sent);
        }
    }
    let h = &r.history;
    let closed = r.outcome == crate::flow::Outcome::Closed;
    for side in [Side::Client, Side::Server] {
        let sent_fin = closed || r.closed_first_by == Some(side);
        if sent_fin && !h.contains(side, b'F') {
            e.apply(side, Sent::Fin);
        }
        if r.reset_by == Some(side) && !h.contains(side, b'R') {
            e.apply(side, Sent::Rst);
        }
    }
    e
}

/// Zeek's `/^?S[^HAFGIQ]*R.*/ == c$history`: the originator's SYN, then its RST before
/// any handshake, ACK, FIN, gap, inconsistency or multi-flag packet of its own.
fn syn_then_own_rst(h: &History) -> bool {
    let letters = h.as_bytes();
    let letters = letters.strip_prefix(b"^").unwrap_or(letters);
    match letters.split_first() {
        Some((b'S', rest)) => rest
            .iter()
            .find(|l| b"RHAFGIQ".contains(l))
            .is_some_and(|l| *l == b'R'),
        _ => false,
    }
}

/// Zeek's `Conn::conn_state` for a TCP connection, from the record.
pub fn conn_state(r: &FlowRecord) -> ConnState {
    let e = endpoints(r);
    let (o, rs) = (e.get(Side::Client), e.get(Side::Server));
    let os = o.state;
    let rst = rs.state;
    if rst == Tcp::Reset {
        let no_bytes = r.bytes[0] == 0 && r.bytes[1] == 0;
        if matches!(os, Tcp::SynSent | Tcp::SynAckSent) || (os == Tcp::Reset && no_bytes) {
            ConnState::Rej
        } else if o.inactive() {
            ConnState::Rstrh
        } else {
            ConnState::Rstr
        }
    } else if os == Tcp::Reset {
        if rs.inactive() {
            if syn_then_own_rst(&r.history) {
                ConnState::Rstos0
            } else {
                ConnState::Oth
            }
        } else {
            ConnState::Rsto
        }
    } else if rst == Tcp::Closed && os == Tcp::Closed {
        ConnState::SF
    } else if os == Tcp::Closed {
        if rs.inactive() {
            ConnState::Sh
        } else {
            ConnState::S2
        }
    } else if rst == Tcp::Closed {
        if o.inactive() {
            ConnState::Shr
        } else {
            ConnState::S3
        }
    } else if os == Tcp::SynSent && rst == Tcp::Inactive {
        ConnState::S0
    } else if os == Tcp::Established && rst == Tcp::Established {
        ConnState::S1
    } else {
        ConnState::Oth
    }
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// SplitMix64's finaliser: a bijection on u64 that scatters nearby inputs.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The connection's `uid`: "C" and 22 base62 digits of the first packet's time and the
/// flow id, both through a bijection, so a replay gives the same uids every run and two
/// flows of a run never share one (ids are unique per run).
pub fn uid(r: &FlowRecord) -> String {
    let t = mix(r.first_ts.as_micros());
    let v = (u128::from(t) << 64) | u128::from(mix(r.id ^ t));
    let mut digits = [b'0'; 22];
    let mut rest = v;
    for d in digits.iter_mut().rev() {
        // `rest % 62` is below 62.
        *d = BASE62[(rest % 62) as usize];
        rest /= 62;
    }
    let mut s = String::with_capacity(23);
    s.push('C');
    s.extend(digits.iter().map(|&d| char::from(d)));
    s
}

/// Seconds with six decimals, as Zeek's ASCII writer renders `time` and `interval`.
fn secs6(micros: u64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// The shortest decimal of the same value, as Zeek's JSON writer (rapidjson) prints a
/// double: `1700000000.5`, `0.000021`, `3.0`.
fn secs_json(micros: u64) -> String {
    let frac = format!("{:06}", micros % 1_000_000);
    let frac = frac.trim_end_matches('0');
    let frac = if frac.is_empty() { "0" } else { frac };
    format!("{}.{frac}", micros / 1_000_000)
}

/// `#open`/`#close` as Zeek writes them: local time, `%Y-%m-%d-%H-%M-%S`.
fn header_time(ts: Timestamp) -> String {
    let secs = i64::try_from(ts.as_micros() / 1_000_000).unwrap_or(i64::MAX);
    match jiff::Timestamp::from_second(secs) {
        Ok(t) => t
            .to_zoned_datetime(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d-%H-%M-%S")
            .to_string(),
        Err(_) => "1970-01-01-00-00-00".to_string(),
    }
}

/// One conn.log value.
enum Val {
    Str(String),
    Count(u64),
    /// Seconds, from microseconds: `time` and `interval`.
    Secs(u64),
    Unset,
}

/// The conn.log values of a record, in [`FIELDS`] order.
fn row(r: &FlowRecord) -> [Val; 21] {
    let c = Side::Client.index();
    let s = Side::Server.index();
    let duration = r.duration_us();
    // Zeek sets duration and the byte counts only when the duration is above zero.
    let timed = |v: Val| if duration > 0 { v } else { Val::Unset };
    let history = r.history.as_str();
    [
        Val::Secs(r.first_ts.as_micros()),
        Val::Str(uid(r)),
        Val::Str(r.client.addr.to_string()),
        Val::Count(u64::from(r.client.port)),
        Val::Str(r.server.addr.to_string()),
        Val::Count(u64::from(r.server.port)),
        Val::Str("tcp".to_string()),
        // portsniff does no protocol detection.
        Val::Unset,
        timed(Val::Secs(duration)),
        timed(Val::Count(r.bytes[c])),
        timed(Val::Count(r.bytes[s])),
        Val::Str(conn_state(r).as_str().to_string()),
        // Zeek leaves these unset without `Site::local_nets`; portsniff has none.
        Val::Unset,
        Val::Unset,
        // No reassembly, so content gaps are not measured.
        Val::Unset,
        if history.is_empty() {
            Val::Unset
        } else {
            Val::Str(history.to_string())
        },
        Val::Count(r.packets[c]),
        // IP-level byte counts are not kept per flow.
        Val::Unset,
        Val::Count(r.packets[s]),
        Val::Unset,
        // No tunnel decapsulation.
        Val::Unset,
    ]
}

/// The conn.log writer: the header before the first row (or at the end when there is
/// none), `#close` at the end. TSV or JSON lines.
#[derive(Debug, Default)]
pub struct ConnLog {
    json: bool,
    open: Option<Timestamp>,
    close: Option<Timestamp>,
    header_written: bool,
}

impl ConnLog {
    pub fn new(json: bool) -> ConnLog {
        ConnLog {
            json,
            ..ConnLog::default()
        }
    }

    /// The capture's clock: the first time given is `#open`, the latest `#close`. A file
    /// gives its packets' times (the same bytes every replay), a live capture the wall
    /// clock.
    pub fn clock(&mut self, ts: Timestamp) {
        self.open.get_or_insert(ts);
        self.close = Some(self.close.map_or(ts, |c| c.max(ts)));
    }

    fn header<W: Write>(&mut self, out: &mut W) -> io::Result<()> {
        if self.header_written || self.json {
            return Ok(());
        }
        self.header_written = true;
        // A capture without a packet of the port has no time: the epoch.
        let open = header_time(self.open.unwrap_or_default());
        write!(
            out,
            "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t{UNSET}\n\
             #path\tconn\n#open\t{open}\n#fields\t{}\n#types\t{}\n",
            FIELDS.join("\t"),
            TYPES.join("\t")
        )
    }

    /// One connection's row (final records only; the caller skips pending notices).
    pub fn write_flow<W: Write>(&mut self, out: &mut W, r: &FlowRecord) -> io::Result<()> {
        self.header(out)?;
        let values = row(r);
        if self.json {
            return write_json_row(out, &values);
        }
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                out.write_all(b"\t")?;
            }
            match v {
                Val::Str(s) => out.write_all(s.as_bytes())?,
                Val::Count(n) => write!(out, "{n}")?,
                Val::Secs(us) => out.write_all(secs6(*us).as_bytes())?,
                Val::Unset => out.write_all(UNSET.as_bytes())?,
            }
        }
        out.write_all(b"\n")
    }

    /// The end of the log: `#close` (the header first if no row was written).
    pub fn finish<W: Write>(&mut self, out: &mut W) -> io::Result<()> {
        if self.json {
            return Ok(());
        }
        self.header(out)?;
        let close = header_time(self.close.unwrap_or_default());
        writeln!(out, "#close\t{close}")
    }
}

/// Every value is ASCII without quotes or backslashes (addresses, letters, digits), so
/// nothing needs escaping.
fn write_json_row<W: Write>(out: &mut W, values: &[Val; 21]) -> io::Result<()> {
    out.write_all(b"{")?;
    let mut first = true;
    for (name, v) in FIELDS.iter().zip(values) {
        if matches!(v, Val::Unset) {
            continue;
        }
        if !first {
            out.write_all(b",")?;
        }
        first = false;
        write!(out, "\"{name}\":")?;
        match v {
            Val::Str(s) => write!(out, "\"{s}\"")?,
            Val::Count(n) => write!(out, "{n}")?,
            Val::Secs(us) => out.write_all(secs_json(*us).as_bytes())?,
            Val::Unset => {}
        }
    }
    out.write_all(b"}\n")
}

#[cfg(test)]
mod tests;
