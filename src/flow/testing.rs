//! Test support for the flow stage's unit tests: segments, a flow with its own rare-part
//! store, and the handshake most scenarios start with. Test builds only.

use super::packed::{Flow, Rares};
use super::record::{EndReason, FlowRecord, Side};
use crate::decode::{Encap, HandshakeOptions, IcmpError, TcpFlags, TcpSegment, Timestamp};
use std::net::{IpAddr, Ipv4Addr};
use Side::{Client, Server};

pub const SYN: u8 = TcpFlags::SYN;
pub const ACK: u8 = TcpFlags::ACK;
pub const FIN: u8 = TcpFlags::FIN;
pub const RST: u8 = TcpFlags::RST;
pub const PSH: u8 = TcpFlags::PSH;

pub fn seg(flags: u8, seq: u32, ack: u32, len: u32, window: u16) -> TcpSegment {
    TcpSegment {
        seq,
        ack,
        flags: TcpFlags(flags),
        window,
        payload_len: len,
        options: HandshakeOptions::default(),
    }
}

pub fn ep(port: u16) -> crate::decode::Endpoint {
    crate::decode::Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// A flow with its own store of rare parts, so tests read like the table's calls.
pub struct TestFlow {
    pub flow: Flow,
    pub rares: Rares,
}

impl TestFlow {
    pub fn on_tcp(&mut self, side: Side, seg: &TcpSegment, ts: Timestamp) -> bool {
        self.flow.on_tcp(side, seg, ts, &mut self.rares)
    }

    pub fn on_icmp(&mut self, err: &IcmpError, ts: Timestamp) -> bool {
        self.flow.on_icmp(err, ts, &mut self.rares)
    }

    pub fn record(&self, reason: EndReason) -> FlowRecord {
        self.flow.record(reason, &self.rares)
    }

    pub fn finish(&mut self, reason: EndReason) -> FlowRecord {
        self.flow.finish(reason, &self.rares)
    }
}

impl std::ops::Deref for TestFlow {
    type Target = Flow;
    fn deref(&self) -> &Flow {
        &self.flow
    }
}

pub fn flow_between(client: crate::decode::Endpoint, server: crate::decode::Endpoint) -> TestFlow {
    let mut rares = Rares::default();
    let flow = Flow::new(
        1,
        client,
        server,
        Encap::None,
        Timestamp(1_000_000),
        false,
        &mut rares,
    );
    TestFlow { flow, rares }
}

pub fn flow() -> TestFlow {
    flow_between(ep(40000), ep(61999))
}

/// A client at ISN 100 and a server at ISN 5000 complete the handshake; `at` is in µs.
pub fn handshake(f: &mut TestFlow) {
    f.on_tcp(Client, &seg(SYN, 100, 0, 0, 65535), Timestamp(1_000_000));
    f.on_tcp(
        Server,
        &seg(SYN | ACK, 5000, 101, 0, 65535),
        Timestamp(1_000_040),
    );
    f.on_tcp(Client, &seg(ACK, 101, 5001, 0, 512), Timestamp(1_000_070));
}
