//! `gen_capture`: the command line over the capture generator the load tests use, so a
//! benchmark replays exactly what the tests replay.
//!
//! ```sh
//! cargo run --release --example gen_capture -- --packets 1000000 --out /tmp/mix.pcap
//! cargo run --release --example gen_capture -- --packets 1000000 --out /tmp/flood.pcap --mode synflood
//! ```
//!
//! What the modes write, and the counts printed at the end, are documented in
//! `tests/gen/mod.rs`.

// The generator and the pcap builder it writes with are test modules (`tests/gen/`,
// `tests/wire/`), declared by the load and view tests as `mod gen;`. An example cannot
// import from a test target, so this is the one place that includes them by path (both
// allow dead code: the tests use parts of them this command line does not).
#[path = "../tests/gen/mod.rs"]
mod gen;
#[path = "../tests/wire/mod.rs"]
mod wire;

use gen::{generate_file, GenOptions, Mode};
use std::fmt;
use std::path::PathBuf;

const USAGE: &str = "usage: gen_capture --packets N --out FILE [--port PORT] [--seed S] \
                     [--mode mix|synflood]";

/// Parses the command line (without the program name).
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<(GenOptions, PathBuf), String> {
    let mut opts = GenOptions::new(0, Mode::Mix);
    let mut packets = None;
    let mut out = None;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_string());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |e: &dyn fmt::Display| format!("bad value {value:?} for {flag}: {e}\n{USAGE}");
        match flag.as_str() {
            "--packets" => packets = Some(value.parse::<u64>().map_err(|e| bad(&e))?),
            "--out" => out = Some(PathBuf::from(&value)),
            "--port" => {
                opts.port = value.parse::<u16>().map_err(|e| bad(&e))?;
                if opts.port == 0 {
                    return Err(bad(&"port 0"));
                }
            }
            "--seed" => opts.seed = value.parse::<u64>().map_err(|e| bad(&e))?,
            "--mode" => {
                opts.mode = match value.as_str() {
                    "mix" => Mode::Mix,
                    "synflood" => Mode::SynFlood,
                    _ => return Err(bad(&"expected mix or synflood")),
                }
            }
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    opts.packets = packets.ok_or_else(|| format!("--packets is required\n{USAGE}"))?;
    let out = out.ok_or_else(|| format!("--out is required\n{USAGE}"))?;
    Ok((opts, out))
}

fn main() {
    let (opts, path) = match parse_args(std::env::args().skip(1)) {
        Ok(v) => v,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let started = std::time::Instant::now();
    match generate_file(&opts, &path) {
        Ok(counts) => {
            eprintln!(
                "gen_capture: wrote {} packets to {} in {:.2?}",
                counts.packets,
                path.display(),
                started.elapsed()
            );
            eprintln!("gen_capture: {counts}");
        }
        Err(e) => {
            eprintln!("gen_capture: writing {}: {e}", path.display());
            std::process::exit(1);
        }
    }
}
