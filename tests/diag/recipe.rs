//! The README's `<!-- recipe:NAME -->` blocks: a real run's text report, masked where it
//! changes from run to run, compared with (or, with `PORTSNIFF_BLESS=1`, written into) the
//! README.

use super::Report;
use std::path::Path;
use std::sync::Mutex;

/// README recipes are rewritten by several tests running at once: one at a time.
static README_LOCK: Mutex<()> = Mutex::new(());

/// Masks what changes from run to run in a recipe's text, so the README block (a real
/// run's output) can be compared with this run's. Masked, in this order:
/// - the watched port (each test gets a fresh one): `<port>`;
/// - wall-clock times `<time>` and durations (`13µs`, `1.02s`) `<duration>`;
/// - client ports after an address: `<client port>`;
/// - process ids `pid <pid>`, namespace names `<netns>`, the path of `python3`;
/// - which client process a flow line names (`python3 (pid …) →`, or `? →` when its socket
///   was already gone when portsniff looked): `<client> →`;
/// - the latency percentile lines;
/// - numbers that depend on timers racing the capture's end: how many SYNs a connection
///   sent, and the counts on the `retransmitted`, `packets`, `kernel`, `sockets` and
///   `listener` summary lines and in "grew by N" / "connection attempts";
/// - the `kernel counters` summary line (which counters moved depends on when the final
///   sample was taken);
/// - trailing blanks.
///
/// What is compared after that is [`recipe_point`]: the command, the findings and the
/// Diagnosis section.
pub fn normalise_recipe(text: &str, port: u16) -> String {
    let rules: Vec<(String, &str)> = vec![
        (format!(r"\b{port}\b"), "<port>"),
        (r"\b\d\d:\d\d:\d\d\.\d{6}\b".into(), "<time>"),
        (r"\b\d+(\.\d+)?(µs|ms|s)\b".into(), "<duration>"),
        (r"(\d+\.\d+\.\d+\.\d+|\]):\d+\b".into(), "$1:<client port>"),
        (r"\bpsl-\d+-\d+\b".into(), "<netns>"),
        (r"/\S*/(python3)\b".into(), "$1"),
        (r"(\S+ \(pid \d+\)|\?) → ".into(), "<client> → "),
        (r"\bpid \d+".into(), "pid <pid>"),
        (
            r"(?m)^(  (handshake RTT|duration) +).*$".into(),
            "$1<percentiles>",
        ),
        (r"\b\d+ SYNs?\b".into(), "<n> SYN(s)"),
        // Which kernel counters moved depends on when the last sample was taken.
        (r"(?m)^  kernel counters .*\n".into(), ""),
        (
            r"(?m)^(  (retransmitted|packets|kernel|sockets|listener) .*?)\d+".into(),
            "$1<n>",
        ),
        (r"(grew by|ListenDrops by) \d+".into(), "$1 <n>"),
        (
            r"\b\d+ (connection attempts?|handshake ACKs?)\b".into(),
            "<n> $1",
        ),
        (r"[ \t]+\n".into(), "\n"),
    ];
    rules
        .iter()
        .fold(text.to_string(), |mut acc, (pattern, with)| {
            let re = regex::Regex::new(pattern).expect("a valid recipe mask");
            // A line can hold several numbers to mask: apply until nothing changes.
            loop {
                let next = re.replace_all(&acc, *with).into_owned();
                if next == acc {
                    return acc;
                }
                acc = next;
            }
        })
}

/// The part of a (normalised) recipe that carries its point and that every run of its
/// scenario prints alike: the command line, the findings printed live (`⇒` lines, in
/// order), and the Diagnosis section. The flow lines and summary counts above it are the
/// blessed run's real output, but how many connections a racing kernel accepted, dropped
/// or retransmitted before the capture ended changes from run to run (a full accept queue
/// takes 2 or 3 of 6 attempts), so they are shown, not compared.
pub fn recipe_point(normalised: &str) -> String {
    let mut point = Vec::new();
    let mut in_diagnosis = false;
    for line in normalised.lines() {
        in_diagnosis |= line == "Diagnosis";
        if in_diagnosis || line.starts_with("$ ") || line.trim_start().starts_with('⇒') {
            point.push(line);
        }
    }
    point.join("\n")
}

/// Checks the README's `<!-- recipe:NAME -->` block against this run's text output (both
/// normalised, see [`recipe_point`]), or with `PORTSNIFF_BLESS=1` rewrites the block with
/// it.
pub fn check_recipe(name: &str, report: &Report, port: u16) {
    let recipe = report
        .text
        .as_ref()
        .expect("test setup: the capture was started with_text");
    // `stdout_text` joins the lines without a final newline.
    let newline = if recipe.output.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    let block = format!("```\n$ {}\n{}{newline}```\n", recipe.command, recipe.output);
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let start = format!("<!-- recipe:{name} -->\n");
    let end = "<!-- /recipe -->";
    let _guard = README_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let readme = std::fs::read_to_string(&readme_path).expect("README.md is readable");
    let at = readme
        .find(&start)
        .unwrap_or_else(|| panic!("README.md has no `<!-- recipe:{name} -->` marker"))
        + start.len();
    let len = readme[at..]
        .find(end)
        .unwrap_or_else(|| panic!("README.md: recipe {name} has no `{end}`"));
    if std::env::var_os("PORTSNIFF_BLESS").is_some() {
        let mut new = readme.clone();
        new.replace_range(at..at + len, &block);
        std::fs::write(&readme_path, new).expect("README.md is writable");
        return;
    }
    let in_readme = &readme[at..at + len];
    // The README's run had its own watched port: read it from its command line.
    let readme_port = in_readme
        .split("--port ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(port);
    let want = recipe_point(&normalise_recipe(in_readme, readme_port));
    let got = recipe_point(&normalise_recipe(&block, port));
    if want == got {
        return;
    }
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let differing: Vec<String> = (0..w.len().max(g.len()))
        .filter(|&i| w.get(i) != g.get(i))
        .map(|i| {
            format!(
                "line {}:\n  README: {}\n  now:    {}",
                i + 1,
                w.get(i).unwrap_or(&"(none)"),
                g.get(i).unwrap_or(&"(none)")
            )
        })
        .collect();
    panic!(
        "README recipe `{name}` no longer matches what portsniff prints for its scenario \
         (compared after masking what varies between runs). If the change is intended, \
         regenerate the recipes with `PORTSNIFF_BLESS=1 cargo test --test diagnose` and \
         review the diff.\n{}\n--- this run, unmasked ---\n{block}\n{}",
        differing.join("\n"),
        report.context()
    );
}
