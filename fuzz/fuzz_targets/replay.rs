//! Replay fuzz target: the whole pipeline (libpcap reading, decode, flow table,
//! reporters, diagnosis, the `-w` writer) on a capture file made from the input.
//!
//! An input that starts with a pcap or pcapng magic number is the whole file. Otherwise
//! byte 0 chooses the link type (bits 0-2) and the options (bit 3 JSON, bit 4
//! `--only-problems`, bit 5 `--ladder`, bit 6 `-w /dev/null`, bit 7 `--max-flows 4`),
//! and the rest follows a fixed classic pcap header as its records.
//!
//! JSON output is checked: every line is JSON, the summary comes last and adds up.
#![no_main]

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use portsniff::cli::Cli;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

const LINKS: [u32; 8] = [1, 0, 108, 113, 276, 101, 228, 147];

fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("portsniff-fuzz-replay-{}.pcap", std::process::id()))
    })
}

fn is_capture(data: &[u8]) -> bool {
    matches!(
        data.get(..4),
        Some(
            [0xd4, 0xc3, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0xc3, 0xd4]
                | [0x4d, 0x3c, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0x3c, 0x4d]
                | [0x0a, 0x0d, 0x0d, 0x0a]
        )
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let (file, options) = if is_capture(data) {
        (data.to_vec(), data.last().copied().unwrap_or(0) & 0xf8)
    } else {
        let mut f = Vec::with_capacity(24 + body.len());
        f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        f.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&262_144u32.to_le_bytes());
        f.extend_from_slice(&LINKS[usize::from(first & 7)].to_le_bytes());
        f.extend_from_slice(body);
        (f, first)
    };
    std::fs::write(path(), &file).expect("the fuzz input is written to a temporary file");
    let json = options & 0x08 != 0;
    let only_problems = options & 0x10 != 0;
    // Built by the command line's own parser and `into_config`, as `main` does, so the
    // target follows new options without edits.
    let file_arg = path().to_str().expect("a UTF-8 temporary path");
    let mut args = vec![
        "portsniff",
        "-r",
        file_arg,
        "--port",
        "61999",
        "--color",
        "never",
    ];
    if json {
        args.push("--json");
    }
    if only_problems {
        args.push("--only-problems");
    }
    if options & 0x20 != 0 {
        args.push("--ladder");
    }
    if options & 0x40 != 0 {
        args.extend(["-w", "/dev/null"]);
    }
    if options & 0x80 != 0 {
        args.extend(["--max-flows", "4"]);
    }
    let cfg = Cli::try_parse_from(&args)
        .expect("the fuzz target's arguments are valid")
        .into_config();
    let stop = Arc::new(AtomicBool::new(false));
    if !json {
        let _ = portsniff::run(&cfg, std::io::sink(), stop);
        return;
    }
    let mut out = Vec::new();
    let Ok(res) = portsniff::run(&cfg, &mut out, stop) else {
        // Not a capture at all: an error before any output.
        return;
    };
    assert!(res.problems <= res.flows);
    let text = String::from_utf8(out).expect("the report is UTF-8");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let summary = lines.last().expect("a summary line");
    assert_eq!(summary["type"], "summary", "{summary}");
    let n = |v: &serde_json::Value| v.as_u64().expect("a count");
    let p = &summary["packets"];
    assert_eq!(
        n(&p["captured"]),
        n(&p["decoded"]) + n(&p["skipped"]) + n(&p["syns_elsewhere"]),
        "{p}"
    );
    assert_eq!(n(&summary["flows"]), res.flows);
    let flow_lines = lines.iter().filter(|l| l["type"] == "flow").count() as u64;
    if only_problems {
        assert_eq!(flow_lines, res.problems, "--only-problems flow lines");
    } else {
        assert_eq!(flow_lines, res.flows, "one flow line per flow");
    }
});
