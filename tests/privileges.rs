//! After the capture handle is open, portsniff keeps only what it needs: checked from
//! inside real live runs through the credentials the summary reports (read from
//! /proc/self/status at the end of the run).

mod support;

use support::live;

use serde_json::Value;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use support::*;

/// CAP_SYS_PTRACE is capability 19: the only one kept, for process attribution.
const PTRACE_ONLY: &str = "0000000000080000";
const NONE: &str = "0000000000000000";

/// Root, or a skip that fails under `CI=true` (the gate every live test file shares).
fn gate(test: &str) -> bool {
    live::have_root(test)
}

/// A short live run on `lo`; returns (exit code, summary line, stderr).
fn live(cmd: &mut Command) -> (Option<i32>, Value, String) {
    let out = cmd
        .args(["-i", "lo", "--port", "61997", "--duration", "0.5", "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("portsniff runs");
    let lines = json_lines(&out.stdout);
    let summary = lines.last().cloned().unwrap_or(Value::Null);
    (
        out.status.code(),
        summary,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A copy of the binary that another user can run, in a 0755 directory.
fn world_runnable_copy() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("portsniff");
    std::fs::copy(bin(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, exe)
}

#[test]
fn started_through_sudo_it_becomes_the_caller_and_keeps_only_ptrace() {
    if !gate("sudo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let w = dir.path().join("out.pcap");
    let (code, s, err) = live(
        support::portsniff()
            .env("SUDO_UID", "65534")
            .env("SUDO_GID", "65534")
            .env("SUDO_USER", "nobody")
            .arg("-w")
            .arg(&w),
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        s["kernel_events"]["enabled"], true,
        "the witness is attached before the switch to the caller: {s}"
    );
    let c = &s["credentials"];
    assert_eq!(c["uid"], 65534, "runs as the sudo caller: {c}");
    assert_eq!(c["gid"], 65534, "{c}");
    assert_eq!(c["cap_effective"], PTRACE_ONLY, "{c}");
    assert_eq!(c["cap_permitted"], PTRACE_ONLY, "{c}");
    assert_eq!(c["cap_inheritable"], NONE, "{c}");
    assert_eq!(c["cap_ambient"], NONE, "{c}");
    assert_eq!(
        c["cap_bounding"], PTRACE_ONLY,
        "nothing can be regained: {c}"
    );
    let meta = std::fs::metadata(&w).expect("the -w file exists");
    assert_eq!(
        (meta.uid(), meta.gid()),
        (65534, 65534),
        "the -w file belongs to the caller"
    );
}

#[test]
fn dash_z_with_no_attribution_keeps_no_capability_at_all() {
    if !gate("-Z") {
        return;
    }
    let (code, s, err) = live(support::portsniff().args(["-Z", "nobody", "--no-attribution"]));
    assert_eq!(code, Some(0), "{err}");
    let c = &s["credentials"];
    assert_eq!(c["uid"], 65534, "{c}");
    for set in [
        "cap_effective",
        "cap_permitted",
        "cap_inheritable",
        "cap_ambient",
        "cap_bounding",
    ] {
        assert_eq!(c[set], NONE, "{set}: {c}");
    }
}

#[test]
fn root_without_sudo_stays_root_but_keeps_only_ptrace() {
    if !gate("root") {
        return;
    }
    let (code, s, err) = live(support::portsniff().env_remove("SUDO_UID"));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(s["credentials"]["uid"], 0);
    assert_eq!(
        s["credentials"]["cap_effective"], PTRACE_ONLY,
        "{}",
        s["credentials"]
    );
}

#[test]
fn works_without_root_through_file_capabilities_and_then_drops_them() {
    if !gate("setcap") {
        return;
    }
    let have = |tool: &str| Command::new(tool).arg("--version").output().is_ok();
    if !have("setcap") || !have("setpriv") {
        live::skip("setcap", "setcap or setpriv missing");
        return;
    }
    let (_dir, exe) = world_runnable_copy();
    let set = Command::new("setcap")
        .args(["cap_net_raw,cap_net_admin=eip"])
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        set.status.success(),
        "setcap: {}",
        String::from_utf8_lossy(&set.stderr)
    );
    let (code, s, err) = live(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&exe)
            .env_remove("SUDO_UID"),
    );
    assert_eq!(
        code,
        Some(0),
        "an unprivileged user captures with the file capabilities: {err}"
    );
    assert_eq!(s["live"], true, "{s}");
    let c = &s["credentials"];
    assert_eq!(c["uid"], 65534, "{c}");
    assert_eq!(
        c["cap_effective"], NONE,
        "capture open, capabilities gone: {c}"
    );
    assert_eq!(c["cap_permitted"], NONE, "{c}");
    // Without CAP_BPF the witness is off, and the run says why rather than failing.
    assert_eq!(s["kernel_events"]["enabled"], false, "{s}");
    let why = s["kernel_events"]["why"].as_str().unwrap_or_default();
    assert!(
        why.contains("CAP_BPF"),
        "names the missing capability: {why}"
    );
    assert!(
        err.contains("no kernel events") && err.contains("CAP_BPF"),
        "said once on stderr: {err}"
    );
}

#[test]
fn file_capabilities_with_bpf_attach_the_witness_and_then_drop_everything() {
    if !gate("setcap bpf") {
        return;
    }
    let (_dir, exe) = world_runnable_copy();
    let set = Command::new("setcap")
        .args(["cap_net_raw,cap_net_admin,cap_bpf,cap_perfmon=eip"])
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        set.status.success(),
        "setcap: {}",
        String::from_utf8_lossy(&set.stderr)
    );
    let (code, s, err) = live(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&exe)
            .env_remove("SUDO_UID"),
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        s["kernel_events"]["enabled"], true,
        "CAP_BPF and CAP_PERFMON are enough for the witness: {s} {err}"
    );
    let c = &s["credentials"];
    for set in [
        "cap_effective",
        "cap_permitted",
        "cap_inheritable",
        "cap_ambient",
    ] {
        assert_eq!(
            c[set], NONE,
            "no capability kept for the attached programs: {set}: {c}"
        );
    }
}

#[test]
fn after_dash_z_the_attached_witness_still_names_the_kernels_drops() {
    if !gate("-Z witness") {
        return;
    }
    let Some(ns) = live::Netns::create("-Z witness") else {
        return;
    };
    ns.run(&[
        "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "61996", "-j", "DROP",
    ]);
    let mut sniffer = live::Sniffer::spawn(
        ns.portsniff(&[
            "-i",
            "lo",
            "--port",
            "61996",
            "--json",
            "-Z",
            "nobody",
            "--syn-timeout",
            "1",
        ]),
        "portsniff -Z nobody",
    );
    sniffer.wait_for_banner();
    // One connection attempt, inside the namespace, given up after its second SYN.
    let client = ns.on_thread(|| {
        let addr: std::net::SocketAddr = "127.0.0.1:61996".parse().unwrap();
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(1500)).is_err()
    });
    assert!(client.join().unwrap(), "the DROP rule stops the connection");
    sniffer.interrupt();
    let run = sniffer.wait_exit(std::time::Duration::from_secs(10));
    let lines = run.json();
    let summary = &lines.last().expect("a summary").1;
    assert_eq!(summary["credentials"]["uid"], 65534, "{summary}");
    assert_eq!(summary["kernel_events"]["enabled"], true, "{summary}");
    let flow = lines
        .iter()
        .map(|(_, v)| v)
        .find(|v| v["type"] == "flow" && v["final"] == true)
        .unwrap_or_else(|| panic!("a final flow line: {}", run.stdout_text()));
    let drops = &flow["kernel"]["drops"];
    assert_eq!(drops[0]["reason"], "NETFILTER_DROP", "{flow}");
    assert_eq!(drops[0]["what"], "SYN", "{flow}");
    assert_eq!(drops[0]["dir"], "c2s", "{flow}");
    assert!(
        drops[0]["count"].as_u64().unwrap_or(0) >= 2,
        "both SYNs: {flow}"
    );
    // The program names the place in the kernel and the reader looks it up through the
    // map's descriptor, which needs no privilege once open: named after -Z dropped root
    // (`nft_do_chain` with iptables-nft), not null.
    assert!(
        drops[0]["where"].as_str().is_some_and(|w| !w.is_empty()),
        "the drop's place named: {flow}"
    );
}

#[test]
fn dash_z_needs_root_and_an_existing_user() {
    let out = run(&[
        "-r",
        fixture("refused.pcap").to_str().unwrap(),
        "--port",
        PORT,
        "-Z",
        "no-such-user-here",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no such user") || err.contains("only root"),
        "{err}"
    );
}

#[test]
fn payload_bytes_are_never_printed() {
    // The fixture's client sends 100 × 'Q' and the server 200 × 'R'.
    for extra in [
        &[][..],
        &["--json"][..],
        &["--ladder"][..],
        &["--json", "--ladder"][..],
    ] {
        let mut args = vec![
            "-r",
            "fixtures/closed_client_first.pcap",
            "--port",
            PORT,
            "--flow",
            "1",
        ];
        args.extend_from_slice(extra);
        let out = support::portsniff()
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(&args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("QQQQ") && !text.contains("RRRR"),
            "{extra:?}:\n{text}"
        );
    }
}
