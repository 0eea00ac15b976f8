//! IPv6 on loopback: a refused `[::1]` connection, reported with its IPv6 endpoints and
//! the kernel's word on its packets (the witness reads IPv6 headers apart from IPv4's).

use crate::*;

#[test]
fn live_ipv6_refused_on_loopback() {
    const TEST: &str = "live_ipv6_refused_on_loopback";
    if !have_root(TEST) {
        return;
    }
    let reserved = match ReservedPort::on(Ipv6Addr::LOCALHOST.into()) {
        Ok(r) => r,
        Err(e) => {
            skip(
                TEST,
                &format!("::1 is not configured on lo (bind [::1]:0 failed: {e})"),
            );
            return;
        }
    };
    let port = reserved.port();
    let server = reserved.addr;

    let mut sniffer = Sniffer::spawn(live_command(port, &[]), "portsniff -i lo (IPv6)");
    sniffer.wait_for_banner();
    let (client, res) = connect_from_known_port(server);
    match res {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
        other => panic!("test setup: connect to {server} with no listener should fail with ECONNREFUSED, got {other:?}"),
    }
    std::thread::sleep(SETTLE);
    sniffer.interrupt();
    let run = sniffer.wait_exit(EXIT_TIMEOUT);
    let lines = run.json();
    let out = run.stdout_text();
    drop(reserved);
    assert_no_capture_loss(summary(&lines, &out), &out);

    let f = one_final(&lines, client, "IPv6 connect with nothing listening", &run);
    assert_eq!(
        f["client"],
        format!("[::1]:{client}"),
        "the IPv6 client should be shown as [::1]:PORT, portsniff showed {}: {f}\nall output:\n{out}",
        f["client"]
    );
    assert_eq!(
        f["server"],
        format!("[::1]:{port}"),
        "the IPv6 server should be shown as [::1]:PORT, portsniff showed {}: {f}\nall output:\n{out}",
        f["server"]
    );
    assert_eq!(
        f["outcome"], "refused",
        "connect() to [::1] got ECONNREFUSED, but portsniff reported outcome {}: {f}\nall output:\n{out}",
        f["outcome"]
    );
    assert_eq!(
        f["reset_by"], "server",
        "the refusal is the server host's RST, but portsniff said reset_by {}: {f}\nall output:\n{out}",
        f["reset_by"]
    );
    assert_eq!(
        f["history"], "Sr",
        "a refused connection is one SYN and one RST (history \"Sr\"), portsniff showed \
         {}: {f}\nall output:\n{out}",
        f["history"]
    );
    // The witness parsed the IPv6 SYN it dropped and the IPv6 RST TCP sent in reply.
    let s = summary(&lines, &out);
    assert_eq!(
        s["kernel_events"]["enabled"], true,
        "{}",
        s["kernel_events"]
    );
    let k = &f["kernel"];
    assert!(
        k["drops"].as_array().is_some_and(|d| d
            .iter()
            .any(|d| d["reason"] == "NO_SOCKET" && d["what"] == "SYN" && d["dir"] == "c2s")),
        "the kernel dropped the IPv6 SYN for want of a socket: {k}"
    );
    assert_eq!(
        (&k["resets_sent"][0]["by"], &k["resets_sent"][0]["origin"]),
        (&"server".into(), &"reply".into()),
        "the server host's TCP answered the IPv6 SYN with the RST: {k}"
    );
    assert_eq!(
        (&s["flows"], &s["problems"], &s["outcomes"]["refused"]),
        (&Value::from(1), &Value::from(1), &Value::from(1)),
        "the summary should count 1 flow, 1 problem, 1 refused: {s}"
    );
    assert_eq!(
        run.code(),
        Some(1),
        "a refused connection was seen, so the exit status should be 1, it was {:?}; \
         stderr:\n{}",
        run.status,
        run.stderr
    );
}
