//! The README's first example ("What it looks like") is what a new user sees first, from
//! its first command: it must be exactly what the binary prints for the bundled capture.
//! `PORTSNIFF_BLESS=1 cargo test --test offline readme::` rewrites the block.

use crate::support::portsniff;
use std::path::Path;

const COMMAND: &str = "$ portsniff -r fixtures/mixed.pcap --port 61999\n";

#[test]
fn the_readmes_first_example_is_what_the_bundled_capture_prints() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Run from the repository's root with the README's relative path: the banner and the
    // summary name the file as the user typed it.
    let out = portsniff()
        .current_dir(root)
        .args(["-r", "fixtures/mixed.pcap", "--port", "61999"])
        .output()
        .expect("run portsniff");
    assert_eq!(
        out.status.code(),
        Some(1),
        "the capture holds failed connections"
    );
    // The README shows stderr's banner and stdout together, as a terminal does.
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let readme_path = root.join("README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("README.md is readable");
    let start = readme
        .find(COMMAND)
        .expect("README shows the first command's output")
        + COMMAND.len();
    let end = start + readme[start..].find("```").expect("the example block ends");
    let shown = &readme[start..end];
    if std::env::var_os("PORTSNIFF_BLESS").is_some() {
        let new = format!(
            "{}{}\n{}",
            &readme[..start],
            printed.trim_end(),
            &readme[end..]
        );
        std::fs::write(&readme_path, new).expect("README.md is writable");
        return;
    }
    assert_eq!(
        shown.trim_end(),
        printed.trim_end(),
        "README's first example no longer matches `portsniff -r fixtures/mixed.pcap --port 61999` \
         (PORTSNIFF_BLESS=1 cargo test --test offline readme:: rewrites it)"
    );
}
