//! Sockets on the watched port, read from /proc and sock_diag: who listens (in this
//! network namespace and in the others), with what queue, owned by which process; sockets
//! on the port in TIME_WAIT, CLOSE_WAIT and SYN_RECV; the process behind a client socket.
//!
//! Plain functions that read when called: they start no thread and keep no clock (the
//! pipeline decides when to look). Everything is best effort: a fact that cannot be read
//! (no /proc, no permission to another user's /proc/PID/fd) is simply absent.

use super::counters::{read_counters, Counters};
use crate::decode::{Endpoint, Timestamp};
use procfs::net::{TcpNetEntry, TcpState};
use procfs::process::{FDTarget, Process};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

/// A process that owns a socket a finding talks about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    pub pid: i32,
    pub name: String,
    pub cmdline: String,
    pub user: String,
}

/// A listening socket on the watched port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub local: Endpoint,
    /// Connections completed and waiting for `accept()` (ss -lnt Recv-Q).
    pub accept_queue: u32,
    /// The listen() backlog (ss -lnt Send-Q), from sock_diag; `None` if unavailable
    /// (other namespaces, no netlink).
    pub backlog: Option<u32>,
    pub inode: u64,
    pub processes: Vec<ProcessInfo>,
    /// `None`: our own network namespace; otherwise `net:[INODE]`.
    pub namespace: Option<String>,
}

impl Listener {
    /// Linux drops new SYNs and handshake ACKs once the queue is *over* the backlog
    /// (`sk_acceptq_is_full`: ack_backlog > max_ack_backlog).
    pub fn queue_full(&self) -> bool {
        self.backlog.is_some_and(|b| self.accept_queue > b)
    }

    pub fn is_wildcard(&self) -> bool {
        self.local.addr.is_unspecified()
    }

    /// Whether a SYN to `dst` would reach this listener by address and family. A `[::]`
    /// listener also takes IPv4 unless it set IPV6_V6ONLY, which /proc does not show: if
    /// IPv4 SYNs to it were refused, it must be v6-only.
    pub fn accepts(&self, dst: &Endpoint) -> bool {
        self.local.port == dst.port
            && self.local.addr.is_ipv4() == dst.addr.is_ipv4()
            && (self.is_wildcard() || self.local.addr == dst.addr)
    }
}

/// A non-listening socket on the port (either end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSocket {
    pub local: Endpoint,
    pub remote: Endpoint,
    pub state: SocketState,
    /// Bytes received and not yet read by the application (`ss`'s Recv-Q).
    pub recv_queue: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketState {
    TimeWait,
    CloseWait,
    SynRecv,
    SynSent,
    Established,
    FinWait,
    LastAck,
    Closing,
    Other,
}

impl SocketState {
    /// The name the summary shows.
    pub fn as_str(self) -> &'static str {
        match self {
            SocketState::TimeWait => "time_wait",
            SocketState::CloseWait => "close_wait",
            SocketState::SynRecv => "syn_recv",
            SocketState::SynSent => "syn_sent",
            SocketState::Established => "established",
            SocketState::FinWait => "fin_wait",
            SocketState::LastAck => "last_ack",
            SocketState::Closing => "closing",
            SocketState::Other => "other",
        }
    }
}

/// One look at the system.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub listeners: Vec<Listener>,
    /// Listeners on the port in other network namespaces (containers).
    pub foreign_listeners: Vec<Listener>,
    pub sockets: Vec<PortSocket>,
    /// Other ports listening here, for "what listens nearby".
    pub other_listening_ports: Vec<Endpoint>,
    pub counters: Counters,
    pub local_port_range: Option<(u16, u16)>,
    /// net.ipv4.tcp_abort_on_overflow in portsniff's network namespace: a handshake ACK
    /// that finds the accept queue full is answered with RST instead of dropped.
    pub abort_on_overflow: Option<bool>,
    /// net.ipv4.tcp_tw_reuse: 0 off, 1 on, 2 (the default) for loopback connections only.
    pub tw_reuse: Option<u8>,
    /// net.ipv4.tcp_tw_reuse_delay (ms, Linux 6.11+): how old a TIME_WAIT socket must be
    /// before connect() may reuse its port; 1000 on older kernels.
    pub tw_reuse_delay_ms: Option<u32>,
    /// This network namespace's own addresses (every interface's, as `ip addr` lists
    /// them), sorted.
    pub own_addresses: Vec<IpAddr>,
    /// When it was taken (wall clock), stamped by the caller: this module reads no
    /// clock. 0 when unknown (tests).
    pub taken: Timestamp,
}

/// The addresses of this network namespace's interfaces (one netlink dump). Empty when
/// they cannot be read.
fn own_addresses() -> Vec<IpAddr> {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out: Vec<IpAddr> = interfaces
        .filter_map(|i| {
            let a = i.address?;
            match (a.as_sockaddr_in(), a.as_sockaddr_in6()) {
                (Some(v4), _) => Some(IpAddr::V4(v4.ip())),
                (None, Some(v6)) => Some(IpAddr::V6(v6.ip())),
                _ => None,
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn endpoint(a: SocketAddr) -> Endpoint {
    let addr = match a.ip() {
        // /proc/net/tcp6 shows IPv4-mapped addresses for dual-stack sockets.
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    Endpoint::new(addr, a.port())
}

fn state(s: &TcpState) -> SocketState {
    match s {
        TcpState::TimeWait => SocketState::TimeWait,
        TcpState::CloseWait => SocketState::CloseWait,
        TcpState::SynRecv | TcpState::NewSynRecv => SocketState::SynRecv,
        TcpState::SynSent => SocketState::SynSent,
        TcpState::Established => SocketState::Established,
        TcpState::FinWait1 | TcpState::FinWait2 => SocketState::FinWait,
        TcpState::LastAck => SocketState::LastAck,
        TcpState::Closing => SocketState::Closing,
        TcpState::Close | TcpState::Listen => SocketState::Other,
    }
}

fn tcp_entries(process: Option<&Process>) -> Vec<TcpNetEntry> {
    let (v4, v6) = match process {
        None => (procfs::net::tcp(), procfs::net::tcp6()),
        Some(p) => (p.tcp(), p.tcp6()),
    };
    v4.unwrap_or_default()
        .into_iter()
        .chain(v6.unwrap_or_default())
        .collect()
}

/// Maps socket inodes to the processes holding them, for the inodes asked for only.
pub fn socket_owners(inodes: &HashSet<u64>) -> HashMap<u64, Vec<ProcessInfo>> {
    let mut owners: HashMap<u64, Vec<ProcessInfo>> = HashMap::new();
    if inodes.is_empty() {
        return owners;
    }
    let Ok(all) = procfs::process::all_processes() else {
        return owners;
    };
    for p in all.flatten() {
        let Ok(fds) = p.fd() else { continue };
        let mut info: Option<ProcessInfo> = None;
        for fd in fds.flatten() {
            if let FDTarget::Socket(inode) = fd.target {
                if inodes.contains(&inode) {
                    let pi = info.get_or_insert_with(|| process_info(&p)).clone();
                    let list = owners.entry(inode).or_default();
                    if !list.iter().any(|x| x.pid == pi.pid) {
                        list.push(pi);
                    }
                }
            }
        }
    }
    owners
}

fn process_info(p: &Process) -> ProcessInfo {
    let name = p.stat().map(|s| s.comm).unwrap_or_default();
    let cmdline = p.cmdline().map(|c| c.join(" ")).unwrap_or_default();
    let user = p
        .uid()
        .ok()
        .map(|uid| {
            uzers::get_user_by_uid(uid)
                .map(|u| u.name().to_string_lossy().into_owned())
                .unwrap_or_else(|| uid.to_string())
        })
        .unwrap_or_default();
    ProcessInfo {
        pid: p.pid(),
        name,
        cmdline,
        user,
    }
}

fn net_namespace(p: &Process) -> Option<u64> {
    std::fs::metadata(format!("/proc/{}/ns/net", p.pid()))
        .ok()
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
}

fn local_port_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<u16>().ok());
    Some((it.next()??, it.next()??))
}

fn sysctl<T: std::str::FromStr>(name: &str) -> Option<T> {
    let text = std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).ok()?;
    text.trim().parse().ok()
}

/// net.ipv4.tcp_abort_on_overflow in portsniff's network namespace: a handshake ACK
/// that finds the accept queue full is answered with RST instead of dropped.
fn abort_on_overflow() -> Option<bool> {
    sysctl::<u8>("tcp_abort_on_overflow").map(|v| v != 0)
}

impl Snapshot {
    /// Whether `addr` is this host's (its namespace's) own: an interface's address, or
    /// any loopback address (all of 127/8 is local, though `lo` lists only 127.0.0.1).
    pub fn is_own_address(&self, addr: IpAddr) -> bool {
        addr.is_loopback() || self.own_addresses.binary_search(&addr).is_ok()
    }

    /// Looks at everything on `port`. `other_namespaces`: also walk /proc/*/ns/net for
    /// listeners in other network namespaces (costs a /proc walk). `owners`: name the
    /// processes holding the listeners (another /proc walk). Both need CAP_SYS_PTRACE
    /// for other users' processes.
    pub fn take(port: u16, other_namespaces: bool, owners: bool) -> Snapshot {
        let mut snap = Snapshot {
            counters: read_counters(),
            local_port_range: local_port_range(),
            abort_on_overflow: abort_on_overflow(),
            tw_reuse: sysctl("tcp_tw_reuse"),
            tw_reuse_delay_ms: sysctl("tcp_tw_reuse_delay"),
            own_addresses: own_addresses(),
            ..Snapshot::default()
        };
        let mut wanted = HashSet::new();
        let entries = port_entries_diag(port).unwrap_or_else(|| port_entries_proc(port));
        for e in entries {
            let Entry {
                local,
                remote,
                state,
                recv_queue,
                inode,
            } = e;
            match state {
                None if local.port == port => {
                    wanted.insert(inode);
                    snap.listeners.push(Listener {
                        local,
                        accept_queue: recv_queue,
                        backlog: None,
                        inode,
                        processes: Vec::new(),
                        namespace: None,
                    });
                }
                None if !snap.other_listening_ports.contains(&local) => {
                    snap.other_listening_ports.push(local);
                }
                Some(state) if local.port == port || remote.port == port => {
                    snap.sockets.push(PortSocket {
                        local,
                        remote,
                        state,
                        recv_queue,
                    })
                }
                _ => {}
            }
        }
        if !owners {
            wanted.clear();
        }
        if other_namespaces && owners {
            snap.foreign_listeners = foreign_listeners(port);
            wanted.extend(snap.foreign_listeners.iter().map(|l| l.inode));
        }
        let owners = socket_owners(&wanted);
        let backlogs = if snap.listeners.is_empty() {
            HashMap::new()
        } else {
            listen_backlogs(port)
        };
        for l in snap.listeners.iter_mut() {
            l.backlog = backlogs.get(&l.inode).copied();
        }
        for l in snap
            .listeners
            .iter_mut()
            .chain(snap.foreign_listeners.iter_mut())
        {
            l.processes = owners.get(&l.inode).cloned().unwrap_or_default();
        }
        snap.other_listening_ports.sort();
        snap
    }

    /// Fills in listener owners and other-namespace listeners from an earlier, complete
    /// look (same socket inode, same listener).
    pub fn carry_owners_from(&mut self, earlier: &Snapshot) {
        for l in &mut self.listeners {
            if let Some(e) = earlier.listeners.iter().find(|e| e.inode == l.inode) {
                l.processes = e.processes.clone();
                l.backlog = l.backlog.or(e.backlog);
            }
        }
        self.foreign_listeners = earlier.foreign_listeners.clone();
    }

    pub fn count(&self, state: SocketState) -> usize {
        self.sockets.iter().filter(|s| s.state == state).count()
    }
}

/// One TCP socket of a look, from either source.
struct Entry {
    local: Endpoint,
    remote: Endpoint,
    /// `None` for a listener.
    state: Option<SocketState>,
    /// A listener's accept queue; otherwise bytes received and not yet read.
    recv_queue: u32,
    inode: u64,
}

/// Every listener (for "what listens nearby") and the sockets with the port on either
/// side, from /proc/net/tcp{,6}: the fallback when sock_diag cannot be read. Each 4 KB
/// read of those files restarts the kernel's walk of its socket hash, so with thousands
/// of sockets (TIME_WAIT after a burst of connections) one look takes time quadratic in
/// their number.
fn port_entries_proc(port: u16) -> Vec<Entry> {
    tcp_entries(None)
        .into_iter()
        .map(|e| Entry {
            local: endpoint(e.local_address),
            remote: endpoint(e.remote_address),
            state: (e.state != TcpState::Listen).then(|| state(&e.state)),
            recv_queue: e.rx_queue,
            inode: e.inode,
        })
        .filter(|e| e.state.is_none() || e.local.port == port || e.remote.port == port)
        .collect()
}

/// The same from sock_diag, filtered by the kernel: every listener, then the sockets
/// with `port` on either side. Each dump of connected sockets walks every bucket of the
/// kernel's established hash (262,144 on a machine with 24 GiB, milliseconds a walk, the
/// larger part of an idle watch's CPU): one dump per family asks for either side at
/// once, with a bytecode filter; a kernel that refuses it is asked by local port, then
/// by remote port, as before (two walks per family). `None` on any error.
fn port_entries_diag(port: u16) -> Option<Vec<Entry>> {
    use netlink_packet_sock_diag::inet::StateFlags;
    let connected = StateFlags::all().difference(StateFlags::LISTEN);
    let mut out: Vec<Entry> = dump(StateFlags::LISTEN, Ports::Any)?
        .into_iter()
        .map(|d| Entry {
            state: None,
            ..d.entry()
        })
        .collect();
    match dump(connected.clone(), Ports::Either(port)) {
        Some(both) => out.extend(both.into_iter().map(|d| d.entry())),
        None => {
            out.extend(
                dump(connected.clone(), Ports::Local(port))?
                    .into_iter()
                    .map(|d| d.entry()),
            );
            out.extend(
                dump(connected, Ports::Remote(port))?
                    .into_iter()
                    .map(|d| d.entry())
                    // A connection from the port to itself is in the first dump already.
                    .filter(|e| e.local.port != port),
            );
        }
    }
    Some(out)
}

/// Listeners on `port` in network namespaces other than ours, one process per namespace
/// read through /proc/PID/net/tcp{,6}.
fn foreign_listeners(port: u16) -> Vec<Listener> {
    let mut out = Vec::new();
    let Ok(me) = Process::myself() else {
        return out;
    };
    let Some(own) = net_namespace(&me) else {
        return out;
    };
    let mut seen = HashSet::from([own]);
    let Ok(all) = procfs::process::all_processes() else {
        return out;
    };
    for p in all.flatten() {
        let Some(ns) = net_namespace(&p) else {
            continue;
        };
        if !seen.insert(ns) {
            continue;
        }
        for e in tcp_entries(Some(&p)) {
            let local = endpoint(e.local_address);
            if e.state == TcpState::Listen && local.port == port {
                out.push(Listener {
                    local,
                    accept_queue: e.rx_queue,
                    backlog: None,
                    inode: e.inode,
                    processes: Vec::new(),
                    namespace: Some(format!("net:[{ns}]")),
                });
            }
        }
    }
    out
}

/// One socket as sock_diag reports it.
struct DiagSocket {
    local: Endpoint,
    remote: Endpoint,
    /// The kernel's state number (`include/net/tcp_states.h`).
    state: u8,
    /// A listener's connections waiting for accept() (`ss -lnt` Recv-Q); otherwise bytes
    /// received and not read.
    recv_queue: u32,
    /// A listener's listen() backlog (`ss -lnt` Send-Q).
    send_queue: u32,
    inode: u64,
}

impl DiagSocket {
    fn entry(&self) -> Entry {
        let state = match self.state {
            1 => SocketState::Established,
            2 => SocketState::SynSent,
            // NEW_SYN_RECV: a request socket, which /proc/net/tcp shows as SYN_RECV.
            3 | 12 => SocketState::SynRecv,
            4 | 5 => SocketState::FinWait,
            6 => SocketState::TimeWait,
            8 => SocketState::CloseWait,
            9 => SocketState::LastAck,
            11 => SocketState::Closing,
            _ => SocketState::Other,
        };
        Entry {
            local: self.local,
            remote: self.remote,
            state: Some(state),
            recv_queue: self.recv_queue,
            inode: self.inode,
        }
    }
}

/// The port's listening TCP sockets in this network namespace. The port is in the
/// request: the kernel skips other listeners (`inet_diag_dump_icsk` compares
/// `idiag_sport` when it is set), so a busy machine's hundreds of listeners cost
/// nothing. `None` on any error.
fn dump_listening(port: u16) -> Option<Vec<DiagSocket>> {
    use netlink_packet_sock_diag::inet::StateFlags;
    dump(StateFlags::LISTEN, Ports::Local(port))
}

/// Which sockets a dump asks the kernel for, by port.
#[derive(Clone, Copy, Debug)]
enum Ports {
    Any,
    /// The local port (`idiag_sport` in the request).
    Local(u16),
    /// The remote port (`idiag_dport`).
    Remote(u16),
    /// Either: a bytecode filter ([`either_port_filter`]).
    Either(u16),
}

impl Ports {
    /// Checked again on each answer: an older kernel may not filter the dump.
    fn admits(self, local: u16, remote: u16) -> bool {
        match self {
            Ports::Any => true,
            Ports::Local(p) => local == p,
            Ports::Remote(p) => remote == p,
            Ports::Either(p) => local == p || remote == p,
        }
    }
}

/// `INET_DIAG_REQ_BYTECODE` (`include/uapi/linux/inet_diag.h`), a netlink attribute for
/// "the local port is `port`, or the remote port is": a list of
/// `struct inet_diag_bc_op { u8 code; u8 yes; u16 no; }`, each test jumping `yes` bytes
/// on a match and `no` bytes otherwise; landing exactly on the end accepts the socket,
/// past it rejects it. The kernel checks that every `no` lands where the chain of `yes`
/// jumps passes (`valid_cc`), hence the unconditional jump in the middle.
fn either_port_filter(port: u16) -> [u8; 24] {
    const REQ_BYTECODE: u16 = 1;
    const JMP: u8 = 1;
    const S_EQ: u8 = 11;
    const D_EQ: u8 = 12;
    let op = |code: u8, yes: u8, no: u16| {
        let no = no.to_ne_bytes();
        [code, yes, no[0], no[1]]
    };
    // The port a port test compares with is the `no` of the op after it.
    let value = op(0, 0, port);
    let (len, kind) = (24u16.to_ne_bytes(), REQ_BYTECODE.to_ne_bytes());
    let words = [
        // The attribute's header: its length (with itself) and type.
        [len[0], len[1], kind[0], kind[1]],
        // Local port: on to the jump (accepted); else to the remote port's test.
        op(S_EQ, 8, 12),
        value,
        // Always its `no`: to the end, accepted.
        op(JMP, 4, 12),
        // Remote port: to the end; else 4 bytes past it, rejected.
        op(D_EQ, 8, 12),
        value,
    ];
    let mut out = [0u8; 24];
    for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word);
    }
    out
}

/// TCP sockets in `states` of this network namespace, from one NETLINK_SOCK_DIAG dump per
/// family, filtered by `ports` in the kernel (`inet_diag_dump_icsk`). `None` on any
/// error, a filter the kernel refused included.
fn dump(
    states: netlink_packet_sock_diag::inet::StateFlags,
    ports: Ports,
) -> Option<Vec<DiagSocket>> {
    use netlink_packet_core::{
        NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
    };
    use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
    use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId};
    use netlink_packet_sock_diag::SockDiagMessage;
    use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};

    let mut out = Vec::new();
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).ok()?;
    socket.bind_auto().ok()?;
    socket.connect(&SocketAddr::new(0, 0)).ok()?;
    let mut rx = vec![0u8; 1 << 16];
    for (family, mut id) in [
        (AF_INET, SocketId::new_v4()),
        (AF_INET6, SocketId::new_v6()),
    ] {
        match ports {
            Ports::Local(p) => id.source_port = p,
            Ports::Remote(p) => id.destination_port = p,
            Ports::Any | Ports::Either(_) => {}
        }
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut request = NetlinkMessage::new(
            header,
            SockDiagMessage::InetRequest(InetRequest {
                family,
                protocol: IPPROTO_TCP,
                extensions: ExtensionFlags::empty(),
                states: states.clone(),
                socket_id: id,
            })
            .into(),
        );
        request.finalize();
        let mut buf = vec![0; request.buffer_len()];
        request.serialize(&mut buf[..]);
        if let Ports::Either(port) = ports {
            // The request's attribute, after its fixed part, counted in the header's length.
            buf.extend_from_slice(&either_port_filter(port));
            let len = u32::try_from(buf.len()).ok()?;
            buf[..4].copy_from_slice(&len.to_ne_bytes());
        }
        socket.send(&buf[..], 0).ok()?;
        // Bounded: 1024 reads of 64 KB hold hundreds of thousands of sockets; a dump
        // ends with NLMSG_DONE long before on any machine this watches.
        'dump: for _ in 0..1024 {
            let size = socket.recv(&mut &mut rx[..], 0).ok()?;
            let mut offset = 0;
            while offset < size {
                let msg = NetlinkMessage::<SockDiagMessage>::deserialize(&rx[offset..size]).ok()?;
                let len = msg.header.length as usize;
                match msg.payload {
                    NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                        let id = &r.header.socket_id;
                        if ports.admits(id.source_port, id.destination_port) {
                            out.push(DiagSocket {
                                local: endpoint(std::net::SocketAddr::new(
                                    id.source_address,
                                    id.source_port,
                                )),
                                remote: endpoint(std::net::SocketAddr::new(
                                    id.destination_address,
                                    id.destination_port,
                                )),
                                state: r.header.state,
                                recv_queue: r.header.recv_queue,
                                send_queue: r.header.send_queue,
                                inode: u64::from(r.header.inode),
                            });
                        }
                    }
                    NetlinkPayload::Done(_) => break 'dump,
                    NetlinkPayload::Error(_) => return None,
                    _ => {}
                }
                if len == 0 {
                    break 'dump;
                }
                offset += len;
            }
        }
    }
    Some(out)
}

/// Backlogs of the port's listening sockets by inode (what `ss -lnt` shows as Send-Q).
/// Empty on any error.
fn listen_backlogs(port: u16) -> HashMap<u64, u32> {
    dump_listening(port)
        .unwrap_or_default()
        .into_iter()
        .map(|l| (l.inode, l.send_queue))
        .collect()
}

/// The port's listeners in this network namespace right now, with their queues: one
/// sock_diag dump per family, tens of microseconds, no /proc. For the moment of a
/// problem, when the refresher's look can be a second old. Owners are not named (that
/// needs a walk of every process's fds): the caller carries them over by inode. `None`
/// when sock_diag cannot be read.
pub fn listeners_now(port: u16) -> Option<Vec<Listener>> {
    Some(
        dump_listening(port)?
            .into_iter()
            .map(|l| Listener {
                local: l.local,
                accept_queue: l.recv_queue,
                backlog: Some(l.send_queue),
                inode: l.inode,
                processes: Vec::new(),
                namespace: None,
            })
            .collect(),
    )
}

/// Process `pid` as /proc shows it now; `comm` (what the kernel called it when it acted)
/// when it is already gone or cannot be read.
pub fn describe_process(pid: i32, comm: &str) -> ProcessInfo {
    match Process::new(pid) {
        Ok(p) if p.stat().is_ok() => {
            let mut info = process_info(&p);
            if info.cmdline.is_empty() {
                info.cmdline = comm.to_string();
            }
            info
        }
        _ => ProcessInfo {
            pid,
            name: comm.to_string(),
            cmdline: comm.to_string(),
            user: String::new(),
        },
    }
}

/// The process holding the socket whose local end is `local`, if it still exists.
pub fn owner_of(local: &Endpoint) -> Option<ProcessInfo> {
    let inode = tcp_entries(None)
        .into_iter()
        .find(|e| endpoint(e.local_address) == *local && e.state != TcpState::Listen)?
        .inode;
    if inode == 0 {
        return None;
    }
    socket_owners(&HashSet::from([inode]))
        .remove(&inode)?
        .into_iter()
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_we_start_is_found_with_our_own_pid() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let snap = Snapshot::take(port, false, true);
        assert_eq!(snap.listeners.len(), 1, "{snap:?}");
        let listener = &snap.listeners[0];
        assert_eq!(listener.local.to_string(), format!("127.0.0.1:{port}"));
        assert_eq!(
            listener.backlog,
            Some(128),
            "std's listen() backlog, via sock_diag"
        );
        assert_eq!(listener.accept_queue, 0);
        assert!(
            listener
                .processes
                .iter()
                .any(|p| p.pid == std::process::id() as i32),
            "{listener:?}"
        );
    }

    #[test]
    fn a_look_at_the_moment_finds_the_ports_listeners_only_with_their_queues() {
        let l = std::net::TcpListener::bind("[::1]:0").unwrap();
        let _other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let now = listeners_now(port).expect("sock_diag readable");
        assert_eq!(now.len(), 1, "{now:?}");
        assert_eq!(now[0].local.to_string(), format!("[::1]:{port}"));
        assert_eq!(now[0].backlog, Some(128));
        assert_ne!(now[0].inode, 0);
    }

    #[test]
    fn sock_diag_sees_the_ports_sockets_as_proc_net_tcp_does() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (server, _) = l.accept().unwrap();
        // A TIME_WAIT socket too: the server closes first.
        drop(server);
        let mut buf = [0u8; 1];
        let _ = std::io::Read::read(&mut &client, &mut buf);
        drop(client);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let key = |e: &Entry| {
            (
                e.local.to_string(),
                e.remote.to_string(),
                e.state.map(SocketState::as_str),
                e.inode,
            )
        };
        let port_only = |v: Vec<Entry>| {
            let mut k: Vec<_> = v
                .iter()
                .filter(|e| e.local.port == port || e.remote.port == port)
                .map(key)
                .collect();
            k.sort();
            k
        };
        let diag = port_only(port_entries_diag(port).expect("sock_diag readable"));
        let proc = port_only(port_entries_proc(port));
        assert_eq!(diag, proc);
        assert!(
            diag.iter().any(|k| k.2 == Some("time_wait")),
            "the server's socket in TIME_WAIT: {diag:?}"
        );
        assert!(diag.iter().any(|k| k.2.is_none()), "the listener: {diag:?}");
    }

    #[test]
    fn one_dump_for_either_side_is_filtered_by_the_kernel_to_the_port() {
        use netlink_packet_sock_diag::inet::StateFlags;
        // Two connections, each with its own listener: only the watched port's sockets
        // come back, both of its connection's ends (local port, then remote port).
        let watched = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = watched.local_addr().unwrap().port();
        let a = std::net::TcpStream::connect(watched.local_addr().unwrap()).unwrap();
        let b = std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap();
        let connected = StateFlags::all().difference(StateFlags::LISTEN);
        let got = dump(connected, Ports::Either(port)).expect("the kernel takes the filter");
        let mut ends: Vec<_> = got.iter().map(|d| (d.local.port, d.remote.port)).collect();
        ends.sort_unstable();
        let client = a.local_addr().unwrap().port();
        let mut want = vec![(client, port), (port, client)];
        want.sort_unstable();
        assert_eq!(ends, want, "the other connection ({b:?}) is left out");
    }

    #[test]
    fn a_process_gone_is_described_by_the_name_the_kernel_gave() {
        let me = describe_process(std::process::id() as i32, "x");
        assert!(!me.user.is_empty() && me.name != "x", "{me:?}");
        let gone = describe_process(i32::MAX, "python3");
        assert_eq!((gone.name.as_str(), gone.pid), ("python3", i32::MAX));
    }

    #[test]
    fn listener_address_matching_follows_family_and_wildcards() {
        let l = |addr: &str| Listener {
            local: Endpoint::new(addr.parse().unwrap(), 80),
            accept_queue: 0,
            backlog: Some(128),
            inode: 1,
            processes: vec![],
            namespace: None,
        };
        let v4 = Endpoint::new("127.0.0.1".parse().unwrap(), 80);
        assert!(l("0.0.0.0").accepts(&v4));
        assert!(l("127.0.0.1").accepts(&v4));
        assert!(!l("127.0.0.2").accepts(&v4));
        assert!(!l("::1").accepts(&v4));
        assert!(
            !l("::").accepts(&v4),
            "refused IPv4 means a [::] listener is v6-only"
        );
    }
}

/// The network namespace (other than ours) that holds `addr` as a local address, and
/// every listener in it (with owners): where a DNAT backend should be listening. `None`
/// when no process sits in such a namespace (a stopped container has none).
pub fn backend_namespace(addr: IpAddr) -> Option<(String, Vec<Listener>)> {
    BackendLooker::new(addr).look(None).flatten()
}

/// Looks at a DNAT backend's namespace again and again, cheaply: the process found in it
/// last time is asked first (its namespace's TCP table is two small files), and the
/// listeners' owners are looked for (a walk of every process's fds) only for sockets not
/// seen before. A walk of every process for the namespace happens only when that process
/// is gone (a stopped container has none to find), and for looks at connections through
/// the map at most every `WALK_EVERY`: a storm of refusals must not make it one each.
pub struct BackendLooker {
    addr: IpAddr,
    /// A process in the backend's namespace, and that namespace's inode.
    inside: Option<(i32, u64)>,
    owners: HashMap<u64, Vec<ProcessInfo>>,
    walked: Option<std::time::Instant>,
}

/// Most often the processes are walked for the backend's namespace.
const WALK_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl BackendLooker {
    pub fn new(addr: IpAddr) -> BackendLooker {
        BackendLooker {
            addr,
            inside: None,
            owners: HashMap::new(),
            walked: None,
        }
    }

    /// The backend's namespace and its listeners now, `Some(None)` when no process sits
    /// in it; `None` when a walk was due but held back (no answer: the caller keeps its
    /// last). `now`: a look for a connection, whose walks are rate-limited (`None`: walk
    /// if needed, as the first and the periodic looks do).
    pub fn look(
        &mut self,
        now: Option<std::time::Instant>,
    ) -> Option<Option<(String, Vec<Listener>)>> {
        let still_inside = self.inside.and_then(|(pid, ns)| {
            let p = Process::new(pid).ok()?;
            (net_namespace(&p) == Some(ns)).then_some((p, ns))
        });
        let (p, ns) = match still_inside {
            Some(found) => found,
            None => {
                self.inside = None;
                if let (Some(now), Some(at)) = (now, self.walked) {
                    if now.duration_since(at) < WALK_EVERY {
                        return None;
                    }
                }
                if now.is_some() {
                    self.walked = now;
                }
                let Some(found) = self.walk() else {
                    return Some(None);
                };
                self.inside = Some((found.0.pid(), found.1));
                found
            }
        };
        let namespace = format!("net:[{ns}]");
        let mut listeners: Vec<Listener> = tcp_entries(Some(&p))
            .into_iter()
            .filter(|e| e.state == TcpState::Listen)
            .map(|e| Listener {
                local: endpoint(e.local_address),
                accept_queue: e.rx_queue,
                backlog: None,
                inode: e.inode,
                processes: Vec::new(),
                namespace: Some(namespace.clone()),
            })
            .collect();
        let unknown: HashSet<u64> = listeners
            .iter()
            .map(|l| l.inode)
            .filter(|i| !self.owners.contains_key(i))
            .collect();
        if !unknown.is_empty() {
            let found = socket_owners(&unknown);
            for i in unknown {
                self.owners
                    .insert(i, found.get(&i).cloned().unwrap_or_default());
            }
        }
        self.owners
            .retain(|i, _| listeners.iter().any(|l| l.inode == *i));
        for l in &mut listeners {
            l.processes = self.owners.get(&l.inode).cloned().unwrap_or_default();
        }
        Some(Some((namespace, listeners)))
    }

    fn walk(&self) -> Option<(Process, u64)> {
        let own = net_namespace(&Process::myself().ok()?)?;
        let mut seen = HashSet::from([own]);
        for p in procfs::process::all_processes().ok()?.flatten() {
            let Some(ns) = net_namespace(&p) else {
                continue;
            };
            if !seen.insert(ns) || !holds_address(p.pid(), self.addr) {
                continue;
            }
            return Some((p, ns));
        }
        None
    }
}

/// Whether `addr` is a local address in process `pid`'s network namespace: its
/// `/32 host LOCAL` entry in `fib_trie` (IPv4), or its line in `if_inet6` (IPv6).
fn holds_address(pid: i32, addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => std::fs::read_to_string(format!("/proc/{pid}/net/fib_trie"))
            .is_ok_and(|t| fib_trie_holds(&t, v4)),
        IpAddr::V6(v6) => {
            std::fs::read_to_string(format!("/proc/{pid}/net/if_inet6")).is_ok_and(|t| {
                let hex: String = v6.octets().iter().map(|b| format!("{b:02x}")).collect();
                t.lines().any(|l| l.starts_with(&hex))
            })
        }
    }
}

fn fib_trie_holds(text: &str, addr: std::net::Ipv4Addr) -> bool {
    let leaf = format!("|-- {addr}");
    let mut lines = text.lines().map(str::trim).peekable();
    while let Some(l) = lines.next() {
        if l == leaf && lines.peek().is_some_and(|n| n.ends_with("host LOCAL")) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod backend_tests {
    #[test]
    fn an_address_is_local_where_fib_trie_has_its_host_local_leaf() {
        let t = "Main:\n  +-- 10.77.0.0/24 2 0 2\n     |-- 10.77.0.0\n        /24 link UNICAST\n     |-- 10.77.0.2\n        /32 host LOCAL\n     |-- 10.77.0.255\n        /32 link BROADCAST\n";
        assert!(super::fib_trie_holds(t, [10, 77, 0, 2].into()));
        assert!(!super::fib_trie_holds(t, [10, 77, 0, 255].into()));
        assert!(!super::fib_trie_holds(t, [10, 77, 0, 1].into()));
    }
}
