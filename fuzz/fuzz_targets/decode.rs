//! Decode fuzz target: the first byte picks the link type, the rest is the captured
//! frame. Decoding must never panic, and whatever it decodes must concern the port.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portsniff::decode::{
    decode_ip, Decoder, LinkType, Segment, SegmentKind, SkipReason, Timestamp,
};

const PORT: u16 = 61999;

fn check(res: Result<Segment, SkipReason>) {
    if let Ok(seg) = res {
        let on_port = seg.src.port == PORT || seg.dst.port == PORT;
        match seg.kind {
            SegmentKind::Tcp(_) | SegmentKind::Icmp(_) => assert!(on_port, "{seg:?}"),
            SegmentKind::SynElsewhere => assert!(!on_port, "{seg:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let link = match selector % 8 {
        0 => LinkType::Ethernet,
        1 => LinkType::Null,
        2 => LinkType::Loop,
        3 => LinkType::LinuxSll,
        4 => LinkType::LinuxSll2,
        5 => LinkType::Raw,
        6 => {
            let res = Decoder::new(LinkType::Unsupported(i32::from(selector)), PORT)
                .decode(Timestamp(1), frame);
            assert_eq!(res, Err(SkipReason::UnsupportedLinkType));
            return;
        }
        // The IP layer alone.
        _ => return check(decode_ip(Timestamp(1), frame, PORT)),
    };
    check(Decoder::new(link, PORT).decode(Timestamp(1), frame));
});
