//! Listeners elsewhere: the other address family, another loopback address, another
//! network namespace, or nothing listening at all.

use crate::*;

#[test]
fn ipv6_only_listener_reached_on_ipv4() {
    const TEST: &str = "ipv6_only_listener_reached_on_ipv4";
    if !prerequisites(TEST, &["python3"]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = fresh_port();
    let has_v6 = ns
        .on_thread(|| TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok())
        .join()
        .expect("probe thread");
    if !has_v6 {
        live::skip(TEST, "::1 is not configured on lo in a new namespace");
        return;
    }
    let listener = spawn_listener(
        &ns,
        SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        128,
        true,
    );

    let capture = start_capture(&ns, port, 3, &[]).with_text(&ns);
    let cport = refused_client(&ns, v4([127, 0, 0, 1], port));
    let report = capture.finish();

    report.assert_outcome(cport, "refused", "IPv4 connect to an IPv6-only listener");
    report.assert_exit(1, "a refused connection was seen");

    let d = report.finding("listener_other_family");
    report.assert_severity(d, &["error"]);
    assert_eq!(
        report.evidence_str(d, "listener"),
        format!("[::1]:{port}"),
        "evidence.listener should be the IPv6-only listener: {d}\n{}",
        report.context()
    );
    assert_eq!(
        report.evidence_u64(d, "refused"),
        1,
        "evidence.refused should count the one refused connection: {d}\n{}",
        report.context()
    );
    report.assert_names_process(d, listener.pid(), "listener", LISTENER_MARK);
    report.assert_top("listener_other_family");
    report.assert_absent(
        "nothing_listening",
        "a process listens on the port, on [::1] with IPV6_V6ONLY",
    );
    check_recipe("ipv6-only-listener", &report, port);
}

#[test]
fn listener_on_another_loopback_address() {
    const TEST: &str = "listener_on_another_loopback_address";
    if !prerequisites(TEST, &["python3"]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = fresh_port();
    // lo answers for all of 127.0.0.0/8.
    let listener = spawn_listener(&ns, v4([127, 0, 0, 2], port), 128, false);

    let capture = start_capture(&ns, port, 3, &[]);
    let cport = refused_client(&ns, v4([127, 0, 0, 1], port));
    let report = capture.finish();

    report.assert_outcome(
        cport,
        "refused",
        "connect to 127.0.0.1 with a listener on 127.0.0.2",
    );
    report.assert_exit(1, "a refused connection was seen");

    let d = report.finding("listener_other_address");
    report.assert_severity(d, &["error"]);
    assert_eq!(
        report.evidence_str(d, "listener"),
        format!("127.0.0.2:{port}"),
        "evidence.listener should be the listener on 127.0.0.2: {d}\n{}",
        report.context()
    );
    report.assert_names_process(d, listener.pid(), "listener", LISTENER_MARK);
    report.assert_top("listener_other_address");
    report.assert_absent(
        "nothing_listening",
        "a process listens on the port, on 127.0.0.2",
    );
}

#[test]
fn listener_in_another_namespace() {
    const TEST: &str = "listener_in_another_namespace";
    if !prerequisites(TEST, &["python3"]) {
        return;
    }
    let Some(a) = Netns::create(TEST) else {
        return;
    };
    let Some(b) = Netns::create(TEST) else {
        return;
    };
    let port = fresh_port();
    let server = v4([127, 0, 0, 1], port);
    let listener = spawn_listener(&b, server, 128, false);

    let capture = start_capture(&a, port, 3, &[]);
    let cport = refused_client(&a, server);
    let report = capture.finish();

    report.assert_outcome(
        cport,
        "refused",
        "nothing listens in the client's namespace",
    );
    report.assert_exit(1, "a refused connection was seen");

    let d = report.finding("listener_other_namespace");
    report.assert_severity(d, &["error"]);
    let listener_addr = report.evidence_str(d, "listener");
    assert!(
        listener_addr.ends_with(&format!(":{port}")),
        "evidence.listener should be the listener in namespace {} on port {port}, it is \
         {listener_addr:?}: {d}\n{}",
        b.name,
        report.context()
    );
    let namespace = report.evidence_str(d, "namespace");
    assert!(
        !namespace.trim().is_empty(),
        "evidence.namespace should identify the listener's namespace ({}): {d}\n{}",
        b.name,
        report.context()
    );
    report.assert_names_process(d, listener.pid(), "listener", LISTENER_MARK);
    report.assert_top("listener_other_namespace");
    report.assert_ranked_above("listener_other_namespace", "nothing_listening");
}

#[test]
fn nothing_listening_when_refused_and_no_listener() {
    const TEST: &str = "nothing_listening_when_refused_and_no_listener";
    if !prerequisites(TEST, &[]) {
        return;
    }
    let Some(ns) = Netns::create(TEST) else {
        return;
    };
    let port = fresh_port();
    let capture = start_capture(&ns, port, 3, &[]).with_text(&ns);
    let cport = refused_client(&ns, v4([127, 0, 0, 1], port));
    let report = capture.finish();

    report.assert_outcome(cport, "refused", "connect with nothing listening");
    report.assert_exit(1, "a refused connection was seen");

    let d = report.finding("nothing_listening");
    report.assert_severity(d, &["error"]);
    assert_eq!(
        report.evidence_u64(d, "refused"),
        1,
        "evidence.refused should count the one refused connection: {d}\n{}",
        report.context()
    );
    report.assert_top("nothing_listening");
    check_recipe("refused-localhost", &report, port);
}
