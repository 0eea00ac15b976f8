//! Shared helpers for the integration tests: run the real binary, parse its JSON lines.
#![allow(dead_code)] // each test binary uses its own subset

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

pub const PORT: &str = "61999";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portsniff")
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The file names of every capture in `fixtures/` (not `fixtures/malformed/`), sorted.
pub fn fixture_captures() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("fixtures/ is readable")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pcap") || n.ends_with(".pcapng"))
        .collect();
    names.sort();
    names
}

/// Runs portsniff with `args`, no stdin, and returns its output.
pub fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("the portsniff binary runs")
}

/// Parses JSON lines, failing the test on any line that is not JSON.
pub fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// `portsniff -r FIXTURE --port 61999 --json` → (exit code, flow lines, summary line).
pub fn replay_json(name: &str, extra: &[&str]) -> (i32, Vec<Value>, Value) {
    let path = fixture(name);
    let mut args = vec!["-r", path.to_str().unwrap(), "--port", PORT, "--json"];
    args.extend_from_slice(extra);
    let out = run(&args);
    let lines = json_lines(&out.stdout);
    let summary: Vec<&Value> = lines.iter().filter(|v| v["type"] == "summary").collect();
    assert_eq!(summary.len(), 1, "exactly one summary line for {name}");
    assert_eq!(
        lines.last(),
        Some(summary[0]),
        "the summary is the last line"
    );
    let summary = summary[0].clone();
    let flows = lines.into_iter().filter(|v| v["type"] == "flow").collect();
    (out.status.code().unwrap_or(-1), flows, summary)
}

/// The `{"type":"finding"}` lines of a replay, in their ranked order.
pub fn replay_findings(name: &str) -> Vec<Value> {
    let path = fixture(name);
    let out = run(&["-r", path.to_str().unwrap(), "--port", PORT, "--json"]);
    json_lines(&out.stdout)
        .into_iter()
        .filter(|v| v["type"] == "finding")
        .collect()
}
