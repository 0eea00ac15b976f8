//! The running kernel's types the witness's CO-RE relocations need, cut out of its BTF
//! (`/sys/kernel/btf/vmlinux`) into a BTF of a few hundred types, which `witness.rs`
//! hands libbpf as `btf_custom_path`.
//!
//! Why: for each type the program relocates against (`sk_buff`, `sock`, `net_device`, …,
//! eight of them), libbpf walks every one of vmlinux's ~150,000 types looking for
//! candidates, about a millisecond each: with the witness on, that search was a third of
//! what starting portsniff cost more (benches/witness.sh's idle load). Here one pass
//! finds them all by name and copies each with the types its members need, embedded
//! structs and unions whole; a pointer member becomes a pointer to `void`, which is all
//! a relocation checks of it (`bpf_core_fields_are_compat`: any two pointers match), so
//! the pointed-to types, and theirs, stay out. Offsets, sizes, bitfields and enum values
//! are the kernel's own, so libbpf relocates exactly as against the whole BTF (a test
//! walks every field the program reads in both).
//!
//! libbpf still parses the whole BTF once for the tracepoints' attach points; this
//! replaces only the searches. The drop and reset reasons' names come from the same
//! BTF ([`enum_values`], for `names.rs`), without a second parse by libbpf. Anything unexpected (a BTF kind this does not know, a
//! malformed section) gives `None`, and libbpf searches the whole BTF as before.

use std::collections::HashMap;

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;

// BTF kinds (include/uapi/linux/btf.h).
const INT: u32 = 1;
const PTR: u32 = 2;
const ARRAY: u32 = 3;
const STRUCT: u32 = 4;
const UNION: u32 = 5;
const ENUM: u32 = 6;
const FWD: u32 = 7;
const TYPEDEF: u32 = 8;
const VOLATILE: u32 = 9;
const CONST: u32 = 10;
const RESTRICT: u32 = 11;
const FUNC: u32 = 12;
const FUNC_PROTO: u32 = 13;
const VAR: u32 = 14;
const DATASEC: u32 = 15;
const FLOAT: u32 = 16;
const DECL_TAG: u32 = 17;
const TYPE_TAG: u32 = 18;
const ENUM64: u32 = 19;

/// The named types the program's relocations start from (`bpf/vmlinux_min.h`).
pub const ROOTS: &[&str] = &[
    "sk_buff",
    "net_device",
    "net",
    "ns_common",
    "sock",
    "sock_common",
    "inet_sock",
    "request_sock",
    "in6_addr",
    "sk_rst_reason",
];

/// A parsed BTF blob: where each type starts, and its sections.
struct Parsed<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    /// Byte offset in `types` of type id `i + 1` (id 0 is `void`).
    starts: Vec<u32>,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn kind(info: u32) -> u32 {
    (info >> 24) & 0x1f
}

fn vlen(info: u32) -> usize {
    (info & 0xffff) as usize
}

/// Bytes after a type's 12-byte header, by kind; `None` for a kind this does not know.
fn extra(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        INT | VAR | DECL_TAG => 4,
        PTR | FWD | TYPEDEF | VOLATILE | CONST | RESTRICT | FUNC | FLOAT | TYPE_TAG => 0,
        ARRAY => 12,
        STRUCT | UNION | DATASEC | ENUM64 => 12 * vlen,
        ENUM | FUNC_PROTO => 8 * vlen,
        _ => return None,
    })
}

impl<'a> Parsed<'a> {
    fn new(btf: &'a [u8]) -> Option<Parsed<'a>> {
        if btf.len() < HEADER_LEN || u16::from_ne_bytes([btf[0], btf[1]]) != MAGIC {
            return None;
        }
        let hdr_len = u32_at(btf, 4)? as usize;
        let (type_off, type_len) = (u32_at(btf, 8)? as usize, u32_at(btf, 12)? as usize);
        let (str_off, str_len) = (u32_at(btf, 16)? as usize, u32_at(btf, 20)? as usize);
        let types = btf.get(hdr_len + type_off..hdr_len + type_off + type_len)?;
        let strings = btf.get(hdr_len + str_off..hdr_len + str_off + str_len)?;
        let mut starts = Vec::with_capacity(type_len / 16);
        let mut at = 0;
        while at < types.len() {
            let info = u32_at(types, at + 4)?;
            starts.push(u32::try_from(at).ok()?);
            at += 12 + extra(kind(info), vlen(info))?;
        }
        (at == types.len()).then_some(Parsed {
            types,
            strings,
            starts,
        })
    }

    fn start(&self, id: u32) -> Option<usize> {
        Some(*self.starts.get(id.checked_sub(1)? as usize)? as usize)
    }

    fn info(&self, id: u32) -> Option<u32> {
        u32_at(self.types, self.start(id)? + 4)
    }

    fn name(&self, off: u32) -> Option<&'a [u8]> {
        let s = self.strings.get(off as usize..)?;
        Some(&s[..s.iter().position(|&b| b == 0)?])
    }

    /// The first type of one of `kinds` named `name`.
    fn find(&self, kinds: &[u32], name: &str) -> Option<u32> {
        (1..=self.starts.len() as u32).find(|&id| {
            let at = self.starts[id as usize - 1] as usize;
            let (Some(name_off), Some(info)) = (u32_at(self.types, at), u32_at(self.types, at + 4))
            else {
                return false;
            };
            kinds.contains(&kind(info))
                && name_off != 0
                && self.name(name_off) == Some(name.as_bytes())
        })
    }

    /// The type ids a type refers to (members', elements', the type a typedef or
    /// modifier names); a pointer's target is left out (see the module doc).
    fn refs(&self, id: u32, out: &mut Vec<u32>) -> Option<()> {
        let at = self.start(id)?;
        let info = u32_at(self.types, at + 4)?;
        let t = self.types;
        match kind(info) {
            TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG => out.push(u32_at(t, at + 8)?),
            ARRAY => {
                out.push(u32_at(t, at + 12)?);
                out.push(u32_at(t, at + 16)?);
            }
            STRUCT | UNION => {
                for m in 0..vlen(info) {
                    out.push(u32_at(t, at + 12 + 12 * m + 4)?);
                }
            }
            FUNC_PROTO => {
                out.push(u32_at(t, at + 8)?);
                for p in 0..vlen(info) {
                    out.push(u32_at(t, at + 12 + 8 * p + 4)?);
                }
            }
            _ => {}
        }
        Some(())
    }
}

/// The minimal BTF for [`ROOTS`], from the whole BTF `vmlinux`; `None` when it cannot
/// be parsed (libbpf then searches the whole BTF itself).
pub fn minimal(vmlinux: &[u8]) -> Option<Vec<u8>> {
    let p = Parsed::new(vmlinux)?;
    // Every type of a root's name and kind (more than one is kept: libbpf would weigh
    // them all).
    let mut keep: Vec<u32> = Vec::new();
    for id in 1..=p.starts.len() as u32 {
        let at = p.start(id)?;
        let info = u32_at(p.types, at + 4)?;
        if !matches!(kind(info), STRUCT | UNION | ENUM | ENUM64) {
            continue;
        }
        let name_off = u32_at(p.types, at)?;
        if name_off == 0 {
            continue;
        }
        let name = p.name(name_off)?;
        if ROOTS.iter().any(|r| r.as_bytes() == name) {
            keep.push(id);
        }
    }
    // What they need, in the order found; ids renumbered from 1.
    let mut new_id: HashMap<u32, u32> = keep
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i as u32 + 1))
        .collect();
    let mut next = 0;
    let mut refs = Vec::new();
    while next < keep.len() {
        refs.clear();
        p.refs(keep[next], &mut refs)?;
        for &r in &refs {
            if r != 0 && !new_id.contains_key(&r) {
                keep.push(r);
                new_id.insert(r, keep.len() as u32);
            }
        }
        next += 1;
    }
    write(&p, &keep, &new_id)
}

/// Writes `keep` (renumbered by `new_id`) as a BTF blob with its own string section.
fn write(p: &Parsed<'_>, keep: &[u32], new_id: &HashMap<u32, u32>) -> Option<Vec<u8>> {
    let mut strings: Vec<u8> = vec![0];
    let mut offsets: HashMap<u32, u32> = HashMap::new();
    let mut name = |off: u32| -> Option<u32> {
        if off == 0 {
            return Some(0);
        }
        if let Some(&o) = offsets.get(&off) {
            return Some(o);
        }
        let o = u32::try_from(strings.len()).ok()?;
        strings.extend_from_slice(p.name(off)?);
        strings.push(0);
        offsets.insert(off, o);
        Some(o)
    };
    let id = |old: u32| -> Option<u32> {
        if old == 0 {
            Some(0)
        } else {
            new_id.get(&old).copied()
        }
    };
    let mut types: Vec<u8> = Vec::new();
    let put = |types: &mut Vec<u8>, v: u32| types.extend_from_slice(&v.to_ne_bytes());
    for &old in keep {
        let at = p.start(old)?;
        let t = p.types;
        let info = p.info(old)?;
        let (k, n) = (kind(info), vlen(info));
        put(&mut types, name(u32_at(t, at)?)?);
        put(&mut types, info);
        match k {
            // The third word is a type id.
            PTR => put(&mut types, 0),
            TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG | FUNC_PROTO => {
                put(&mut types, id(u32_at(t, at + 8)?)?)
            }
            // Otherwise a size (or, for a forward declaration, nothing).
            _ => put(&mut types, u32_at(t, at + 8)?),
        }
        match k {
            INT => put(&mut types, u32_at(t, at + 12)?),
            ARRAY => {
                put(&mut types, id(u32_at(t, at + 12)?)?);
                put(&mut types, id(u32_at(t, at + 16)?)?);
                put(&mut types, u32_at(t, at + 20)?);
            }
            STRUCT | UNION => {
                for m in 0..n {
                    let mat = at + 12 + 12 * m;
                    put(&mut types, name(u32_at(t, mat)?)?);
                    put(&mut types, id(u32_at(t, mat + 4)?)?);
                    put(&mut types, u32_at(t, mat + 8)?);
                }
            }
            ENUM => {
                for v in 0..n {
                    let vat = at + 12 + 8 * v;
                    put(&mut types, name(u32_at(t, vat)?)?);
                    put(&mut types, u32_at(t, vat + 4)?);
                }
            }
            ENUM64 => {
                for v in 0..n {
                    let vat = at + 12 + 12 * v;
                    put(&mut types, name(u32_at(t, vat)?)?);
                    put(&mut types, u32_at(t, vat + 4)?);
                    put(&mut types, u32_at(t, vat + 8)?);
                }
            }
            FUNC_PROTO => {
                for a in 0..n {
                    let aat = at + 12 + 8 * a;
                    put(&mut types, name(u32_at(t, aat)?)?);
                    put(&mut types, id(u32_at(t, aat + 4)?)?);
                }
            }
            FWD | FLOAT | PTR | TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG => {}
            // Never reached from a struct's members.
            _ => return None,
        }
    }
    let mut out = Vec::with_capacity(HEADER_LEN + types.len() + strings.len());
    out.extend_from_slice(&MAGIC.to_ne_bytes());
    out.push(1); // version
    out.push(0); // flags
    put(&mut out, HEADER_LEN as u32);
    put(&mut out, 0);
    put(&mut out, u32::try_from(types.len()).ok()?);
    put(&mut out, u32::try_from(types.len()).ok()?);
    put(&mut out, u32::try_from(strings.len()).ok()?);
    out.extend_from_slice(&types);
    out.extend_from_slice(&strings);
    Some(out)
}

/// The kernel's BTF, mapped where the kernel allows it (6.16 and later: no copy of its
/// megabytes, no pages to zero for one, which cost as much as the search it saves),
/// else read.
pub enum KernelBtf {
    Mapped {
        at: std::ptr::NonNull<std::ffi::c_void>,
        len: std::num::NonZeroUsize,
    },
    Read(Vec<u8>),
}

impl KernelBtf {
    const PATH: &str = "/sys/kernel/btf/vmlinux";

    pub fn open() -> Option<KernelBtf> {
        use nix::sys::mman::{mmap, MapFlags, ProtFlags};
        let file = std::fs::File::open(Self::PATH).ok()?;
        let size = usize::try_from(file.metadata().ok()?.len()).ok()?;
        // A file that says no size is read to its end instead.
        let Some(len) = std::num::NonZeroUsize::new(size) else {
            return std::fs::read(Self::PATH).ok().map(KernelBtf::Read);
        };
        // SAFETY: a private, read-only mapping of the whole file, which the kernel never
        // changes; it is only read through `bytes`, and unmapped once, on drop.
        let mapped = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ,
                MapFlags::MAP_PRIVATE,
                &file,
                0,
            )
        };
        match mapped {
            Ok(at) => Some(KernelBtf::Mapped { at, len }),
            Err(_) => std::fs::read(Self::PATH).ok().map(KernelBtf::Read),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            // SAFETY: the mapping is `len` readable bytes until `self` is dropped.
            KernelBtf::Mapped { at, len } => unsafe {
                std::slice::from_raw_parts(at.as_ptr().cast::<u8>(), len.get())
            },
            KernelBtf::Read(bytes) => bytes,
        }
    }
}

impl Drop for KernelBtf {
    fn drop(&mut self) {
        if let KernelBtf::Mapped { at, len } = self {
            // SAFETY: mapped by `open` with this length, and no slice of it outlives self.
            let _ = unsafe { nix::sys::mman::munmap(*at, len.get()) };
        }
    }
}

/// The values of the kernel's enum `name` (`skb_drop_reason`), as (value, name); `None`
/// when the BTF cannot be parsed or has no such enum.
pub fn enum_values<'a>(btf: &'a [u8], name: &str) -> Option<Vec<(u32, &'a str)>> {
    let p = Parsed::new(btf)?;
    let id = p.find(&[ENUM], name)?;
    let at = p.start(id)?;
    (0..vlen(p.info(id)?))
        .map(|v| {
            let vat = at + 12 + 8 * v;
            let n = std::str::from_utf8(p.name(u32_at(p.types, vat)?)?).ok()?;
            Some((u32_at(p.types, vat + 4)?, n))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member's bit offset and its type's kind and size, found by name as libbpf
    /// finds it: through anonymous structs and unions, and typedefs.
    fn field(p: &Parsed<'_>, root: &str, path: &[&str]) -> Option<(u32, u32, u32)> {
        let mut id = p.find(&[STRUCT, UNION], root)?;
        let mut bits = 0;
        for want in path {
            let (off, member) = member(p, id, want)?;
            bits += off;
            id = member;
        }
        // The field's own type, past typedefs and modifiers.
        loop {
            let info = p.info(id)?;
            match kind(info) {
                TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG => {
                    id = u32_at(p.types, p.start(id)? + 8)?
                }
                k => {
                    let size = if k == PTR {
                        8
                    } else {
                        u32_at(p.types, p.start(id)? + 8)?
                    };
                    return Some((bits, k, size));
                }
            }
        }
    }

    /// `want`'s bit offset in composite `id` and its type, looking into anonymous
    /// members.
    fn member(p: &Parsed<'_>, mut id: u32, want: &str) -> Option<(u32, u32)> {
        while matches!(kind(p.info(id)?), TYPEDEF | VOLATILE | CONST | RESTRICT) {
            id = u32_at(p.types, p.start(id)? + 8)?;
        }
        let at = p.start(id)?;
        let info = p.info(id)?;
        for m in 0..vlen(info) {
            let mat = at + 12 + 12 * m;
            let (name, ty, off) = (
                u32_at(p.types, mat)?,
                u32_at(p.types, mat + 4)?,
                u32_at(p.types, mat + 8)?,
            );
            // Bitfield members keep their offset in the low 24 bits.
            let off = if info >> 31 == 1 {
                off & 0xff_ffff
            } else {
                off
            };
            if name == 0 {
                if let Some((inner, t)) = member(p, ty, want) {
                    return Some((off + inner, t));
                }
            } else if p.name(name) == Some(want.as_bytes()) {
                return Some((off, ty));
            }
        }
        None
    }

    /// Every field `bpf/witness.bpf.c` reads, as root type and member path.
    const READ: &[(&str, &[&str])] = &[
        ("sk_buff", &["dev"]),
        ("sk_buff", &["sk"]),
        ("sk_buff", &["head"]),
        ("sk_buff", &["skb_iif"]),
        ("sk_buff", &["network_header"]),
        ("net_device", &["nd_net", "net"]),
        ("net", &["ns", "inum"]),
        ("sock", &["__sk_common", "skc_family"]),
        ("sock", &["sk_protocol"]),
        ("sock_common", &["skc_daddr"]),
        ("sock_common", &["skc_rcv_saddr"]),
        ("sock_common", &["skc_dport"]),
        ("sock_common", &["skc_num"]),
        ("sock_common", &["skc_family"]),
        ("sock_common", &["skc_state"]),
        ("sock_common", &["skc_net", "net"]),
        ("sock_common", &["skc_v6_daddr"]),
        ("sock_common", &["skc_v6_rcv_saddr"]),
        ("inet_sock", &["inet_sport"]),
        ("request_sock", &["__req_common", "skc_num"]),
    ];

    #[test]
    fn every_field_the_program_reads_is_where_the_kernels_whole_btf_has_it() {
        // Readable by everyone on a kernel with BTF, which the witness needs anyway.
        let whole = std::fs::read("/sys/kernel/btf/vmlinux")
            .expect("the running kernel's BTF (/sys/kernel/btf/vmlinux)");
        let small = minimal(&whole).expect("the kernel's BTF is parsed and cut");
        let (w, s) = (Parsed::new(&whole).unwrap(), Parsed::new(&small).unwrap());
        assert!(
            s.starts.len() * 50 < w.starts.len(),
            "{} of {} types kept",
            s.starts.len(),
            w.starts.len()
        );
        for (root, path) in READ {
            let expected = field(&w, root, path);
            assert!(expected.is_some(), "{root}.{path:?} is in the kernel's BTF");
            assert_eq!(field(&s, root, path), expected, "{root}.{path:?}");
        }
    }

    #[test]
    fn the_reset_reason_enum_keeps_its_values_and_a_bad_blob_is_refused() {
        let whole = std::fs::read("/sys/kernel/btf/vmlinux").unwrap();
        let small = minimal(&whole).unwrap();
        let values = |b: &[u8]| {
            let p = Parsed::new(b).unwrap();
            p.find(&[ENUM], "sk_rst_reason")
                .map(|i| vlen(p.info(i).unwrap()))
        };
        assert_eq!(values(&small), values(&whole));
        assert_eq!(minimal(&whole[..100]), None);
        assert_eq!(minimal(b"not a btf blob at all, not even close"), None);
    }

    #[test]
    fn the_reasons_enums_read_here_are_libbpfs() {
        use libbpf_rs::btf::{types::Enum, Btf};
        let btf = KernelBtf::open().expect("the kernel's BTF");
        let libbpf = Btf::from_vmlinux().expect("libbpf parses the kernel's BTF");
        for name in ["skb_drop_reason", "sk_rst_reason"] {
            let ours = enum_values(btf.bytes(), name);
            let theirs = libbpf.type_by_name::<Enum<'_>>(name).map(|e| {
                e.iter()
                    .map(|m| {
                        (
                            m.value as u32,
                            m.name.unwrap().to_str().unwrap().to_string(),
                        )
                    })
                    .collect::<Vec<_>>()
            });
            let ours = ours.map(|v| {
                v.into_iter()
                    .map(|(n, s)| (n, s.to_string()))
                    .collect::<Vec<_>>()
            });
            assert_eq!(ours, theirs, "enum {name}");
        }
        assert!(
            enum_values(btf.bytes(), "skb_drop_reason").is_some_and(|v| v
                .iter()
                .any(|&(_, n)| n == "SKB_DROP_REASON_NETFILTER_DROP"))
        );
        assert_eq!(enum_values(btf.bytes(), "no_such_enum_here"), None);
    }
}
