//! Whether a text report's flow lines and its final findings tell one story. A flow line
//! states what one connection's packets (and, live, the kernel) showed; a finding weighs
//! them all with the machine's facts. Where the two can say opposite things, the wording
//! in `src/report/text.rs` (flow lines) and `src/diagnose/wording.rs` (findings) gives the
//! pairs below; a report that prints both sides of a pair contradicts itself.

/// One way a flow line and a final finding can contradict each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clash {
    /// A refused line says "nothing listens on" while a finding rests on a listener that
    /// was there (a REJECT rule in front of it, its full queue).
    NothingListensBesideAListener,
    /// A refused line blames a firewall rule while the only refusal finding says nothing
    /// listens (no rule).
    FirewallBesideNoListener,
    /// Every reset line says one side reset, the reset findings name only the other.
    ResetByTheOtherSide,
}

/// The flow lines' explanations and the final findings' kinds of a text report.
struct Told<'a> {
    lines: Vec<&'a str>,
    kinds: Vec<&'a str>,
}

fn read(text: &str) -> Told<'_> {
    let mut told = Told {
        lines: Vec::new(),
        kinds: Vec::new(),
    };
    let mut in_diagnosis = false;
    for line in text.lines() {
        if line == "Diagnosis" {
            in_diagnosis = true;
            continue;
        }
        if in_diagnosis {
            // `  1. [error] nothing_listening: …`
            let Some(rest) = line.trim_start().split_once(". [") else {
                continue;
            };
            if !rest.0.chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            if let Some(kind) = rest
                .1
                .split_once("] ")
                .and_then(|(_, k)| k.split(':').next())
            {
                told.kinds.push(kind);
            }
        } else if !line.starts_with(' ') && line.contains(" → ") {
            told.lines.push(line);
        }
    }
    told
}

/// Every pair of a flow line and a final finding in `text` (portsniff's text report) that
/// contradict each other, each with the line or kinds that clash.
pub fn contradictions(text: &str) -> Vec<(Clash, String)> {
    let told = read(text);
    let has = |kind: &str| told.kinds.contains(&kind);
    let lines_with = |words: &str| -> Vec<&str> {
        told.lines
            .iter()
            .copied()
            .filter(|l| l.contains(words))
            .collect()
    };
    let mut out = Vec::new();
    let nothing = lines_with("nothing listens on");
    for kind in ["rejected_by_firewall", "accept_queue_full"] {
        if let (Some(line), true) = (nothing.first(), has(kind)) {
            out.push((
                Clash::NothingListensBesideAListener,
                format!("{line}\nbeside the finding {kind}"),
            ));
        }
    }
    let firewall = lines_with("from a firewall REJECT rule");
    if let (Some(line), true, false) = (
        firewall.first(),
        has("nothing_listening"),
        has("rejected_by_firewall"),
    ) {
        out.push((
            Clash::FirewallBesideNoListener,
            format!("{line}\nbeside nothing_listening and no rejected_by_firewall"),
        ));
    }
    let by_server = lines_with("reset by the server");
    let by_client = lines_with("reset by the client");
    for (lines, other, theirs, ours) in [
        (&by_server, &by_client, "reset_by_client", "reset_by_server"),
        (&by_client, &by_server, "reset_by_server", "reset_by_client"),
    ] {
        if let (Some(line), true, true, false) =
            (lines.first(), other.is_empty(), has(theirs), has(ours))
        {
            out.push((
                Clash::ResetByTheOtherSide,
                format!("{line}\nbeside {theirs} and no {ours}"),
            ));
        }
    }
    out
}

/// Panics, with the whole report, if its flow lines and final findings contradict each
/// other.
pub fn assert_agreement(text: &str, what: &str) {
    let found = contradictions(text);
    assert!(
        found.is_empty(),
        "{what}: a flow line contradicts a final finding: {:?}\n--- report ---\n{text}",
        found
    );
}
