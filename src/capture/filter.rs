//! The user's own filter expression (tcpdump's trailing `pcap-filter` expression), which
//! narrows the capture further than the port.
//!
//! Live, it is ANDed into the kernel filter, so the kernel does the work. A file is read
//! unfiltered (see `open_file`), so the expression is compiled for the file's link type
//! and run on each record before decoding; a record it rejects is counted as filtered
//! out, never as "other traffic". This module only compiles and applies expressions: it
//! knows nothing of ports, flows or reports.

use super::CaptureError;
use pcap::{Activated, BpfProgram, Capture, Linktype};

/// A compiled user expression, applied per packet to records read from a file.
pub struct UserFilter {
    expression: String,
    program: BpfProgram,
}

impl std::fmt::Debug for UserFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserFilter")
            .field("expression", &self.expression)
            .finish_non_exhaustive()
    }
}

impl UserFilter {
    /// Compiles `expression` for packets of `linktype`, as libpcap would for a capture
    /// file of that type (`pcap_open_dead` + `pcap_compile`).
    pub fn for_link(expression: &str, linktype: Linktype) -> Result<UserFilter, CaptureError> {
        let dead = Capture::dead(linktype).map_err(|e| invalid(expression, e))?;
        Ok(UserFilter {
            expression: expression.to_string(),
            program: compile(&dead, expression)?,
        })
    }

    /// Whether the packet passes the expression (`pcap_offline_filter`).
    ///
    /// libpcap's binding hands the filter the captured bytes as both the captured and
    /// the wire length, so `len`, `greater` and `less` see the captured length of a
    /// record cut by the snaplen. Every header-based primitive is exact.
    pub fn matches(&self, data: &[u8]) -> bool {
        self.program.filter(data)
    }
}

/// Compiles `expression` on `cap`'s link type, so that a mistake is reported against
/// the user's own words rather than the combined kernel filter.
pub fn compile<T: Activated + ?Sized>(
    cap: &Capture<T>,
    expression: &str,
) -> Result<BpfProgram, CaptureError> {
    let program = cap
        .compile(expression, true)
        .map_err(|e| invalid(expression, e))?;
    tracing::info!(expression, "filter expression compiled");
    Ok(program)
}

/// The live kernel filter: portsniff's own selection, narrowed by the user's expression.
/// Both sides are parenthesised: `or` binds looser than `and` in pcap-filter.
pub fn combine(own: &str, user: Option<&str>) -> String {
    match user {
        Some(user) => format!("({own}) and ({user})"),
        None => own.to_string(),
    }
}

fn invalid(expression: &str, source: pcap::Error) -> CaptureError {
    CaptureError::Expression {
        expression: expression.to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet frame carrying IPv4 TCP from 127.0.0.1:40000 to 127.0.0.2:61999.
    fn frame() -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12] = 0x08; // EtherType IPv4
        let mut ip = vec![
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 127, 0, 0, 1, 127, 0, 0, 2,
        ];
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&61999u16.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x02; // SYN
        f.append(&mut ip);
        f.append(&mut tcp);
        f
    }

    #[test]
    fn an_expression_keeps_the_packets_it_names_and_rejects_the_others() {
        let ethernet = Linktype(1);
        let f = frame();
        for (expr, kept) in [
            ("host 127.0.0.2", true),
            ("src port 40000", true),
            ("tcp[tcpflags] & tcp-syn != 0", true),
            ("host 127.0.0.3", false),
            ("udp", false),
            ("dst port 40000", false),
        ] {
            let filter = UserFilter::for_link(expr, ethernet).unwrap();
            assert_eq!(filter.matches(&f), kept, "{expr}");
        }
    }

    #[test]
    fn an_invalid_expression_names_itself_and_libpcaps_reason() {
        let err = UserFilter::for_link("tcp and (", Linktype(1)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"tcp and (\""), "{msg}");
        // libpcap's own words: "can't parse filter expression: syntax error".
        assert!(msg.contains("syntax error"), "{msg}");
    }

    #[test]
    fn the_kernel_filter_keeps_portsniffs_selection_and_the_users_apart() {
        assert_eq!(
            combine("tcp port 1 or icmp", Some("host a or host b")),
            "(tcp port 1 or icmp) and (host a or host b)"
        );
        assert_eq!(combine("tcp port 1", None), "tcp port 1");
    }
}
