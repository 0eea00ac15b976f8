//! Running the real binary: [`portsniff`] is the one command every test starts it with
//! (live, replay, under a namespace or a terminal), [`json_lines`] reads what it printed,
//! and the fixtures' paths.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

pub const PORT: &str = "61999";

/// The path of the `portsniff` binary cargo built for this test run.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portsniff")
}

/// `portsniff` with the environment the tests' expectations assume: no colour
/// (`NO_COLOR=1`), no `RUST_LOG` inherited from the developer's shell (it would add log
/// lines to stderr), and no standard input (a replay of `-` must be asked for).
/// Callers add arguments, and override any of these (`.stdin(Stdio::piped())`).
pub fn portsniff() -> Command {
    let mut cmd = Command::new(bin());
    cmd.env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// The path of `fixtures/malformed/NAME`.
pub fn malformed_fixture(name: &str) -> PathBuf {
    fixture("malformed").join(name)
}

/// The directory of the committed captures and their golden outputs.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The path of `fixtures/NAME`.
pub fn fixture(name: &str) -> PathBuf {
    fixtures_dir().join(name)
}

/// The file names of every capture in `fixtures/` (not `fixtures/malformed/`), sorted.
pub fn fixture_captures() -> Vec<String> {
    let dir = fixtures_dir();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("fixtures/ is readable")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pcap") || n.ends_with(".pcapng"))
        .collect();
    names.sort();
    names
}

/// Runs [`portsniff`] with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    portsniff()
        .args(args)
        .output()
        .expect("the portsniff binary runs")
}

/// Parses JSON lines, failing the test on any line that is not JSON.
pub fn json_lines(stdout: &[u8]) -> Vec<Value> {
    try_json_lines(stdout).unwrap_or_else(|e| panic!("{e}"))
}

/// Parses JSON lines; the error names the first line that is not JSON (for property
/// tests, which must return their failure rather than panic).
pub fn try_json_lines(stdout: &[u8]) -> Result<Vec<Value>, String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("not JSON ({e}): {l}")))
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
