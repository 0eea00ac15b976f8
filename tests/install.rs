//! Installing portsniff as a user would: `cargo install --path .`, and the man page and
//! shell completions that the binary itself writes with `--generate` (README, Install).
//!
//! Both run cargo with this test's own target directory, so they reuse what `cargo test`
//! just built instead of building everything again.

mod support;

use clap::CommandFactory;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::live::{run_bounded, skip, which, Finished};
use support::{fixture, PORT};

/// A cold build of the example or the binary on a 2-core machine stays well inside this.
const CARGO_TIMEOUT: Duration = Duration::from_secs(900);

/// The target directory the test binaries were built in: `target/debug/portsniff`'s
/// grandparent.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_portsniff"))
        .ancestors()
        .nth(2)
        .expect("the binary sits in TARGET/PROFILE/")
        .to_path_buf()
}

fn cargo(args: &[&str], what: &str) -> Finished {
    let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    cmd.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", target_dir());
    let run = run_bounded(cmd, what, CARGO_TIMEOUT);
    assert_eq!(run.code(), Some(0), "{what} failed:\n{}", run.stderr);
    run
}

/// What `--generate` writes for each file the README's Install table names.
const GENERATED: [(&str, &str); 6] = [
    ("man", "portsniff.1"),
    ("bash", "portsniff.bash"),
    ("zsh", "_portsniff"),
    ("fish", "portsniff.fish"),
    ("elvish", "portsniff.elv"),
    ("powershell", "_portsniff.ps1"),
];

/// `portsniff --generate WHAT > FILE` for each, as a user with only the binary would:
/// the directory holding them.
fn generate_docs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (what, file) in GENERATED {
        let out = Command::new(env!("CARGO_BIN_EXE_portsniff"))
            .args(["--generate", what])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "--generate {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "--generate {what} writes only to stdout"
        );
        assert!(!out.stdout.is_empty(), "--generate {what} wrote nothing");
        std::fs::write(dir.path().join(file), &out.stdout).unwrap();
    }
    dir
}

/// Every `--long` flag clap knows, `--help` and `--version` included.
fn long_flags() -> Vec<String> {
    let cmd = portsniff::cli::Cli::command();
    let mut flags: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long())
        .map(str::to_string)
        .collect();
    flags.extend(["help".to_string(), "version".to_string()]);
    assert!(flags.len() > 20, "{flags:?}");
    flags
}

#[test]
fn cargo_install_puts_a_working_portsniff_in_the_root() {
    let root = tempfile::tempdir().unwrap();
    cargo(
        &[
            "install",
            "--path",
            env!("CARGO_MANIFEST_DIR"),
            "--root",
            root.path().to_str().unwrap(),
            "--debug",
            "--offline",
            "--locked",
        ],
        "cargo install --path .",
    );
    let installed = root.path().join("bin").join("portsniff");
    let out = Command::new(&installed)
        .args([
            "-r",
            fixture("refused.pcap").to_str().unwrap(),
            "--port",
            PORT,
        ])
        .args(["--json"])
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", installed.display()));
    assert_eq!(
        out.status.code(),
        Some(1),
        "a refused connection is a problem"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"outcome\":\"refused\""), "{stdout}");
}

#[test]
fn generate_writes_a_man_page_and_completions_for_every_flag() {
    let dir = generate_docs();
    let flags = long_flags();

    // The man page renders, and documents every flag, the expression and the examples.
    let page = dir.path().join("portsniff.1");
    let rendered = match which("groff") {
        Some(groff) => {
            let out = Command::new(groff)
                .args(["-man", "-Tascii", "-P-cbou", "-ww"])
                .arg(&page)
                .output()
                .unwrap();
            assert!(out.status.success());
            assert!(
                out.stderr.is_empty(),
                "groff warns: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
        None => {
            skip(
                "generate_writes_a_man_page_and_completions_for_every_flag",
                "groff is not installed: checking the roff source",
            );
            std::fs::read_to_string(&page).unwrap().replace("\\-", "-")
        }
    };
    for flag in &flags {
        assert!(
            rendered.contains(&format!("--{flag}")),
            "man page lacks --{flag}"
        );
    }
    for section in [
        "SYNOPSIS",
        "OPTIONS",
        "EXAMPLES",
        "EXIT STATUS",
        "EXPRESSION",
    ] {
        assert!(rendered.contains(section), "man page lacks {section}");
    }
    assert!(
        rendered.contains("portsniff -i any --port 5432 --json | jq ."),
        "{rendered}"
    );

    // Each shell's completions name every flag, in that shell's own syntax.
    for (file, forms) in [
        ("portsniff.bash", &["--{} ", "--{}\""][..]),
        // zsh: `--port=[help]` for a flag with a value, `--json[help]` without.
        ("_portsniff", &["--{}=[", "--{}["]),
        ("portsniff.fish", &["-l {} "]),
        ("portsniff.elv", &["cand --{} "]),
        ("_portsniff.ps1", &["'--{}'"]),
    ] {
        let script = std::fs::read_to_string(dir.path().join(file)).unwrap();
        for flag in &flags {
            let wants: Vec<String> = forms.iter().map(|f| f.replace("{}", flag)).collect();
            assert!(
                wants.iter().any(|w| script.contains(w)),
                "{file} lacks {wants:?}"
            );
        }
    }
}

#[test]
fn bash_completion_is_valid_and_completes_a_flag_and_interfaces() {
    let dir = generate_docs();
    let script = dir.path().join("portsniff.bash");
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // What bash does on `portsniff --list-i<TAB>`.
    let complete = Command::new("bash")
        .arg("-c")
        .arg(
            "source \"$1\"; COMP_WORDS=(portsniff --list-i); COMP_CWORD=1; \
             _portsniff portsniff --list-i portsniff; echo \"${COMPREPLY[*]}\"",
        )
        .arg("bash")
        .arg(&script)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&complete.stdout).trim(),
        "--list-interfaces",
        "{}",
        String::from_utf8_lossy(&complete.stderr)
    );
    // `portsniff -i l<TAB>` offers the machine's interfaces, not file names.
    let complete = Command::new("bash")
        .arg("-c")
        .arg(
            "source \"$1\"; COMP_WORDS=(portsniff -i l); COMP_CWORD=2; \
             _portsniff portsniff l -i; echo \"${COMPREPLY[*]}\"",
        )
        .arg("bash")
        .arg(&script)
        .output()
        .unwrap();
    let offered = String::from_utf8_lossy(&complete.stdout);
    assert!(
        offered.split_whitespace().any(|w| w == "lo"),
        "-i completes interfaces: {offered:?} {}",
        String::from_utf8_lossy(&complete.stderr)
    );
}

/// `portsniff --generate man | man -l -` (README, Install): the page renders with the
/// reference sections a user looks for, beyond `--help`.
#[test]
fn the_generated_man_page_renders_with_man_and_holds_the_reference() {
    let Some(man) = which("man") else {
        skip(
            "the_generated_man_page_renders_with_man_and_holds_the_reference",
            "man is not installed (apt-get install man-db)",
        );
        return;
    };
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("\"$1\" --generate man | MANPAGER=cat MANWIDTH=100 \"$2\" -l -")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_portsniff"))
        .arg(man);
    let run = run_bounded(
        cmd,
        "portsniff --generate man | man -l -",
        Duration::from_secs(60),
    );
    assert_eq!(run.code(), Some(0), "man -l: {}", run.stderr);
    let page = &run
        .stdout
        .iter()
        .map(|l| l.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for section in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "OUTCOMES",
        "FINDINGS",
        "HISTORY",
        "JSON OUTPUT",
        "METRICS",
        "EXIT STATUS",
        "EXAMPLES",
        "SEE ALSO",
    ] {
        assert!(
            page.lines().any(|l| l.trim_end() == section),
            "man page lacks the {section} section:\n{page}"
        );
    }
    // Every field of a real flow line is in the page's schema.
    let replay = Command::new(env!("CARGO_BIN_EXE_portsniff"))
        .args([
            "-r",
            fixture("mixed.pcap").to_str().unwrap(),
            "--port",
            PORT,
            "--json",
        ])
        .output()
        .unwrap();
    let flow: serde_json::Value = String::from_utf8_lossy(&replay.stdout)
        .lines()
        .find(|l| l.contains(r#""type":"flow""#))
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("a flow line");
    let schema = page
        .split("The flow line")
        .nth(1)
        .and_then(|rest| rest.split("\nMETRICS").next())
        .expect("a flow line subsection before METRICS");
    let words: Vec<&str> = schema
        .split(|c: char| c.is_whitespace() || c == ',')
        .collect();
    for field in flow.as_object().unwrap().keys() {
        assert!(
            words.contains(&field.as_str()),
            "the man page's flow schema lacks {field}:\n{schema}"
        );
    }
    for said in [
        "nothing_listening",
        "handshake_incomplete",
        "tcpdump(8)",
        "ss(8)",
        "pcap-filter(7)",
        "portsniff_connections_total",
    ] {
        assert!(page.contains(said), "man page lacks {said}");
    }
}

/// `cargo install --path . --no-default-features` (README, Install): a build without the
/// kernel witness (no build script work, no libbpf, no clang) still captures and
/// replays, and every live run says why it has no kernel events. Built in a target directory of its own, so the suite's
/// binaries (with the witness) are not replaced.
#[test]
fn a_build_without_the_kernel_witness_works_and_says_what_it_lacks() {
    let target = target_dir().join("no-witness");
    let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    cmd.args([
        "build",
        "--offline",
        "--locked",
        "--no-default-features",
        "--bin",
        "portsniff",
    ])
    .current_dir(env!("CARGO_MANIFEST_DIR"))
    .env("CARGO_TARGET_DIR", &target);
    let run = run_bounded(cmd, "cargo build --no-default-features", CARGO_TIMEOUT);
    assert_eq!(
        run.code(),
        Some(0),
        "build without the witness:\n{}",
        run.stderr
    );
    let exe = target.join("debug").join("portsniff");

    let replay = Command::new(&exe)
        .args(["-r", fixture("mixed.pcap").to_str().unwrap(), "--port"])
        .arg(PORT)
        .arg("--json")
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&replay.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(
        summary.contains(r#""kernel_events":{"enabled":false,"why":"a capture file holds packets, not kernel events""#),
        "a replay never has kernel events: {summary}"
    );

    if !support::live::have_root("a_build_without_the_kernel_witness") {
        return;
    }
    let live = Command::new(&exe)
        .args(["-i", "lo", "--port", "61990", "--duration", "0.3", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&live.stderr);
    assert!(
        stderr.contains("no kernel events: this portsniff was built without the kernel witness"),
        "said once on stderr: {stderr}"
    );
    let out = String::from_utf8_lossy(&live.stdout);
    assert!(
        out.contains(r#""kernel_events":{"enabled":false,"why":"this portsniff was built without the kernel witness""#),
        "and in the summary: {out}"
    );
}
