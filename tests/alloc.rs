//! The hot path does not allocate per packet: a counting global allocator watches the
//! decoder and flow table over a long connection, and the whole replay pipeline over
//! files of 2,000 and 200,000 packets.

mod support;
mod wire;

use portsniff::decode::{Decoder, LinkType, Timestamp};
use portsniff::flow::{FlowConfig, FlowEvent, FlowTable};
use portsniff::{Format, Style};
use portsniff::{Limits, Source};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The counter is global: one measurement at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const PORT: u16 = 61999;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

/// An Ethernet/IPv4/TCP frame between 127.0.0.1:40000 and 127.0.0.1:61999.
fn frame(from_client: bool, flags: u8, seq: u32, ack: u32, payload: usize) -> Vec<u8> {
    let (sport, dport) = if from_client {
        (40000u16, PORT)
    } else {
        (PORT, 40000)
    };
    wire::loopback_v4(sport, dport, flags, seq, ack, payload)
}

/// One connection: handshake, then `data` segments alternating direction.
fn connection(data: usize) -> Vec<Vec<u8>> {
    let mut frames = vec![
        frame(true, SYN, 99, 0, 0),
        frame(false, SYN | ACK, 4999, 100, 0),
        frame(true, ACK, 100, 5000, 0),
    ];
    let (mut c, mut s) = (100u32, 5000u32);
    for i in 0..data {
        if i % 2 == 0 {
            frames.push(frame(true, PSH | ACK, c, s, 100));
            c = c.wrapping_add(100);
        } else {
            frames.push(frame(false, PSH | ACK, s, c, 100));
            s = s.wrapping_add(100);
        }
    }
    frames
}

#[test]
fn decoding_and_tracking_an_established_connection_allocates_nothing_per_packet() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let frames = connection(100_000);
    let decoder = Decoder::new(LinkType::Ethernet, PORT);
    let mut table = FlowTable::new(FlowConfig {
        port: PORT,
        max_flows: 1000,
        syn_timeout_us: 3_000_000,
        pending_notices: true,
        settle_all: true,
    });
    let mut events: Vec<FlowEvent> = Vec::with_capacity(16);
    let mut run = |frames: &[Vec<u8>], t0: u64| {
        for (i, f) in frames.iter().enumerate() {
            let seg = decoder
                .decode(Timestamp(t0 + i as u64 * 10), f)
                .expect("decodes");
            table.process(&seg, &mut events);
            events.clear();
        }
    };
    // Warm-up: the flow's slot, the index and the sweep's first run.
    run(&frames[..1000], 1_700_000_000_000_000);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    run(&frames[1000..], 1_700_000_000_010_000);
    let during = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(
        during,
        0,
        "{during} allocations over {} packets",
        frames.len() - 1000
    );
}

/// A classic pcap file of `frames`, 10 µs apart.
fn pcap_file(dir: &std::path::Path, name: &str, frames: &[Vec<u8>]) -> std::path::PathBuf {
    let bytes = wire::pcap_of_frames(LinkType::Ethernet, 1_700_000_000_000_000, frames);
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn replay_allocations(path: &std::path::Path) -> u64 {
    let cfg = portsniff::Config {
        source: Source::File(Some(path.to_path_buf())),
        port: PORT,
        limits: Limits::default(),
        format: Format::Json,
        style: Style { color: false },
        progress: portsniff::Bar::Off,
        only_problems: false,
        run_as: None,
        attribution: false,
        kernel_events: false,
        ladder: None,
        write: None,
        rotation: Default::default(),
        max_flows: 1000,
        syn_timeout: Duration::from_secs(3),
        filter_expr: None,
        tunnel_ports: Default::default(),
        metrics: None,
    };
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let result = portsniff::run(&cfg, std::io::sink(), Arc::new(AtomicBool::new(false))).unwrap();
    assert_eq!(result.flows, 1);
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn replay_allocations_do_not_grow_with_the_number_of_packets() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let small = pcap_file(dir.path(), "small.pcap", &connection(2_000));
    let large = pcap_file(dir.path(), "large.pcap", &connection(200_000));
    let a = replay_allocations(&small);
    let b = replay_allocations(&large);
    eprintln!("replay allocations: 2k packets {a}, 200k packets {b}");
    // The same connection, 100× the packets: the difference is what scales per packet.
    assert!(
        b.saturating_sub(a) < 200,
        "2k packets: {a} allocations, 200k packets: {b}: allocation grows with packets"
    );
}
