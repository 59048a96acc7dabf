//! Failed exec attempts of denylisted names, summarised: a PATH lookup tries one file per
//! directory and only one (or none) runs, so each attempt is not an alert. What ran is judged
//! by the successful exec; a name that never ran is one INFO record per process and name,
//! once its attempts have settled.
use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use crate::model::alert::{Alert, AlertSource, Severity};

/// How long after its last failed attempt a name is reported (a PATH walk takes
/// microseconds; this leaves room for the success that would make it moot).
pub(crate) const SETTLE: Duration = Duration::from_millis(300);
/// Paths kept per summary.
const MAX_PATHS: usize = 8;
/// Pending and reported entries kept before the oldest state is dropped.
const MAX_ENTRIES: usize = 4096;

#[derive(Debug)]
struct Attempts {
    last: Instant,
    errno: i32,
    tries: u32,
    paths: Vec<String>,
    category: &'static str,
    comm: String,
    uid: u32,
}

/// One failed attempt, as the kernel reported it.
pub(crate) struct Failure<'a> {
    pub tgid: u32,
    pub name: &'a str,
    pub category: &'static str,
    pub path: &'a str,
    /// The negative errno.
    pub ret: i32,
    pub comm: &'a str,
    pub uid: u32,
}

#[derive(Debug, Default)]
pub(crate) struct ExecFailures {
    pending: HashMap<(u32, String), Attempts>,
    reported: HashSet<(u32, String)>,
}

/// The symbolic name of the errnos an exec commonly fails with.
pub(crate) fn errno_name(errno: i32) -> String {
    match errno {
        1 => "EPERM".into(),
        2 => "ENOENT".into(),
        7 => "E2BIG".into(),
        8 => "ENOEXEC".into(),
        13 => "EACCES".into(),
        20 => "ENOTDIR".into(),
        26 => "ETXTBSY".into(),
        40 => "ELOOP".into(),
        other => format!("errno {other}"),
    }
}

impl ExecFailures {
    /// Note a failed attempt; nothing is reported yet.
    pub(crate) fn failed(&mut self, failure: Failure<'_>, now: Instant) {
        let key = (failure.tgid, failure.name.to_string());
        if self.reported.contains(&key) {
            return;
        }
        if self.pending.len() >= MAX_ENTRIES {
            self.pending.clear();
        }
        let attempts = self.pending.entry(key).or_insert_with(|| Attempts {
            last: now,
            errno: -failure.ret,
            tries: 0,
            paths: Vec::new(),
            category: failure.category,
            comm: failure.comm.to_string(),
            uid: failure.uid,
        });
        attempts.last = now;
        attempts.errno = -failure.ret;
        attempts.tries += 1;
        if attempts.paths.len() < MAX_PATHS {
            attempts.paths.push(failure.path.to_string());
        }
    }

    /// `name` did run in `tgid`: its failed candidates are part of that exec. How many.
    pub(crate) fn succeeded(&mut self, tgid: u32, name: &str) -> u32 {
        self.pending
            .remove(&(tgid, name.to_string()))
            .map_or(0, |a| a.tries)
    }

    /// Summaries of the names whose attempts settled by `now`.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<Alert> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let settled: Vec<(u32, String)> = self
            .pending
            .iter()
            .filter(|(_, a)| now.duration_since(a.last) >= SETTLE)
            .map(|(key, _)| key.clone())
            .collect();
        if self.reported.len() + settled.len() > MAX_ENTRIES {
            self.reported.clear();
        }
        settled
            .into_iter()
            .filter_map(|key| {
                let attempts = self.pending.remove(&key)?;
                let alert = summary(key.0, &key.1, &attempts);
                self.reported.insert(key);
                Some(alert)
            })
            .collect()
    }
}

fn summary(tgid: u32, name: &str, attempts: &Attempts) -> Alert {
    let paths = if attempts.tries == 1 { "path" } else { "paths" };
    Alert::new(
        Severity::Info,
        AlertSource::Processes,
        format!(
            "exec of {name} failed ({}), tried {} {paths}: nothing ran",
            errno_name(attempts.errno),
            attempts.tries
        ),
    )
    .with("executable", name.to_string())
    .with("category", attempts.category)
    .with("exec_failed", true)
    .with("errno", attempts.errno)
    .with("tries", attempts.tries)
    .with("paths", serde_json::json!(attempts.paths))
    .with("pid", tgid)
    .with("comm", attempts.comm.clone())
    .with("uid", attempts.uid)
    .with("detected_by", "ebpf")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail<'a>(tgid: u32, name: &'a str, path: &'a str) -> Failure<'a> {
        Failure {
            tgid,
            name,
            category: "scripting runtime",
            path,
            ret: -2,
            comm: "env",
            uid: 0,
        }
    }

    #[test]
    fn a_path_walk_that_finds_nothing_is_one_record() {
        let mut failures = ExecFailures::default();
        let t0 = Instant::now();
        for path in ["/a/perl", "/b/perl", "/c/perl"] {
            failures.failed(fail(7, "perl", path), t0);
        }
        assert!(failures.due(t0).is_empty(), "not settled yet");
        let later = t0 + SETTLE;
        let alerts = failures.due(later);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].severity, Severity::Info);
        assert_eq!(
            alerts[0].message,
            "exec of perl failed (ENOENT), tried 3 paths: nothing ran"
        );
        assert_eq!(alerts[0].details["paths"][2], "/c/perl");
        // The same process trying again is not reported again.
        failures.failed(fail(7, "perl", "/d/perl"), later);
        assert!(failures.due(later + SETTLE).is_empty());
        // Another process is.
        failures.failed(fail(8, "perl", "/a/perl"), later);
        assert_eq!(failures.due(later + SETTLE).len(), 1);
    }

    #[test]
    fn a_path_walk_that_succeeds_leaves_no_record() {
        let mut failures = ExecFailures::default();
        let t0 = Instant::now();
        failures.failed(fail(7, "sh", "/nope1/sh"), t0);
        failures.failed(fail(7, "sh", "/nope2/sh"), t0);
        assert_eq!(failures.succeeded(7, "sh"), 2);
        assert_eq!(failures.succeeded(7, "sh"), 0);
        assert!(failures.due(t0 + SETTLE).is_empty());
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(2), "ENOENT");
        assert_eq!(errno_name(13), "EACCES");
        assert_eq!(errno_name(99), "errno 99");
    }
}
