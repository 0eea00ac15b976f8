//! What libpcap says about itself and the machine, for `--version` and `-D`: its version
//! string, and the interfaces it can capture on in tcpdump's `-D` format. Nothing here
//! opens a capture.

use super::CaptureError;
use pcap::{ConnectionStatus, Device, IfFlags};
use std::ffi::{c_char, CStr};

extern "C" {
    // Not wrapped by the `pcap` crate; libpcap is linked by it already.
    fn pcap_lib_version() -> *const c_char;
}

/// libpcap's own description of itself, e.g. `libpcap version 1.10.3 (with TPACKET_V3)`:
/// the library the binary runs on, which may differ from the one it was built against.
pub fn libpcap_version() -> String {
    // SAFETY: pcap_lib_version takes no argument and returns a pointer to a static,
    // NUL-terminated string that lives as long as the library (pcap(3PCAP)).
    let ptr = unsafe { pcap_lib_version() };
    if ptr.is_null() {
        return "libpcap (version unknown)".to_string();
    }
    // SAFETY: non-null, NUL-terminated and static, as above; only read here.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// The capture interfaces, one line each, numbered from 1 as `tcpdump -D` prints them:
/// `1.eth0 [Up, Running, Connected]`.
pub fn interface_lines() -> Result<Vec<String>, CaptureError> {
    let devices = Device::list().map_err(|source| CaptureError::List { source })?;
    Ok(devices
        .iter()
        .enumerate()
        .map(|(i, d)| interface_line(i + 1, d))
        .collect())
}

/// One `-D` line, as tcpdump's `show_devices_and_exit` writes it: the description in
/// parentheses, then the flags in brackets when libpcap set any (its connection status
/// counts: `none` is what tcpdump prints for a status with no printable flag).
fn interface_line(number: usize, d: &Device) -> String {
    let mut line = format!("{number}.{}", d.name);
    if let Some(desc) = &d.desc {
        line.push_str(&format!(" ({desc})"));
    }
    let flags = d.flags.if_flags;
    let status = &d.flags.connection_status;
    if flags.is_empty() && *status == ConnectionStatus::Unknown {
        return line;
    }
    let mut words: Vec<&str> = [
        (IfFlags::UP, "Up"),
        (IfFlags::RUNNING, "Running"),
        (IfFlags::LOOPBACK, "Loopback"),
        (IfFlags::WIRELESS, "Wireless"),
    ]
    .iter()
    .filter(|(f, _)| flags.contains(*f))
    .map(|(_, w)| *w)
    .collect();
    if words.is_empty() {
        words.push("none");
    }
    let wireless = flags.contains(IfFlags::WIRELESS);
    let connection = match (status, wireless) {
        (ConnectionStatus::Unknown, false) => Some("Connection status unknown"),
        (ConnectionStatus::Connected, false) => Some("Connected"),
        (ConnectionStatus::Disconnected, false) => Some("Disconnected"),
        (ConnectionStatus::Unknown, true) => Some("Association status unknown"),
        (ConnectionStatus::Connected, true) => Some("Associated"),
        (ConnectionStatus::Disconnected, true) => Some("Not associated"),
        (ConnectionStatus::NotApplicable, _) => None,
    };
    words.extend(connection);
    format!("{line} [{}]", words.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap::DeviceFlags;

    fn device(name: &str, desc: Option<&str>, flags: IfFlags, status: ConnectionStatus) -> Device {
        Device {
            name: name.to_string(),
            desc: desc.map(str::to_string),
            addresses: Vec::new(),
            flags: DeviceFlags {
                if_flags: flags,
                connection_status: status,
            },
        }
    }

    #[test]
    fn interface_lines_read_like_tcpdump_dash_d() {
        let up = IfFlags::UP | IfFlags::RUNNING;
        let cases = [
            (
                device("eth0", None, up, ConnectionStatus::Connected),
                "1.eth0 [Up, Running, Connected]",
            ),
            (
                device(
                    "any",
                    Some("Pseudo-device that captures on all interfaces"),
                    up,
                    ConnectionStatus::NotApplicable,
                ),
                "1.any (Pseudo-device that captures on all interfaces) [Up, Running]",
            ),
            (
                device(
                    "lo",
                    None,
                    up | IfFlags::LOOPBACK,
                    ConnectionStatus::NotApplicable,
                ),
                "1.lo [Up, Running, Loopback]",
            ),
            (
                device(
                    "ifb0",
                    None,
                    IfFlags::empty(),
                    ConnectionStatus::NotApplicable,
                ),
                "1.ifb0 [none]",
            ),
            (
                device(
                    "wlan0",
                    None,
                    IfFlags::WIRELESS | up,
                    ConnectionStatus::Disconnected,
                ),
                "1.wlan0 [Up, Running, Wireless, Not associated]",
            ),
            (
                device("eth1", None, IfFlags::UP, ConnectionStatus::Unknown),
                "1.eth1 [Up, Connection status unknown]",
            ),
            (
                device("x", None, IfFlags::empty(), ConnectionStatus::Unknown),
                "1.x",
            ),
        ];
        for (d, want) in cases {
            assert_eq!(interface_line(1, &d), want);
        }
    }

    #[test]
    fn the_libpcap_version_is_libpcaps_own_string() {
        assert!(
            libpcap_version().starts_with("libpcap version "),
            "{}",
            libpcap_version()
        );
    }
}
