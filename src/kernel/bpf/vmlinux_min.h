/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * The few kernel types the witness reads, written by hand for CO-RE instead of a
 * generated vmlinux.h: the build then needs neither bpftool nor the build machine's
 * BTF, and libbpf relocates every field below by *name* against the running kernel's
 * BTF at load time (preserve_access_index). Only the fields used are declared; their
 * order and the layout here mean nothing. Where a field sits inside an anonymous
 * union or struct in the kernel (skc_daddr, network_header), libbpf finds it there.
 */
#ifndef PORTSNIFF_VMLINUX_MIN_H
#define PORTSNIFF_VMLINUX_MIN_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
enum { false = 0, true = 1 };

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_HASH = 5,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_SK_STORAGE = 24,
	BPF_MAP_TYPE_RINGBUF = 27,
};

#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)

struct ns_common {
	unsigned int inum;
};

struct net {
	struct ns_common ns;
};

typedef struct {
	struct net *net;
} possible_net_t;

struct net_device {
	possible_net_t nd_net;
};

/* Read whole (16 bytes); its inner union is never named. */
struct in6_addr {
	__u8 bytes[16];
};

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
};

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
};

/* The local port a socket had: kept after the port is released at close (skc_num is
 * zeroed first), set when connect() picks one. */
struct inet_sock {
	__be16 inet_sport;
};

struct request_sock {
	struct sock_common __req_common;
};

struct sk_buff {
	struct net_device *dev;
	struct sock *sk;
	unsigned char *head;
	int skb_iif;
	__u16 network_header;
};

#pragma clang attribute pop

/* Present on kernels that say why they sent a reset (6.10+); checked with
 * bpf_core_enum_value_exists before the tracepoint's third argument is read. */
enum sk_rst_reason {
	SK_RST_REASON_NOT_SPECIFIED = 0,
};

#endif
