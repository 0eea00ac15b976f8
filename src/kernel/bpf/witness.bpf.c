// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * portsniff's kernel witness: what the kernel did to the watched port's packets and
 * sockets that a packet capture cannot see. Attached to stable tracepoints (BTF-typed,
 * tp_btf): skb:kfree_skb (a drop and its reason), tcp:tcp_send_reset and
 * tcp:tcp_receive_reset, sock:inet_sock_set_state, tcp:tcp_retransmit_synack and
 * tcp:tcp_retransmit_skb.
 *
 * The tracepoints are global, so everything is filtered here, in the kernel: TCP (or an
 * ICMP error quoting TCP) with the watched port on either side, in the watched network
 * namespace. Traffic on other ports costs a header read and a comparison. What passes
 * goes to user space as one fixed-size record in a ring buffer; a record the ring has no
 * room for is counted in `lost`, never silently missing.
 *
 * A connection's socket states are not sent one change at a time (about ten records a
 * clean connection, each read, sent and joined in user space): each socket keeps its
 * path in socket-local storage and sends it once, as it reaches TCP_CLOSE (what bcc's
 * tcplife does). What must reach user space at once stays immediate: drops, resets,
 * a listener's LISTEN changes.
 *
 * Field layout of struct witness_event is mirrored in src/kernel/event.rs (a test there
 * checks the size); keep both in step.
 */
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_ICMPV6 58
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define TCP_LISTEN 10
/* bpf_ringbuf_output flags (uapi linux/bpf.h). */
#define BPF_RB_NO_WAKEUP 1
#define BPF_RB_FORCE_WAKEUP 2

/* Set by user space before loading (the only object in .rodata, at offset 0; mirrored
 * by Config in src/kernel/witness.rs): the inode number of the network namespace being
 * captured (0: any namespace) and the port (host order). */
const volatile struct {
	__u32 netns;
	__u16 port;
	__u16 pad;
} config = {};
#define watched_port (config.port)
#define watched_netns (config.netns)

enum witness_kind {
	WITNESS_DROP = 1,
	WITNESS_RESET_SENT = 2,
	WITNESS_RESET_RECEIVED = 3,
	WITNESS_STATE = 4,
	WITNESS_SYNACK_RETRANSMIT = 5,
	WITNESS_RETRANSMIT = 6,
	WITNESS_STATE_PATH = 7,
	WITNESS_STORM = 8,
};

/* Bits of witness_event.flags. */
#define WF_HAS_SOCKET 1 /* a reset sent by a socket (not a reply to a packet) */
#define WF_HAS_PACKET 2 /* the tuple, seq and flags come from a packet's headers */
#define WF_PROCESS 4 /* pid and comm are the process that caused the event */
#define WF_RECEIVED 8 /* the dropped packet came in from a device (ingress) */

struct witness_event {
	__u64 ts_ns; /* bpf_ktime_get_ns: CLOCK_MONOTONIC */
	__u64 location; /* kfree_skb: the kernel address that dropped it */
	__u32 reason; /* drop reason, reset reason, or the new socket state */
	__u32 pid;
	__u32 seq;
	__u16 sport; /* host order; as the packet travels (socket events: local) */
	__u16 dport;
	__u8 kind;
	__u8 family; /* 4 or 6 */
	__u8 tcp_flags;
	__u8 icmp_type; /* nonzero: an ICMP error quoting the TCP segment */
	__u8 icmp_code;
	__u8 old_state;
	__u8 flags;
	__u8 pad;
	__u8 saddr[16]; /* IPv4 in the first four bytes */
	__u8 daddr[16];
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024);
} events SEC(".maps");

/* Records the ring had no room for, per CPU (user space sums them). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* bpf_map_update_elem / sk storage flags (uapi linux/bpf.h). */
#define BPF_F_NO_PREALLOC 1
#define BPF_SK_STORAGE_GET_F_CREATE 1
/* States a path holds; an older one is shifted out and the path marked cut. */
#define PATH_MAX_STATES 16
#define PATH_CUT 0x100

/* One socket's states since the first change traced on it, 4 bits each, the oldest in
 * the low bits (TCP states are 1..13). */
struct sock_path {
	__u64 states;
	__u32 n; /* states held, | PATH_CUT when older ones were shifted out */
	__u32 retransmits; /* tcp_retransmit_skb on this socket */
};

/* Freed with its socket (bpf_sk_storage_free), so a socket freed without reaching
 * TCP_CLOSE leaves nothing behind, and a reused socket address starts afresh. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_path);
} paths SEC(".maps");

/* The kernel functions drops happened in, each named once, by the kernel itself (`%ps`,
 * the name /proc/kallsyms gives the address's function), for user space to look up by
 * address when a record names a place it has not seen: reading the whole of
 * /proc/kallsyms at start (the kernel formats 120,000 lines) cost more CPU than loading
 * and attaching the programs. Drops happen at a few dozen places in a kernel. */
#define PLACE_NAME 48
struct place_name {
	char name[PLACE_NAME];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	/* Allocated as places are named (a few dozen), not zeroed in full at load. */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct place_name);
} places SEC(".maps");

/* In a section of its own: `config` stays the only object in .rodata (user space writes
 * it at offset 0). bpf_snprintf wants its format in read-only map memory. */
static const char place_fmt[] SEC(".rodata.fmt") = "%ps";
#define BPF_NOEXIST 1

static __always_inline void name_place(__u64 location)
{
	if (bpf_map_lookup_elem(&places, &location))
		return;
	struct place_name p = {};
	__u64 arg = location;
	bpf_snprintf(p.name, sizeof(p.name), place_fmt, &arg, sizeof(arg));
	/* Full (1024 places): the drop goes unnamed, as it would without kallsyms. */
	bpf_map_update_elem(&places, &location, &p, BPF_NOEXIST);
}

static __always_inline bool in_watched_netns(__u32 inum)
{
	/* An unknown namespace (0) passes: better a stray event than a missing one, and
	 * the port must match too. */
	return watched_netns == 0 || inum == 0 || inum == watched_netns;
}

/* The tracepoints' arguments are BTF-typed (tp_btf): their fields, and the pointers in
 * them, are read with plain loads, which the verifier makes fault-safe, instead of a
 * bpf_probe_read_kernel call each. Only packet bytes (behind skb->head, which the
 * verifier does not type) and casts to other types take the helper. This runs on every
 * drop and every TCP state change on the machine, watched or not: measured by
 * benches/witness.sh, a filtered-out drop cost ~300 ns with a helper call per field. */
/* The namespace is read only for what passed the port test, with the helper: a pointer
 * loaded from a BTF-typed pointer makes the verifier look up the loaded type's
 * `__safe_trusted` variants by name, a linear search of the kernel's BTF, at each of
 * those loads on each path it explores. For these few loads that search was a third of
 * portsniff's start-up CPU (benches/witness.sh, idle). */
static __always_inline __u32 netns_of_sock(const struct sock *sk)
{
	if (!sk)
		return 0;
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

static __always_inline __u32 netns_of_skb(const struct sk_buff *skb)
{
	/* A received packet has its device; one sent by a local socket may not have one
	 * yet (a SYN-ACK dropped in OUTPUT) but has its socket. */
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	if (dev)
		return BPF_CORE_READ(dev, nd_net.net, ns.inum);
	return netns_of_sock(BPF_CORE_READ(skb, sk));
}

static __always_inline bool port_matches(__u16 sport, __u16 dport)
{
	return sport == watched_port || dport == watched_port;
}

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&lost, &zero);
	if (n)
		*n += 1;
}

struct ip4 {
	__u8 ver_ihl;
	__u8 tos;
	__be16 len;
	__be16 id;
	__be16 frag;
	__u8 ttl;
	__u8 proto;
	__be16 check;
	__be32 saddr;
	__be32 daddr;
};

struct ip6 {
	__be32 ver_class_flow;
	__be16 len;
	__u8 next;
	__u8 hops;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct tcp_head {
	__be16 sport;
	__be16 dport;
	__be32 seq;
	__be32 ack;
	__u8 off;
	__u8 flags;
};

struct icmp_head {
	__u8 type;
	__u8 code;
	__be16 check;
	__be32 rest;
};

/* Reads the TCP header at `at`, or the one quoted by an ICMP error, into `e`. Returns
 * false when the packet is not the watched port's. */
static __always_inline bool tcp_fields(const struct tcp_head *th, struct witness_event *e)
{
	e->sport = bpf_ntohs(th->sport);
	e->dport = bpf_ntohs(th->dport);
	e->seq = bpf_ntohl(th->seq);
	e->tcp_flags = th->flags;
	return port_matches(e->sport, e->dport);
}

static __always_inline bool read_tcp(const unsigned char *at, struct witness_event *e)
{
	struct tcp_head th;
	if (bpf_probe_read_kernel(&th, sizeof(th), at))
		return false;
	return tcp_fields(&th, e);
}

static __always_inline bool ip4_fields(const struct ip4 *iph, struct witness_event *e,
				       __u8 *proto, __u32 *hlen)
{
	if ((iph->ver_ihl >> 4) != 4 || (iph->ver_ihl & 0xf) < 5)
		return false;
	e->family = 4;
	__builtin_memcpy(e->saddr, &iph->saddr, 4);
	__builtin_memcpy(e->daddr, &iph->daddr, 4);
	*proto = iph->proto;
	*hlen = (iph->ver_ihl & 0xf) * 4;
	return true;
}

static __always_inline bool read_ip4(const unsigned char *at, struct witness_event *e,
				     __u8 *proto, __u32 *hlen)
{
	struct ip4 iph;
	if (bpf_probe_read_kernel(&iph, sizeof(iph), at))
		return false;
	return ip4_fields(&iph, e, proto, hlen);
}

static __always_inline bool ip6_fields(const struct ip6 *iph, struct witness_event *e,
				       __u8 *proto)
{
	if ((bpf_ntohl(iph->ver_class_flow) >> 28) != 6)
		return false;
	e->family = 6;
	__builtin_memcpy(e->saddr, iph->saddr, 16);
	__builtin_memcpy(e->daddr, iph->daddr, 16);
	/* Extension headers before TCP are rare on a service port: not followed. */
	*proto = iph->next;
	return true;
}

static __always_inline bool read_ip6(const unsigned char *at, struct witness_event *e,
				     __u8 *proto)
{
	struct ip6 iph;
	if (bpf_probe_read_kernel(&iph, sizeof(iph), at))
		return false;
	return ip6_fields(&iph, e, proto);
}

/* Fills the tuple, seq and flags of `e` from the packet in `skb` when it is TCP (or an
 * ICMP error quoting TCP) on the watched port. */
static __always_inline bool read_packet(const struct sk_buff *skb, struct witness_event *e)
{
	unsigned char *head = skb->head;
	__u16 nh = skb->network_header;
	__u8 proto = 0;
	__u32 hlen = 0;
	if (!head || nh == (__u16)~0U)
		return false;
	const unsigned char *ip = head + nh;
	/* The IP header and the TCP header after it in one read, for IPv4 without options
	 * and IPv6 without extension headers: this runs on every drop on the machine, most
	 * of them for other ports, and the second helper call was a fifth of its time for
	 * those (BPF_STATS, benches/witness.sh `other`). The version is the first nibble of
	 * either header. The head of a packet is followed by its shared info in the same
	 * allocation, so reading past a short packet's end reads memory that is there;
	 * should the read fail anyway, the IP header alone is read, as before. */
	union {
		struct ip4 v4;
		struct ip6 v6;
		unsigned char bytes[sizeof(struct ip6) + sizeof(struct tcp_head)];
	} iph;
	bool whole = !bpf_probe_read_kernel(&iph, sizeof(iph), ip);
	if (!whole && bpf_probe_read_kernel(&iph, sizeof(struct ip6), ip))
		return false;
	__u8 first = iph.v4.ver_ihl;
	if ((first >> 4) == 4) {
		if (!ip4_fields(&iph.v4, e, &proto, &hlen))
			return false;
		if (proto == IPPROTO_TCP) {
			if (whole && hlen == sizeof(struct ip4))
				return tcp_fields((const struct tcp_head *)(iph.bytes + sizeof(struct ip4)), e);
			return read_tcp(ip + hlen, e);
		}
		if (proto != IPPROTO_ICMP)
			return false;
		struct icmp_head ih;
		if (bpf_probe_read_kernel(&ih, sizeof(ih), ip + hlen))
			return false;
		/* Destination unreachable, time exceeded, parameter problem. */
		if (ih.type != 3 && ih.type != 11 && ih.type != 12)
			return false;
		e->icmp_type = ih.type;
		e->icmp_code = ih.code;
		const unsigned char *inner = ip + hlen + sizeof(ih);
		if (!read_ip4(inner, e, &proto, &hlen) || proto != IPPROTO_TCP)
			return false;
		return read_tcp(inner + hlen, e);
	}
	if ((first >> 4) == 6) {
		if (!ip6_fields(&iph.v6, e, &proto))
			return false;
		if (proto == IPPROTO_TCP) {
			if (whole)
				return tcp_fields((const struct tcp_head *)(iph.bytes + sizeof(struct ip6)), e);
			return read_tcp(ip + sizeof(struct ip6), e);
		}
		if (proto != IPPROTO_ICMPV6)
			return false;
		struct icmp_head ih;
		if (bpf_probe_read_kernel(&ih, sizeof(ih), ip + sizeof(struct ip6)))
			return false;
		/* Destination unreachable, time exceeded, parameter problem. */
		if (ih.type != 1 && ih.type != 3 && ih.type != 4)
			return false;
		e->icmp_type = ih.type;
		e->icmp_code = ih.code;
		const unsigned char *inner = ip + sizeof(struct ip6) + sizeof(ih);
		if (!read_ip6(inner, e, &proto) || proto != IPPROTO_TCP)
			return false;
		return read_tcp(inner + sizeof(struct ip6), e);
	}
	return false;
}

/* Fills the tuple of `e` from a socket's common part: local → remote. */
static __always_inline bool read_sock_common(const struct sock_common *skc,
					     const struct sock *sk_of, struct witness_event *e)
{
	unsigned short family = skc->skc_family;
	e->sport = skc->skc_num;
	e->dport = bpf_ntohs(skc->skc_dport);
	/* Closing releases the local port (skc_num = 0) before the state change and the
	 * reset of an abortive close are traced: take the port the socket had. A connect()
	 * not yet given a port (CLOSE→SYN_SENT) has none either way. */
	if (e->sport == 0 && sk_of)
		e->sport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk_of, inet_sport));
	if (!port_matches(e->sport, e->dport))
		return false;
	if (family == AF_INET) {
		__be32 s = skc->skc_rcv_saddr;
		__be32 d = skc->skc_daddr;
		e->family = 4;
		__builtin_memcpy(e->saddr, &s, 4);
		__builtin_memcpy(e->daddr, &d, 4);
		return true;
	}
	if (family == AF_INET6) {
		e->family = 6;
		/* The helper for these: a 16-byte copy from a typed pointer is not one load. */
		BPF_CORE_READ_INTO((struct in6_addr *)e->saddr, skc, skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO((struct in6_addr *)e->daddr, skc, skc_v6_daddr);
		return true;
	}
	return false;
}

static __always_inline void swap_tuple(struct witness_event *e)
{
	__u8 tmp[16];
	__u16 port = e->sport;
	e->sport = e->dport;
	e->dport = port;
	__builtin_memcpy(tmp, e->saddr, 16);
	__builtin_memcpy(e->saddr, e->daddr, 16);
	__builtin_memcpy(e->daddr, tmp, 16);
}

/* Waking the reader raises an interrupt (irq_work: a self-IPI, a VM exit under a
 * hypervisor), which cost several times the rest of the program: 3.5 us a record in a VM.
 * A record wakes the reader only when none has for WAKE_NS. While packets flow, user
 * space does not need the wake-ups at all: the flow stage reads the ring itself at the
 * end of each batch of packets, and the kernel thread, which waits on the wake-ups,
 * reads only between packets (src/pipeline/kernel_thread.rs). After a quiet spell the
 * first record wakes it at once, so a lone drop still reaches user space in
 * microseconds. */
#define WAKE_NS 5000000ULL
static __u64 last_wake;

static __always_inline void submit(struct witness_event *e)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 flags = BPF_RB_NO_WAKEUP;
	e->ts_ns = now;
	/* Racy between CPUs at worst by one extra wakeup. */
	if (now - last_wake >= WAKE_NS) {
		last_wake = now;
		flags = BPF_RB_FORCE_WAKEUP;
	}
	if (bpf_ringbuf_output(&events, e, sizeof(*e), flags))
		count_lost();
}

/* A storm: past STORM_LIMIT records in a STORM_WINDOW_NS window on one CPU, drops and
 * the resets TCP sends in answer to packets are counted here, by kind, instead of sent
 * one by one, for the rest of that window and for every following window while the
 * storm lasts (a window that ends past the limit makes the next one count from its
 * start). Sent, each is a record to read, join to its connection and write on its line
 * in user space; under a flood of spoofed SYNs or a stream of packets the kernel
 * discards, that was 40 % more of portsniff's CPU than without the witness
 * (benches/witness.sh, synflood and mix), while a count per kind says what such a storm
 * is. Everyday traffic (real connections, a DROP rule's retries) stays far below the
 * limit and is sent whole. The first record a window counts instead of sending sends
 * a WITNESS_STORM record, so user space can mark the connections of that window: their
 * lines may lack drops, counted in the summary instead. */
#define STORM_WINDOW_NS 10000000ULL
#define STORM_LIMIT 100

struct storm_window {
	__u64 start;
	__u32 seen; /* records this window, sent or counted */
	__u32 counted;
	__u32 storming; /* the window before was past the limit: count from the start */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct storm_window);
} storm SEC(".maps");

/* One kind of record, counted (mirrored by TallyKey in src/kernel/storm.rs). */
#define TK_RECEIVED 1 /* a drop of a packet that came in from a device */
#define TK_FROM_PORT 2 /* the segment (quoted, for ICMP) was sent from the watched port */
struct tally_key {
	__u64 location; /* a drop's place */
	__u32 reason; /* drop reason, or reset reason (~0: not known) */
	__u8 kind; /* WITNESS_DROP or WITNESS_RESET_SENT */
	__u8 tcp_flags;
	__u8 icmp; /* nonzero: an ICMP error quoting the segment */
	__u8 bits;
};

struct tally {
	__u64 count;
	__u64 first_ns;
	__u64 last_ns;
};

/* Not preallocated: a storm makes a handful of kinds, and preallocating 4096 per-CPU
 * entries was about a tenth of the witness's start-up CPU (perf, idle run). A new
 * kind is allocated as it is made, once, not on each count. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tally_key);
	__type(value, struct tally);
} tallies SEC(".maps");

/* Whether `e` (a drop, or a reset answering a packet) is counted in `tallies` instead of
 * sent: past the window's limit on this CPU. */
static __always_inline bool counted_in_storm(const struct witness_event *e, __u8 received)
{
	__u32 zero = 0;
	struct storm_window *w = bpf_map_lookup_elem(&storm, &zero);
	if (!w)
		return false;
	__u64 now = bpf_ktime_get_ns();
	if (now - w->start >= STORM_WINDOW_NS) {
		/* The storm goes on if the window that just ended was past the limit and
		 * ended just now (not a window long past, before a quiet spell). */
		w->storming = w->seen > STORM_LIMIT && now - w->start < 2 * STORM_WINDOW_NS;
		w->start = now;
		w->seen = 0;
		w->counted = 0;
	}
	w->seen += 1;
	if (!w->storming && w->seen <= STORM_LIMIT)
		return false;
	struct tally_key key = {
		.location = e->location,
		.reason = e->reason,
		.kind = e->kind,
		.tcp_flags = e->tcp_flags,
		.icmp = e->icmp_type,
		.bits = (received ? TK_RECEIVED : 0) | (e->sport == watched_port ? TK_FROM_PORT : 0),
	};
	struct tally *t = bpf_map_lookup_elem(&tallies, &key);
	if (t) {
		/* Another CPU made the kind: this CPU's share starts at zero. */
		if (t->count == 0)
			t->first_ns = now;
		t->count += 1;
		t->last_ns = now;
	} else {
		struct tally fresh = { .count = 1, .first_ns = now, .last_ns = now };
		/* A new kind's place is named as it is made, not at every count: when user
		 * space reads the counts, the name is there. */
		if (e->kind == WITNESS_DROP)
			name_place(e->location);
		/* Full (4096 kinds: never in practice): the record is lost, and counted so. */
		if (bpf_map_update_elem(&tallies, &key, &fresh, BPF_NOEXIST)) {
			t = bpf_map_lookup_elem(&tallies, &key);
			if (!t) {
				count_lost();
				return true;
			}
			if (t->count == 0)
				t->first_ns = now;
			t->count += 1;
			t->last_ns = now;
		}
	}
	if (w->counted++ == 0) {
		struct witness_event s = {};
		s.kind = WITNESS_STORM;
		s.family = 4;
		submit(&s);
	}
	return true;
}

static __always_inline void with_process(struct witness_event *e)
{
	e->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	e->flags |= WF_PROCESS;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(witness_drop, struct sk_buff *skb, void *location, int reason)
{
	struct witness_event e = {};
	if (!read_packet(skb, &e))
		return 0;
	if (!in_watched_netns(netns_of_skb(skb)))
		return 0;
	e.kind = WITNESS_DROP;
	e.flags = WF_HAS_PACKET;
	/* skb_iif is set when a device hands the packet in and stays 0 on a packet a local
	 * socket sends (OUTPUT, POSTROUTING, the qdisc), whatever its device by then. */
	if (skb->skb_iif)
		e.flags |= WF_RECEIVED;
	e.reason = reason;
	e.location = (__u64)location;
	if (counted_in_storm(&e, skb->skb_iif != 0))
		return 0;
	/* Named before the record goes: when user space reads it, the name is there. */
	name_place(e.location);
	submit(&e);
	return 0;
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(witness_reset_sent, const struct sock *sk, const struct sk_buff *skb)
{
	struct witness_event e = {};
	if (skb) {
		/* A reply to a packet (no socket for it, a bad segment): the tuple is the
		 * packet's, turned around to be the reset's. */
		if (!read_packet(skb, &e))
			return 0;
		swap_tuple(&e);
		e.flags = WF_HAS_PACKET;
		if (!in_watched_netns(sk ? netns_of_sock(sk) : netns_of_skb(skb)))
			return 0;
	} else if (sk) {
		/* The socket itself resets its connection (an abortive close, SO_LINGER 0,
		 * close with unread data): the process closing it is current. */
		if (!read_sock_common(&sk->__sk_common, sk, &e))
			return 0;
		if (!in_watched_netns(netns_of_sock(sk)))
			return 0;
		e.flags = WF_HAS_SOCKET;
		with_process(&e);
	} else {
		return 0;
	}
	e.kind = WITNESS_RESET_SENT;
	if (bpf_core_enum_value_exists(enum sk_rst_reason, SK_RST_REASON_NOT_SPECIFIED))
		e.reason = (__u32)ctx[2];
	else
		e.reason = ~0U;
	/* A socket's own reset is one a connection, never a storm: only replies count. */
	if ((e.flags & WF_HAS_PACKET) && counted_in_storm(&e, 0))
		return 0;
	submit(&e);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(witness_reset_received, struct sock *sk)
{
	struct witness_event e = {};
	if (!read_sock_common(&sk->__sk_common, sk, &e))
		return 0;
	if (!in_watched_netns(netns_of_sock(sk)))
		return 0;
	e.kind = WITNESS_RESET_RECEIVED;
	e.flags = WF_HAS_SOCKET;
	submit(&e);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(witness_state, const struct sock *sk, int oldstate, int newstate)
{
	struct witness_event e = {};
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	if (!read_sock_common(&sk->__sk_common, sk, &e))
		return 0;
	/* A connect() not yet given a port (CLOSE→SYN_SENT) names no connection. */
	if (e.sport == 0)
		return 0;
	/* A socket with a path passed the namespace test when its path began: its later
	 * changes (about nine a connection) skip the three reads the test takes, which
	 * were most of this program's time on a stream of connections (BPF_STATS,
	 * benches/witness.sh `conns`). */
	struct sock_path *p = bpf_sk_storage_get(&paths, (struct sock *)sk, 0, 0);
	if (!p && !in_watched_netns(netns_of_sock(sk)))
		return 0;
	e.kind = WITNESS_STATE;
	e.flags = WF_HAS_SOCKET;
	e.reason = newstate;
	e.old_state = oldstate;
	/* A listener's changes go out at once (the listener timeline needs them when they
	 * happen), with the process that called listen() or close(). */
	if (newstate == TCP_LISTEN || (oldstate == TCP_LISTEN && newstate == TCP_CLOSE)) {
		with_process(&e);
		submit(&e);
		return 0;
	}
	/* A connection's socket: its path grows in its storage. inet_csk_clone_lock moves
	 * a listener's copy from LISTEN to SYN_RECV: the connection's path begins at
	 * SYN_RECV. */
	if (!p)
		p = bpf_sk_storage_get(&paths, (struct sock *)sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!p) {
		/* No memory for the storage: say it the old way, one change a record. */
		submit(&e);
		return 0;
	}
	if (p->n == 0 && oldstate != TCP_LISTEN) {
		p->states = oldstate & 0xf;
		p->n = 1;
	}
	if ((p->n & 0xff) >= PATH_MAX_STATES) {
		p->states >>= 4;
		p->n = (PATH_MAX_STATES - 1) | PATH_CUT;
	}
	p->states |= (__u64)(newstate & 0xf) << (4 * (p->n & 0xff));
	p->n += 1;
	if (newstate != TCP_CLOSE)
		return 0;
	/* TCP_CLOSE: the socket is done (tcp_done, also when it hands over to a TIME_WAIT
	 * socket in tcp_time_wait): its whole path in one record. */
	e.kind = WITNESS_STATE_PATH;
	e.location = p->states;
	e.reason = p->n;
	e.seq = p->retransmits;
	bpf_sk_storage_delete(&paths, (struct sock *)sk);
	submit(&e);
	return 0;
}

SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(witness_synack_retransmit, const struct sock *sk, const struct request_sock *req)
{
	struct witness_event e = {};
	if (!read_sock_common(&req->__req_common, 0, &e))
		return 0;
	if (!in_watched_netns(netns_of_sock(sk)))
		return 0;
	e.kind = WITNESS_SYNACK_RETRANSMIT;
	e.flags = WF_HAS_SOCKET;
	e.tcp_flags = 0x12; /* SYN|ACK */
	submit(&e);
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(witness_retransmit, const struct sock *sk, const struct sk_buff *skb)
{
	/* Counted on the socket's path (a socket on the watched port has one from its
	 * first state change), sent with it at TCP_CLOSE: no record of its own. */
	struct sock_path *p = bpf_sk_storage_get(&paths, (struct sock *)sk, 0, 0);
	if (p)
		p->retransmits += 1;
	return 0;
}
