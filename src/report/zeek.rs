//! `--format zeek` and `--format zeek-json`: the final flow records as a Zeek conn.log,
//! so `zeek-cut` and existing Zeek pipelines read portsniff's output unchanged.
//!
//! The TSV is what Zeek's ASCII writer writes (`src/logging/writers/ascii/Ascii.cc`): the
//! `#separator` … `#types` header, one row per connection, `#close` at the end; times and
//! intervals with six decimals, unset fields `-`. The JSON is Zeek's `LogAscii::use_json=T`
//! style: one object per line, keys named like the TSV columns, unset fields omitted, `ts`
//! as epoch seconds.
//!
//! `conn_state` is the record's own ([`FlowRecord::conn_state`]): the flow stage tracks
//! Zeek's endpoint states over the real segments (`flow/zeek.rs`); this module only
//! writes it.
//!
//! This module sees only final records: live pending notices, findings, ladders and the
//! summary are not conn.log lines.

use crate::decode::Timestamp;
use crate::flow::{FlowRecord, Side};
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
        Val::Str(r.conn_state.as_str().to_string()),
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
