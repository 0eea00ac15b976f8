use super::*;

/// A classic pcap file: `magic` decides byte order and time unit.
fn legacy(magic: u32, big_endian: bool, records: &[(u32, u32, &[u8])]) -> Vec<u8> {
    let w32 = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let w16 = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut f = Vec::new();
    f.extend_from_slice(&w32(magic));
    f.extend_from_slice(&w16(2));
    f.extend_from_slice(&w16(4));
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&w32(65535));
    f.extend_from_slice(&w32(1));
    for (sec, frac, data) in records {
        for v in [*sec, *frac, data.len() as u32, data.len() as u32 + 10] {
            f.extend_from_slice(&w32(v));
        }
        f.extend_from_slice(data);
    }
    f
}

/// A packet as read: seconds, microseconds, length on the wire, bytes.
type Got = (i64, i64, u32, Vec<u8>);

/// Reads everything, and the error if any.
fn read_all(bytes: Vec<u8>) -> (Vec<Got>, Option<String>) {
    let mut file = FileReader::open(io::Cursor::new(bytes), "test").expect("open");
    let mut got = Vec::new();
    let result = file.read(&mut |p| {
        if let Some(p) = p {
            got.push((p.ts_sec, p.ts_usec, p.len, p.data.to_vec()));
        }
        ControlFlow::Continue(())
    });
    (got, result.err().map(|ReadError::Damaged(d)| d.to_string()))
}

#[test]
fn classic_pcap_in_either_byte_order_and_time_unit() {
    let records: &[(u32, u32, &[u8])] = &[(10, 500, b"abc"), (11, 999_999, b"de")];
    for (magic, be, usec) in [
        (0xa1b2_c3d4, false, [500, 999_999]),
        (0xa1b2_c3d4, true, [500, 999_999]),
        // Nanosecond files: tcpdump --time-stamp-precision=nano.
        (0xa1b2_3c4d, false, [0, 999]),
    ] {
        let (got, err) = read_all(legacy(magic, be, records));
        assert_eq!(err, None);
        assert_eq!(got.len(), 2, "{magic:x} {be}");
        assert_eq!((got[0].0, got[0].1, got[0].2), (10, usec[0], 13));
        assert_eq!(got[0].3, b"abc");
        assert_eq!((got[1].0, got[1].1), (11, usec[1]));
    }
}

#[test]
fn a_record_longer_than_any_snapshot_length_is_damage_after_the_good_ones() {
    let mut bytes = legacy(0xa1b2_c3d4, false, &[(1, 0, b"ok")]);
    for v in [2u32, 0, 300_000, 300_000] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes.extend_from_slice(&[0; 64]);
    let (got, err) = read_all(bytes);
    assert_eq!(got.len(), 1);
    assert!(err.is_some_and(|e| e.contains("300000")));
}

/// A pipe hands over a few bytes at a time (`tcpdump -w - | portsniff -r -`).
struct Trickle(io::Cursor<Vec<u8>>);

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(7);
        self.0.read(&mut buf[..n])
    }
}

#[test]
fn records_split_across_short_reads_are_put_back_together() {
    let records: Vec<(u32, u32, &[u8])> = (0..50).map(|i| (i, 0, &b"0123456789"[..])).collect();
    let bytes = legacy(0xa1b2_c3d4, false, &records);
    let mut file = FileReader::open(Trickle(io::Cursor::new(bytes)), "pipe").expect("open");
    let mut n = 0;
    let result = file.read(&mut |p| {
        if let Some(p) = p {
            assert_eq!(p.data, b"0123456789");
            n += 1;
        }
        ControlFlow::Continue(())
    });
    assert!(result.is_ok());
    assert_eq!(n, 50);
}

fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let len = 12 + body.len().next_multiple_of(4) as u32;
    let mut b = kind.to_le_bytes().to_vec();
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(body);
    b.resize(len as usize - 4, 0);
    b.extend_from_slice(&len.to_le_bytes());
    b
}

fn shb() -> Vec<u8> {
    let mut body = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&u64::MAX.to_le_bytes());
    block(0x0a0d_0d0a, &body)
}

/// An interface of `linktype`, with `if_tsresol` if given.
fn idb(linktype: u16, tsresol: Option<u8>) -> Vec<u8> {
    let mut body = linktype.to_le_bytes().to_vec();
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&65535u32.to_le_bytes());
    if let Some(r) = tsresol {
        body.extend_from_slice(&9u16.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&[r, 0, 0, 0]);
        body.extend_from_slice(&[0; 4]);
    }
    block(1, &body)
}

fn epb(iface: u32, ticks: u64, data: &[u8]) -> Vec<u8> {
    let mut body = iface.to_le_bytes().to_vec();
    body.extend_from_slice(&((ticks >> 32) as u32).to_le_bytes());
    body.extend_from_slice(&(ticks as u32).to_le_bytes());
    body.extend_from_slice(&(data.len() as u32).to_le_bytes());
    body.extend_from_slice(&(data.len() as u32).to_le_bytes());
    body.extend_from_slice(data);
    block(6, &body)
}

#[test]
fn pcapng_times_follow_each_interfaces_resolution() {
    let mut f = shb();
    f.extend(idb(1, None));
    f.extend(idb(1, Some(9)));
    f.extend(block(0x0bad, b"unknown block")); // skipped, as libpcap does
    f.extend(epb(0, 1_700_000_000_000_016, b"micro"));
    f.extend(epb(1, 1_700_000_000_000_016_999, b"nano"));
    let file = FileReader::open(io::Cursor::new(f.clone()), "ng").expect("open");
    assert_eq!(file.linktype(), 1);
    let (got, err) = read_all(f);
    assert_eq!(err, None);
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].0, got[0].1), (1_700_000_000, 16));
    assert_eq!(got[0].3, b"micro");
    assert_eq!((got[1].0, got[1].1), (1_700_000_000, 16));
}

#[test]
fn pcapng_interfaces_of_different_link_types_are_refused_clearly() {
    let mut f = shb();
    f.extend(idb(1, None));
    f.extend(epb(0, 1, b"x"));
    f.extend(idb(113, None));
    let (got, err) = read_all(f);
    assert_eq!(got.len(), 1);
    assert!(err.is_some_and(|e| e.contains("link type 113")));
}

#[test]
fn not_a_capture_and_empty_files_say_so() {
    let err = |bytes: Vec<u8>| match FileReader::open(io::Cursor::new(bytes), "f") {
        Err(CaptureError::NotACapture { damage, .. }) => damage.to_string(),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("opened"),
    };
    assert!(err(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()).contains("unknown file format"));
    assert!(err(Vec::new()).contains("only got 0"));
}
