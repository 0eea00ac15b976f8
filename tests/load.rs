//! Load tests: large generated captures replayed through the real binary (every
//! connection accounted for; memory bounded by `--max-flows`, not by the number of
//! sources), and live captures under sustained traffic (a soak of real connections on
//! `lo`, and a SYN flood inside a network namespace).
//!
//! The captures come from `tests/gen` (the engine of `examples/gen_capture.rs`), so
//! the tests need no `cargo run`. The binary under test is the one `cargo test` builds (a
//! debug build), so the sizes are chosen to keep these tests under ~60 s on a 2-core
//! machine; `benches/soak.sh` runs the full sizes against a release build.
//!
//! The live tests need root (and `ip`/`iptables` for the namespace one): without it they
//! print why they skip and pass, except in CI (`CI=true`), where they fail instead. Each
//! live run (the soak, the SYN flood) is judged by two tests: one as the brief for this
//! file asks (every connection accounted for, or the drops reported: never hidden), and
//! a stricter one (almost nothing lost in the soak; nothing at all in the flood).
//! `live_syn_flood_loses_nothing` fails at 0fb04f9: see its comment.
//!
//! Knobs (environment): PORTSNIFF_SOAK_SECS (default 20) and PORTSNIFF_SOAK_RATE
//! (connections a second, default 300) for the soak; PORTSNIFF_FLOOD_SOURCES (default
//! 300,000) and PORTSNIFF_FLOOD_CAP (default 1 % of the sources) for the replayed flood;
//! PORTSNIFF_LOAD_ARGS, extra portsniff arguments for the live runs (e.g.
//! `--no-attribution`), to compare configurations by hand.

mod gen;
mod support;
mod wire;

use std::sync::{Mutex, MutexGuard};

/// The heavy tests (large replays, live captures) run one at a time: on a 2-core machine
/// two of them at once would measure each other (CPU for a live capture's flow stage,
/// replay times). The light ones run alongside.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Extra portsniff arguments for the live tests, from PORTSNIFF_LOAD_ARGS (split on
/// whitespace), to compare configurations by hand (e.g. `--no-attribution`, `-B 65536`).
fn extra_args() -> Vec<String> {
    std::env::var("PORTSNIFF_LOAD_ARGS")
        .map(|v| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// A summary count, which must be a non-negative integer.
fn u(v: &serde_json::Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("expected a non-negative integer in the summary, got {v}"))
}

mod load {
    mod flood;
    mod harness;
    mod replay;
    mod soak;
}
