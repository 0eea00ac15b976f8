//! What a diagnosis capture printed ([`Report`]: its flow, finding and summary lines), with
//! assertions whose failure messages carry the whole output.

use super::{KINDS, ROLES, SEVERITIES};
use crate::support::live::{client_port, flows, summary, Finished, Line};
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// The text twin of a capture: the command (as a user would type it, without the
/// namespace) and what it printed.
pub struct Recipe {
    pub command: String,
    pub output: String,
}

/// What portsniff printed, with assertions whose messages carry all of it.
pub struct Report {
    pub run: Finished,
    pub lines: Vec<(Line, Value)>,
    pub out: String,
    /// With [`Capture::with_text`]: the text report of the same traffic.
    pub text: Option<Recipe>,
}

impl Report {
    /// portsniff's whole stdout and stderr, for assertion messages.
    pub fn context(&self) -> String {
        format!(
            "portsniff exited with {:?}\n--- portsniff stdout ---\n{}\n--- portsniff stderr ---\n{}",
            self.run.status, self.out, self.run.stderr
        )
    }

    /// The one summary line, which must be the last line.
    pub fn summary(&self) -> &Value {
        summary(&self.lines, &self.context())
    }

    /// Every flow record (pending notices and final records).
    pub fn flows(&self) -> Vec<&Value> {
        flows(&self.lines).into_iter().map(|(_, v)| v).collect()
    }

    /// The final flow records.
    pub fn finals(&self) -> Vec<&Value> {
        self.flows()
            .into_iter()
            .filter(|v| v["final"] == true)
            .collect()
    }

    /// Every flow record (pending and final) of the client on `port`.
    pub fn flows_from(&self, port: u16) -> Vec<&Value> {
        self.flows()
            .into_iter()
            .filter(|v| client_port(v) == Some(port))
            .collect()
    }

    /// The final records of the client on `port`, in order.
    pub fn finals_from(&self, port: u16) -> Vec<&Value> {
        self.finals()
            .into_iter()
            .filter(|v| client_port(v) == Some(port))
            .collect()
    }

    /// The one final record of the client on `port`.
    pub fn one_final_from(&self, port: u16, what: &str) -> &Value {
        let found = self.finals_from(port);
        assert_eq!(
            found.len(),
            1,
            "{what}: expected exactly one final flow record for client port {port}, portsniff \
             printed {}\n{}",
            found.len(),
            self.context()
        );
        found[0]
    }

    /// Asserts the final outcome of the client on `port`.
    pub fn assert_outcome(&self, port: u16, outcome: &str, what: &str) -> &Value {
        let f = self.one_final_from(port, what);
        assert_eq!(
            f["outcome"],
            outcome,
            "{what}: the connection from client port {port} should end {outcome:?}, portsniff \
             said {}: {f}\n{}",
            f["outcome"],
            self.context()
        );
        f
    }

    pub fn assert_exit(&self, code: i32, why: &str) {
        assert_eq!(
            self.run.code(),
            Some(code),
            "{why}, so portsniff should exit with status {code}\n{}",
            self.context()
        );
    }

    /// Every finding line, in output order, each checked against the schema.
    pub fn finding_lines(&self) -> Vec<&Value> {
        let found: Vec<&Value> = self
            .lines
            .iter()
            .map(|(_, v)| v)
            .filter(|v| v["type"] == "finding")
            .collect();
        for f in &found {
            self.check_shape(f);
        }
        found
    }

    /// The findings, one per kind (its last occurrence: a live finding may be printed early
    /// and again in the final list), ranked as portsniff ranked them (the order of those
    /// last occurrences, which is the order of the final list).
    pub fn findings(&self) -> Vec<&Value> {
        let all = self.finding_lines();
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, f) in all.iter().enumerate() {
            last.insert(f["kind"].as_str().unwrap_or(""), i);
        }
        let mut idx: Vec<usize> = last.into_values().collect();
        idx.sort_unstable();
        idx.into_iter().map(|i| all[i]).collect()
    }

    pub fn kinds(&self) -> Vec<String> {
        self.findings()
            .iter()
            .map(|f| f["kind"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    /// The finding of `kind`; panics (with every finding and the whole output) if absent.
    pub fn finding(&self, kind: &str) -> &Value {
        self.findings()
            .into_iter()
            .find(|f| f["kind"] == kind)
            .unwrap_or_else(|| {
                panic!(
                    "portsniff should report a finding of kind {kind:?}; it reported {:?}\n{}",
                    self.kinds(),
                    self.context()
                )
            })
    }

    /// `kind` must be the top-ranked (most likely) finding.
    pub fn assert_top(&self, kind: &str) {
        let kinds = self.kinds();
        assert_eq!(
            kinds.first().map(String::as_str),
            Some(kind),
            "the most likely cause here is {kind:?}, so it should be ranked first; portsniff \
             ranked {kinds:?}\n{}",
            self.context()
        );
    }

    /// `kind` must not be reported at all (it would be a wrong diagnosis here).
    pub fn assert_absent(&self, kind: &str, why: &str) {
        let kinds = self.kinds();
        assert!(
            !kinds.iter().any(|k| k == kind),
            "portsniff reported {kind:?}, which is wrong here: {why}. Findings: {kinds:?}\n{}",
            self.context()
        );
    }

    /// If `lower` is reported at all, it must rank below `higher`.
    pub fn assert_ranked_above(&self, higher: &str, lower: &str) {
        let kinds = self.kinds();
        let h = kinds.iter().position(|k| k == higher);
        let l = kinds.iter().position(|k| k == lower);
        if let Some(l) = l {
            assert!(
                h.is_some_and(|h| h < l),
                "{higher:?} is the more likely cause, so it should rank above {lower:?}; \
                 portsniff ranked {kinds:?}\n{}",
                self.context()
            );
        }
    }

    pub fn assert_severity(&self, f: &Value, allowed: &[&str]) {
        let sev = f["severity"].as_str().unwrap_or("");
        assert!(
            allowed.contains(&sev),
            "the {} finding should have severity {}, it has {}: {f}\n{}",
            f["kind"],
            allowed.join(" or "),
            f["severity"],
            self.context()
        );
    }

    /// `evidence.KEY` as an unsigned integer; panics if missing or not one.
    pub fn evidence_u64(&self, f: &Value, key: &str) -> u64 {
        f["evidence"][key].as_u64().unwrap_or_else(|| {
            panic!(
                "the {} finding should carry evidence.{key} as a non-negative integer, it has \
                 {}: {f}\n{}",
                f["kind"],
                f["evidence"][key],
                self.context()
            )
        })
    }

    /// `evidence.KEY` as a string; panics if missing or not one.
    pub fn evidence_str<'a>(&self, f: &'a Value, key: &str) -> &'a str {
        f["evidence"][key].as_str().unwrap_or_else(|| {
            panic!(
                "the {} finding should carry evidence.{key} as a string, it has {}: {f}\n{}",
                f["kind"],
                f["evidence"][key],
                self.context()
            )
        })
    }

    /// The finding names process `pid` (started by the test with `marker` in its command
    /// line) in `role`.
    pub fn assert_names_process(&self, f: &Value, pid: u32, role: &str, marker: &str) {
        let procs = f["processes"].as_array().cloned().unwrap_or_default();
        let p = procs
            .iter()
            .find(|p| p["pid"].as_u64() == Some(u64::from(pid)))
            .unwrap_or_else(|| {
                panic!(
                    "the {} finding should name process {pid} (the {role} the test started), \
                     its processes are {}: {f}\n{}",
                    f["kind"],
                    f["processes"],
                    self.context()
                )
            });
        assert_eq!(
            p["role"],
            role,
            "the {} finding should give process {pid} the role {role:?}: {p}\n{}",
            f["kind"],
            self.context()
        );
        assert!(
            p["name"].as_str().is_some_and(|n| n.starts_with("python3")),
            "process {pid} is a python3 process, the {} finding names it {}: {p}\n{}",
            f["kind"],
            p["name"],
            self.context()
        );
        assert!(
            p["cmdline"].as_str().is_some_and(|c| c.contains(marker)),
            "process {pid}'s command line contains {marker:?}, the {} finding shows {}: {p}\n{}",
            f["kind"],
            p["cmdline"],
            self.context()
        );
    }

    /// When the first finding line of `kind` arrived (a live finding is printed again in
    /// the final list; this is its first print).
    pub fn first_printed(&self, kind: &str) -> Option<SystemTime> {
        self.lines
            .iter()
            .find(|(_, v)| v["type"] == "finding" && v["kind"] == kind)
            .map(|(line, _)| line.arrived)
    }

    /// Every kind in the final diagnosis was printed live first (a `"final":false` line),
    /// as a user watching without `--duration` needs: the final diagnosis only repeats
    /// and ranks. Two kinds are about the whole capture and wait for its end:
    /// `partial_view`, and `no_traffic` (10 s without a connection).
    pub fn assert_final_findings_were_told_live(&self) {
        let live: Vec<&str> = self
            .lines
            .iter()
            .filter(|(_, v)| v["type"] == "finding" && v["final"] == false)
            .filter_map(|(_, v)| v["kind"].as_str())
            .collect();
        for (_, v) in &self.lines {
            let Some(kind) = v["kind"].as_str() else {
                continue;
            };
            if v["type"] != "finding"
                || v["final"] != true
                || matches!(kind, "partial_view" | "no_traffic")
            {
                continue;
            }
            assert!(
                live.contains(&kind),
                "the final {kind:?} finding was never printed live, while the capture ran: a \
                 user watching would have had to stop portsniff to learn it\n{}",
                self.context()
            );
        }
    }

    /// `kind` was printed live: its first line arrived within `bound` of `staged` (when
    /// the test made its cause, or the capture began) and before `stopped` (when
    /// portsniff's `--duration` ran out, or the test stopped it), as a user watching
    /// the stream would see it.
    pub fn assert_printed_live(
        &self,
        kind: &str,
        staged: SystemTime,
        bound: Duration,
        stopped: SystemTime,
    ) -> Duration {
        let at = self.first_printed(kind).unwrap_or_else(|| {
            panic!(
                "portsniff should print a {kind:?} finding; it printed {:?}\n{}",
                self.kinds(),
                self.context()
            )
        });
        let after = at.duration_since(staged).unwrap_or_default();
        assert!(
            after <= bound,
            "the {kind:?} finding should be printed within {bound:?} of its cause, it came \
             {after:?} after\n{}",
            self.context()
        );
        assert!(
            at < stopped,
            "the {kind:?} finding should be printed while portsniff still captures, not \
             only in the final diagnosis; it came {:?} after the capture stopped\n{}",
            at.duration_since(stopped).unwrap_or_default(),
            self.context()
        );
        after
    }

    /// Checks one finding line against the schema in the feature's description.
    fn check_shape(&self, f: &Value) {
        let ctx = || format!("finding line: {f}\n{}", self.context());
        let kind = f["kind"].as_str().unwrap_or("");
        assert!(
            KINDS.contains(&kind),
            "a finding has an unknown kind {}; known kinds are {KINDS:?}\n{}",
            f["kind"],
            ctx()
        );
        let sev = f["severity"].as_str().unwrap_or("");
        assert!(
            SEVERITIES.contains(&sev),
            "a finding's severity must be one of {SEVERITIES:?}, it is {}\n{}",
            f["severity"],
            ctx()
        );
        for key in ["headline", "explanation", "next_step"] {
            assert!(
                f[key].as_str().is_some_and(|s| !s.trim().is_empty()),
                "a finding must carry a non-empty string {key:?}, it has {}\n{}",
                f[key],
                ctx()
            );
        }
        assert!(
            f["evidence"].is_object(),
            "a finding's evidence must be an object, it is {}\n{}",
            f["evidence"],
            ctx()
        );
        let procs = f["processes"].as_array().unwrap_or_else(|| {
            panic!(
                "a finding's processes must be an array, it is {}\n{}",
                f["processes"],
                ctx()
            )
        });
        for p in procs {
            assert!(
                p["pid"].as_u64().is_some_and(|pid| pid > 0)
                    && p["name"].is_string()
                    && p["cmdline"].is_string()
                    && p["user"].is_string()
                    && ROLES.contains(&p["role"].as_str().unwrap_or("")),
                "each process must have pid (positive integer), name, cmdline, user (strings) \
                 and role (one of {ROLES:?}); got {p}\n{}",
                ctx()
            );
        }
    }
}
