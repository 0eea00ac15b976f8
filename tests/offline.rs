//! The integration tests that need nothing but files and the binary: replays of the
//! fixtures and of broken or generated captures, the command line's errors and flags,
//! ladders, property tests and the fuzz corpus. None captures live, uses a namespace,
//! times anything against the wall clock or sets process-global state, so they share one
//! test binary (one link instead of six) and may run on parallel threads.
//!
//! Tests that capture live, time things or change the process (`alloc.rs` installs a
//! counting allocator) keep a binary of their own, so `cargo test` still runs them one
//! binary after another as before. Run one group here with
//! `cargo test --test offline fixtures::`.

mod support;
mod wire;

mod offline {
    mod cli;
    mod fixtures;
    mod flood;
    mod fuzz_corpus;
    mod ladder;
    mod malformed;
    mod properties;
    mod readme;
}
