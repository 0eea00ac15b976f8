//! The BPF side: loading `bpf/witness.bpf.c` (compiled by build.rs), attaching it to the
//! tracepoints, and reading its ring buffer. Attached while portsniff still has its
//! privileges (before `-Z` or the sudo caller's identity); reading needs none. Every
//! attachment is an fd-based link, so the kernel detaches it when the process ends,
//! however it ends; dropping the [`Witness`] detaches it at once.

use super::event::{Clock, EventKind, KernelEvent};
use super::storm::{Tally, TallyKind};
use super::Unavailable;
use libbpf_rs::{
    Link, MapCore, MapFlags, MapHandle, Object, ObjectBuilder, RingBuffer, RingBufferBuilder,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;

/// The program, as clang built it for this build.
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/witness.bpf.o"));

/// `config` in the program's .rodata: netns inode (u32), port (u16), padding.
const CONFIG_SIZE: usize = 8;

/// The attached witness. Dropping it detaches every program.
pub struct Witness {
    // Links first: they are dropped (detached) before the object is closed.
    links: Vec<Link>,
    object: Object,
    clock: Clock,
}

impl Witness {
    /// Loads and attaches the witness for `port` in the current network namespace.
    pub fn attach(port: u16) -> Result<Witness, Unavailable> {
        route_libbpf_messages();
        if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            return Err(Unavailable::NoBtf);
        }
        super::permitted()?;
        let netns = std::fs::metadata("/proc/self/ns/net")
            .map(|m| m.ino() as u32)
            .unwrap_or(0);
        // libelf reads the object in place: give it its own (heap-aligned) copy.
        let bytes = OBJECT.to_vec();
        let mut builder = ObjectBuilder::default();
        // Kept open until the program is loaded: libbpf reads it by this path.
        let core_btf = core_types();
        if let Some(file) = &core_btf {
            builder
                .btf_custom_path(format!("/proc/self/fd/{}", file.as_raw_fd()))
                .map_err(|e| Unavailable::load("naming the kernel's types", e))?;
        }
        let mut open = builder
            .open_memory(&bytes)
            .map_err(|e| Unavailable::load("opening the program", e))?;
        let mut configured = false;
        for mut map in open.maps_mut() {
            if !map.name().to_string_lossy().ends_with(".rodata") {
                continue;
            }
            if let Some(data) = map.initial_value_mut() {
                if data.len() >= CONFIG_SIZE {
                    data[0..4].copy_from_slice(&netns.to_ne_bytes());
                    data[4..6].copy_from_slice(&port.to_ne_bytes());
                    configured = true;
                }
            }
        }
        if !configured {
            return Err(Unavailable::Load {
                step: "configuring the program".into(),
                message: "the program has no .rodata config (a build mismatch)".into(),
            });
        }
        let object = open.load().map_err(|e| {
            let lockdown = std::fs::read_to_string("/sys/kernel/security/lockdown");
            if lockdown.is_ok_and(|l| super::locked_down(&l)) {
                Unavailable::LockedDown
            } else {
                Unavailable::load("loading the program", e)
            }
        })?;
        drop(core_btf);
        let mut links = Vec::new();
        for prog in object.progs_mut() {
            let name = prog.name().to_string_lossy().into_owned();
            let link = prog
                .attach()
                .map_err(|e| Unavailable::load(format!("attaching {name}"), e))?;
            links.push(link);
        }
        tracing::info!(
            port,
            netns,
            programs = links.len(),
            "kernel witness attached"
        );
        Ok(Witness {
            links,
            object,
            clock: Clock::now(),
        })
    }

    /// Records the ring buffer had no room for, summed over CPUs.
    pub fn lost(&self) -> u64 {
        let Some(map) = self
            .object
            .maps()
            .find(|m| m.name().to_string_lossy() == "lost")
        else {
            return 0;
        };
        match map.lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY) {
            Ok(Some(per_cpu)) => per_cpu
                .iter()
                .filter_map(|v| v.get(..8).and_then(|b| b.try_into().ok()))
                .map(u64::from_ne_bytes)
                .sum(),
            _ => 0,
        }
    }

    /// A reader of the ring buffer. It owns what it reads through (its own handles on
    /// the maps), so the flow stage and the kernel thread can share it (behind a lock)
    /// while the thread keeps the programs attached.
    pub fn reader(&self) -> Result<Reader, Unavailable> {
        let pending = Rc::new(RefCell::new(Vec::new()));
        let sink = Rc::clone(&pending);
        let clock = self.clock;
        let map = self
            .object
            .maps()
            .find(|m| m.name().to_string_lossy() == "events")
            .ok_or_else(|| Unavailable::Load {
                step: "ring buffer".into(),
                message: "no events map".into(),
            })?;
        let handle = |name: &str| {
            self.object
                .maps()
                .find(|m| m.name().to_string_lossy() == name)
                .and_then(|m| MapHandle::try_from(&m).ok())
        };
        let places = Rc::new(RefCell::new(Places::new(handle("places"))));
        let tallies = handle("tallies");
        let namer = Rc::clone(&places);
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&map, move |raw: &[u8]| {
                if let Some(mut e) = KernelEvent::parse(raw, &clock) {
                    if let EventKind::Drop {
                        location, place, ..
                    } = &mut e.kind
                    {
                        *place = namer.borrow_mut().name(*location);
                    }
                    sink.borrow_mut().push(e);
                }
                0
            })
            .map_err(|e| Unavailable::load("ring buffer", e))?;
        let ring = builder
            .build()
            .map_err(|e| Unavailable::load("ring buffer", e))?;
        // The ring's pages are mapped from the map and hold it: a handle of our own keeps
        // the map (and so the mapping's meaning) whatever happens to the object first.
        let events = MapHandle::try_from(&map).map_err(|e| Unavailable::load("ring buffer", e))?;
        Ok(Reader {
            ring,
            pending,
            places,
            tallies,
            batch: Batch::default(),
            clock,
            _events: events,
        })
    }

    /// How many programs are attached.
    pub fn attached(&self) -> usize {
        self.links.len()
    }
}

/// Reads the witness's ring buffer. One reader at a time: it is shared behind a lock.
pub struct Reader {
    ring: RingBuffer<'static>,
    pending: Rc<RefCell<Vec<KernelEvent>>>,
    /// Shared with the ring's callback: a storm's counts name their places too.
    places: Rc<RefCell<Places>>,
    /// The program's counts of a storm's records, by kind.
    tallies: Option<MapHandle>,
    /// Where a batched read of `tallies` lands, kept for the next.
    batch: Batch,
    clock: Clock,
    _events: MapHandle,
}

// SAFETY: the `Rc` handles on `pending` and `places` (these and the ring callback's
// clones) all live inside this `Reader` and are never cloned or handed out, so moving
// the reader to another thread moves every handle with it: no two threads ever touch a
// count. The ring buffer is `Send` (libbpf-rs), and so are the map handles.
unsafe impl Send for Reader {}

impl Reader {
    /// Moves every record the kernel has committed into `out`, without waiting (no
    /// system call: the ring's positions and records are read from its mapped pages).
    pub fn consume(&mut self, out: &mut Vec<KernelEvent>) {
        if let Err(e) = self.ring.consume() {
            tracing::debug!(error = %e, "kernel witness ring buffer consume");
        }
        out.append(&mut self.pending.borrow_mut());
    }

    /// What the program has counted instead of sent, by kind, over the run so far: read
    /// when a storm is under way (at most every 100 ms), not per record, in one
    /// `BPF_MAP_LOOKUP_BATCH` call for the whole map where the kernel has it (a lookup
    /// per kind was two system calls a kind: strace counted 5,000 in a 10 s storm).
    pub fn tallies(&mut self, out: &mut Vec<Tally>) {
        out.clear();
        let Some(map) = &self.tallies else { return };
        let (clock, places) = (&self.clock, &self.places);
        let tally = |key: &[u8], per_cpu: &mut dyn Iterator<Item = &[u8]>| {
            let mut t = Tally::parse(key, per_cpu, clock)?;
            if let TallyKind::Drop {
                location, place, ..
            } = &mut t.kind
            {
                *place = places.borrow_mut().name(*location);
            }
            Some(t)
        };
        if !self
            .batch
            .read(map, |key, mut per_cpu| out.extend(tally(key, &mut per_cpu)))
        {
            out.clear();
            for key in map.keys() {
                if let Ok(Some(per_cpu)) = map.lookup_percpu(&key, MapFlags::ANY) {
                    out.extend(tally(&key, &mut per_cpu.iter().map(Vec::as_slice)));
                }
            }
        }
        // The map's order is its hash's: the largest first, for the summary.
        out.sort_by(|a, b| b.count.cmp(&a.count).then(a.kind.cmp(&b.kind)));
    }

    /// An fd that is readable while records wait (an epoll fd over the ring buffer), to
    /// wait on beside others; valid as long as the reader.
    pub fn ready_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: libbpf owns this epoll fd for the life of the ring buffer, which this
        // borrow cannot outlive.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.ring.epoll_fd()) }
    }
}

/// Buffers for reading a per-CPU hash map in batches.
#[derive(Default)]
struct Batch {
    keys: Vec<u8>,
    values: Vec<u8>,
    /// Set once a batch was refused (a kernel before 5.6): a lookup per key from then on.
    refused: bool,
}

impl Batch {
    /// Entries asked for per call: the map holds at most 4096, a storm a handful.
    const COUNT: u32 = 256;

    /// Calls `each` with every entry's key and its values, one per possible CPU; false
    /// (having called it for none, or for some: the caller starts over) when the kernel
    /// refuses or fails a batch.
    fn read(
        &mut self,
        map: &MapHandle,
        mut each: impl FnMut(&[u8], std::slice::Chunks<'_, u8>),
    ) -> bool {
        use std::os::fd::{AsFd, AsRawFd};
        if self.refused {
            return false;
        }
        let Ok(cpus) = libbpf_rs::num_possible_cpus() else {
            return false;
        };
        let key_size = map.key_size() as usize;
        // Each CPU's value, 8-byte aligned (as for a lookup of one per-CPU element).
        let stride = (map.value_size() as usize).div_ceil(8) * 8;
        let per_entry = stride * cpus;
        self.keys.resize(Self::COUNT as usize * key_size, 0);
        self.values.resize(Self::COUNT as usize * per_entry, 0);
        // A hash map's batch position: an opaque bucket number, at least 4 bytes.
        let mut position = [0u8; 8];
        let mut next = [0u8; 8];
        let opts = libbpf_rs::libbpf_sys::bpf_map_batch_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_batch_opts>() as _,
            ..Default::default()
        };
        let fd = map.as_fd().as_raw_fd();
        let mut first = true;
        loop {
            let mut count = Self::COUNT;
            // SAFETY: `keys` and `values` hold COUNT entries of this map's key and
            // per-CPU value sizes, the positions `key_size.max(4)` (≤ 8) bytes each, and
            // the kernel writes at most `count` entries.
            let ret = unsafe {
                libbpf_rs::libbpf_sys::bpf_map_lookup_batch(
                    fd,
                    if first {
                        std::ptr::null_mut()
                    } else {
                        position.as_mut_ptr().cast()
                    },
                    next.as_mut_ptr().cast(),
                    self.keys.as_mut_ptr().cast(),
                    self.values.as_mut_ptr().cast(),
                    &mut count,
                    &opts,
                )
            };
            let done = ret == -libc::ENOENT;
            if ret < 0 && !done {
                // EINVAL/ENOTSUPP: no batches on this kernel; anything else: start over.
                self.refused = first;
                return false;
            }
            for i in 0..count as usize {
                let key = &self.keys[i * key_size..(i + 1) * key_size];
                let values = &self.values[i * per_entry..(i + 1) * per_entry];
                each(key, values.chunks(stride));
            }
            if done || count == 0 {
                return true;
            }
            position = next;
            first = false;
        }
    }
}

/// The names of the kernel functions drops happened in, from the program's `places`
/// map (the kernel names each with `%ps` the first time a drop happens there), cached:
/// one map lookup per place per run.
struct Places {
    map: Option<MapHandle>,
    /// Leaked on purpose: a kernel drops packets at a few dozen places (the map holds at
    /// most 1024), each named once for the run, and a `&'static str` keeps
    /// [`KernelEvent`] `Copy`.
    known: HashMap<u64, Option<&'static str>>,
    /// The place named last: a stream of drops comes from one or two places, so most
    /// records are answered here, without hashing.
    last: Option<(u64, Option<&'static str>)>,
}

impl Places {
    fn new(map: Option<MapHandle>) -> Places {
        Places {
            map,
            known: HashMap::new(),
            last: None,
        }
    }

    fn name(&mut self, location: u64) -> Option<&'static str> {
        match self.last {
            Some((at, name)) if at == location => return name,
            _ => {}
        }
        let name = self.lookup(location);
        self.last = Some((location, name));
        name
    }

    fn lookup(&mut self, location: u64) -> Option<&'static str> {
        if let Some(&known) = self.known.get(&location) {
            return known;
        }
        let bytes = self
            .map
            .as_ref()?
            .lookup(&location.to_ne_bytes(), MapFlags::ANY)
            .ok()
            .flatten();
        let name = bytes.and_then(|b| {
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            let s = std::str::from_utf8(&b[..end]).ok()?;
            // `%ps` of an address in no symbol prints the address itself (`0x…`).
            if s.is_empty() || s.starts_with("0x") {
                return None;
            }
            Some(&*Box::leak(s.to_string().into_boxed_str()))
        });
        // The program names a place before it sends the record: one the map does not
        // hold (it was full) stays unnamed.
        self.known.insert(location, name);
        name
    }
}

/// libbpf's own messages (verifier logs, BTF notes) go to `tracing` (`-v`), never raw to
/// stderr.
/// The kernel's types the program's relocations need ([`super::core_btf`]), in an
/// anonymous memory file for libbpf to read; `None` (libbpf then searches the kernel's
/// whole BTF itself) when they cannot be cut out or the file cannot be made.
fn core_types() -> Option<std::fs::File> {
    use std::io::Write;
    let whole = super::core_btf::KernelBtf::open()?;
    let Some(small) = super::core_btf::minimal(whole.bytes()) else {
        tracing::debug!(
            "kernel witness: the kernel's BTF could not be cut down; libbpf reads it whole"
        );
        return None;
    };
    let fd = nix::sys::memfd::memfd_create(
        c"portsniff-core-btf",
        nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
    )
    .ok()?;
    let mut file = std::fs::File::from(fd);
    file.write_all(&small).ok()?;
    tracing::debug!(
        bytes = small.len(),
        "kernel witness: the kernel's types for CO-RE cut out"
    );
    Some(file)
}

fn route_libbpf_messages() {
    libbpf_rs::set_print(Some((
        libbpf_rs::PrintLevel::Debug,
        |level, message: String| match level {
            libbpf_rs::PrintLevel::Warn => {
                tracing::debug!(target: "libbpf", "{}", message.trim_end())
            }
            _ => tracing::trace!(target: "libbpf", "{}", message.trim_end()),
        },
    )));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// libbpf's messages while a test loads the program.
    static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

    /// The instructions libbpf patched while relocating the program, as it says them
    /// (`prog 'witness_drop': relo #1: patched insn #16 (LDX/ST/STX) off 16 -> 192`),
    /// loading it against `custom` BTF (a path) or the kernel's whole BTF.
    fn patched(custom: Option<&str>) -> Vec<String> {
        LOG.lock().unwrap().clear();
        let bytes = OBJECT.to_vec();
        let mut builder = ObjectBuilder::default();
        if let Some(path) = custom {
            builder.btf_custom_path(path).unwrap();
        }
        let mut open = builder.open_memory(&bytes).expect("the program opens");
        for mut map in open.maps_mut() {
            if map.name().to_string_lossy().ends_with(".rodata") {
                if let Some(data) = map.initial_value_mut() {
                    data[4..6].copy_from_slice(&61999u16.to_ne_bytes());
                }
            }
        }
        let object = open.load().expect("the program loads");
        drop(object);
        let log = LOG.lock().unwrap();
        log.iter()
            .filter(|m| m.contains("patched insn") || m.contains("poison"))
            .cloned()
            .collect()
    }

    /// Whether this process may create and load BPF objects; a skip is a failure in CI.
    fn may_use_bpf() -> bool {
        if super::super::permitted().is_ok() {
            return true;
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "under CI this test must run as root: it makes BPF objects"
        );
        eprintln!("skipping: BPF objects need CAP_BPF and CAP_PERFMON");
        false
    }

    #[test]
    fn a_batched_read_of_a_per_cpu_map_finds_every_entry_and_cpu_as_lookups_do() {
        if !may_use_bpf() {
            return;
        }
        use libbpf_rs::MapType;
        let opts = libbpf_rs::libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        };
        // The tallies' shape (16-byte keys, 24-byte values), with more entries than one
        // batch asks for.
        let map = MapHandle::create(MapType::PercpuHash, Some("pstest"), 16, 24, 1024, &opts)
            .expect("a per-CPU hash map");
        let cpus = libbpf_rs::num_possible_cpus().unwrap();
        let entries = Batch::COUNT as usize + 44;
        for i in 0..entries as u64 {
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&i.to_ne_bytes());
            let values: Vec<Vec<u8>> = (0..cpus as u64)
                .map(|c| {
                    let mut v = vec![0u8; 24];
                    v[..8].copy_from_slice(&(i * 100 + c).to_ne_bytes());
                    v
                })
                .collect();
            map.update_percpu(&key, &values, MapFlags::ANY).unwrap();
        }
        let mut batched = Vec::new();
        let mut batch = Batch::default();
        assert!(batch.read(&map, |key, per_cpu| {
            batched.push((
                key.to_vec(),
                per_cpu.map(<[u8]>::to_vec).collect::<Vec<_>>(),
            ))
        }));
        let mut one_by_one: Vec<(Vec<u8>, Vec<Vec<u8>>)> = map
            .keys()
            .map(|k| {
                let v = map.lookup_percpu(&k, MapFlags::ANY).unwrap().unwrap();
                (k, v)
            })
            .collect();
        batched.sort();
        one_by_one.sort();
        assert_eq!(batched.len(), entries);
        assert_eq!(batched, one_by_one);
    }

    #[test]
    fn relocated_against_the_cut_types_the_program_is_patched_as_against_the_whole_btf() {
        if !may_use_bpf() {
            return;
        }
        libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Debug, |_, m: String| {
            LOG.lock().unwrap().push(m.trim_end().to_string())
        })));
        let file = core_types().expect("the kernel's types are cut out");
        let cut = patched(Some(&format!("/proc/self/fd/{}", file.as_raw_fd())));
        let whole = patched(None);
        libbpf_rs::set_print(None);
        assert!(
            cut.len() > 20,
            "libbpf said what it patched (debug messages): {cut:?}"
        );
        assert_eq!(cut, whole);
    }
}
