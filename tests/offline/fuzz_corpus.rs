//! The committed fuzz corpora (fuzz/corpus/), replayed in the normal suite: a debug build
//! with overflow checks, no sanitizer. The fuzzers found these inputs interesting;
//! every one of them must still be handled without a panic. The input encodings mirror
//! fuzz/fuzz_targets/{decode,replay}.rs.

use clap::Parser;
use portsniff::cli::Cli;
use portsniff::decode::{decode_ip, Decoder, LinkType, Timestamp};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

const PORT: u16 = 61999;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn decode_corpus_never_panics() {
    let files = corpus("decode");
    assert!(files.len() > 100, "the decode corpus is committed");
    for f in files {
        let data = std::fs::read(&f).unwrap();
        let Some((&selector, frame)) = data.split_first() else {
            continue;
        };
        let link = match selector % 8 {
            0 => LinkType::Ethernet,
            1 => LinkType::Null,
            2 => LinkType::Loop,
            3 => LinkType::LinuxSll,
            4 => LinkType::LinuxSll2,
            5 => LinkType::Raw,
            6 => LinkType::Unsupported(i32::from(selector)),
            _ => {
                let _ = decode_ip(Timestamp(1), frame, PORT);
                continue;
            }
        };
        let _ = Decoder::new(link, PORT).decode(Timestamp(1), frame);
    }
}

const LINKS: [u32; 8] = [1, 0, 108, 113, 276, 101, 228, 147];

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

#[test]
fn replay_corpus_runs_the_whole_pipeline_without_a_panic() {
    let files = corpus("replay");
    assert!(files.len() > 40, "the replay corpus is committed");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.pcap");
    for f in files {
        let data = std::fs::read(&f).unwrap();
        let Some((&first, body)) = data.split_first() else {
            continue;
        };
        let file = if is_capture(&data) {
            data.clone()
        } else {
            let mut v = Vec::new();
            v.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
            v.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            v.extend_from_slice(&262_144u32.to_le_bytes());
            v.extend_from_slice(&LINKS[usize::from(first & 7)].to_le_bytes());
            v.extend_from_slice(body);
            v
        };
        std::fs::write(&path, &file).unwrap();
        let args = [
            "portsniff",
            "-r",
            path.to_str().unwrap(),
            "--port",
            "61999",
            "--json",
            "--ladder",
        ];
        let cfg = Cli::try_parse_from(args).unwrap().into_config();
        let mut out = Vec::new();
        let Ok(res) = portsniff::run(&cfg, &mut out, Arc::new(AtomicBool::new(false))) else {
            continue; // not a capture: an error before any output
        };
        let text = String::from_utf8(out).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["type"], "summary", "{}: {text}", f.display());
        assert_eq!(last["flows"], res.flows, "{}", f.display());
    }
}
