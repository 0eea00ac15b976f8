#!/usr/bin/env bash
# Seeds the fuzz corpora from the bundled captures in fixtures/ (real loopback traffic):
#   corpus/decode/  one file per packet: a link-type selector byte, then the frame
#   corpus/flow/    one file per capture: its TCP segments and ICMP errors in the flow
#                   target's compact record format (see fuzz_targets/flow.rs)
#   corpus/replay/  each capture file whole, and each classic pcap's records after a
#                   selector byte (link type + options; see fuzz_targets/replay.rs)
# Files are named by the SHA-1 of their contents, as libFuzzer names what it adds, so
# re-running adds nothing twice. Needs only python3. Run from anywhere.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec python3 - "$here/../fixtures" "$here/corpus" <<'PY'
import hashlib, os, struct, sys, glob

fixtures, corpus = sys.argv[1], sys.argv[2]
PORT = 61999
# decode target: selector byte % 8 -> link type (fuzz_targets/decode.rs).
DECODE_SELECTOR = {1: 0, 0: 1, 108: 2, 113: 3, 276: 4, 101: 5, 12: 5, 14: 5, 228: 5, 229: 5}
# replay target: selector bits 0-2 -> LINKS[i] (fuzz_targets/replay.rs).
REPLAY_LINKS = [1, 0, 108, 113, 276, 101, 228, 147]
# replay options: JSON (0x08), --ladder (0x20), -w /dev/null (0x40).
REPLAY_OPTIONS = 0x08 | 0x20 | 0x40


def save(target, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, hashlib.sha1(data).hexdigest())
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)
        return 1
    return 0


def read_capture(path):
    """(linktype, [(ts_us, frame)], classic_body or None) of a pcap or pcapng file."""
    raw = open(path, "rb").read()
    magic = raw[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = "<" if magic[0] in (0xD4, 0x4D) else ">"
        nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        link = struct.unpack(e + "I", raw[20:24])[0] & 0xFFFF
        out, off = [], 24
        while off + 16 <= len(raw):
            sec, frac, caplen, _ = struct.unpack(e + "IIII", raw[off:off + 16])
            data = raw[off + 16:off + 16 + caplen]
            if len(data) < caplen:
                break  # a capture cut short (fixtures/truncated.pcap)
            out.append((sec * 1_000_000 + (frac // 1000 if nano else frac), data))
            off += 16 + caplen
        body = raw[24:] if e == "<" and not nano else None
        return link, out, body
    if magic == b"\x0a\x0d\x0d\x0a":
        e = "<" if raw[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        links, out, off, link = [], [], 0, None
        while off + 12 <= len(raw):
            btype, blen = struct.unpack(e + "II", raw[off:off + 8])
            if blen < 12:
                break
            body = raw[off + 8:off + blen - 4]
            if btype == 1:  # interface description
                links.append(struct.unpack(e + "H", body[:2])[0])
            elif btype == 6:  # enhanced packet (assumes the default µs resolution)
                ifid, hi, lo, caplen, _ = struct.unpack(e + "IIIII", body[:20])
                link = links[ifid]
                out.append(((hi << 32) | lo, body[20:20 + caplen]))
            off += blen
        return link, out, None
    raise ValueError(f"{path}: not a capture")


def ip_of(link, f):
    """The IP packet inside a frame, or None."""
    if link == 1:
        at = 12
        et = f[at:at + 2]
        while et in (b"\x81\x00", b"\x88\xa8"):
            at += 4
            et = f[at:at + 2]
        return f[at + 2:] if et in (b"\x08\x00", b"\x86\xdd") else None
    if link in (0, 108):
        return f[4:]
    if link == 113:
        return f[16:] if f[14:16] in (b"\x08\x00", b"\x86\xdd") else None
    if link == 276:
        return f[20:] if f[0:2] in (b"\x08\x00", b"\x86\xdd") else None
    if link in (12, 14, 101, 228, 229):
        return f
    return None


def parse_ip(p):
    """(v6, src, dst, proto, l4) or None."""
    if len(p) < 20:
        return None
    if p[0] >> 4 == 4:
        ihl = (p[0] & 15) * 4
        return False, p[12:16], p[16:20], p[9], p[ihl:]
    if p[0] >> 4 == 6 and len(p) >= 40:
        return True, p[8:24], p[24:40], p[6], p[40:]
    return None


def flow_records(link, packets):
    """The flow target's input for one capture (see fuzz_targets/flow.rs)."""
    out = bytearray([0x07 | 0x40])  # cap 8, pending notices on, 3 s SYN timeout
    conns, clients = {}, [0, 1, 3]
    prev_ts = None
    for ts, frame in packets:
        ip = ip_of(link, frame)
        parsed = ip and parse_ip(ip)
        if not parsed:
            continue
        v6, src, dst, proto, l4 = parsed
        icmp = None
        if proto in (1, 58) and len(l4) >= 8 and l4[0] == (1 if v6 else 3):
            q = parse_ip(l4[8:])
            if not q or q[3] != 6 or len(q[4]) < 8:
                continue
            icmp = l4[1]
            v6, src, dst, _, l4 = q
        elif proto != 6 or len(l4) < 20:
            continue
        sport, dport, seq, ack = struct.unpack(">HHII", l4[:12])
        if PORT not in (sport, dport):
            continue
        flags = l4[13] if icmp is None else 0
        window = struct.unpack(">H", l4[14:16])[0] if icmp is None else 0
        ip_len = struct.unpack(">H", ip[2:4])[0] - (ip[0] & 15) * 4 if not v6 else struct.unpack(">H", ip[4:6])[0]
        payload = max(0, ip_len - (l4[12] >> 4) * 4) if icmp is None else 0
        from_server = sport == PORT and dport != PORT or (sport == dport == PORT and flags & 0x12 == 0x12)
        client = (dst, dport) if from_server else (src, sport)
        key = (client, (src, sport) if from_server else (dst, dport))
        c = conns.setdefault(key, {"c": 2 if sport == dport else clients[len(conns) % 3], "cisn": None, "sisn": None})
        if from_server:
            if c["sisn"] is None:
                c["sisn"] = seq
            if c["cisn"] is None and flags & 0x10:
                c["cisn"] = (ack - 1) & 0xFFFFFFFF
        elif c["cisn"] is None:
            c["cisn"] = seq
        cmap = lambda x: (x - (c["cisn"] or 0) + 0x7FF0) & 0xFFFF
        smap = lambda x: (x - (c["sisn"] or 0) + 0x1000) & 0xFFFF
        if from_server:
            seq16, ack16 = smap(seq), cmap(ack)
        else:
            seq16, ack16 = cmap(seq), smap(ack)
        dt = 0 if prev_ts is None else ts - prev_ts
        prev_ts = ts
        if dt < 0:
            step = 0xC0 | min(63, -dt // 50_000)
        elif dt < 640_000:
            step = round(dt / 10_000)
        elif dt < 64_000_000:
            step = 0x40 | round(dt / 1_000_000)
        else:
            step = 0x80 | min(63, round(dt / 10_000_000))
        kind = 12 if icmp is not None else 0
        b0 = (kind << 4) | (8 if from_server else 0) | ((1 if v6 else 0) << 2) | c["c"]
        b1 = icmp if icmp is not None else flags
        out += bytes([b0, b1, step]) + struct.pack(">HHH", seq16, ack16, min(payload, 0xFFFE))
        out.append(min(255, window // 257) if window else 0)
    return bytes(out)


added = {"decode": 0, "flow": 0, "replay": 0}
paths = sorted(glob.glob(os.path.join(fixtures, "*.pcap")) + glob.glob(os.path.join(fixtures, "*.pcapng")))
for path in paths:
    link, packets, body = read_capture(path)
    for _, frame in packets:
        added["decode"] += save("decode", bytes([DECODE_SELECTOR.get(link, 6)]) + frame)
    added["flow"] += save("flow", flow_records(link, packets))
    added["replay"] += save("replay", open(path, "rb").read())
    if body is not None and link in REPLAY_LINKS:
        added["replay"] += save("replay", bytes([REPLAY_LINKS.index(link) | REPLAY_OPTIONS]) + body)
print(f"seeded from {len(paths)} captures: " + ", ".join(f"{n} new in corpus/{t}/" for t, n in added.items()))
PY
