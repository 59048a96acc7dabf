//! De-duplication before the sinks: identical alerts (same rule, container, severity and
//! subject: the executable or destination, else the message) inside a window are one record.
//! The first goes out at once; the repeats are folded into one record emitted when the
//! window ends, with `count` = the repeats, so the counts in the alerts log add up to the
//! alerts raised. Control alerts (an auto-pause, a quarantine) are never folded.
use std::{collections::HashMap, time::Duration};

use serde_json::json;
use tokio::time::Instant;

use crate::{
    model::alert::{Alert, Severity},
    policy::repeats::act_key,
};

/// Default window (`--dedup-window`).
pub(crate) const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// (rule, container, severity, subject).
type Key = (String, String, Severity, String);

struct Open {
    ends: Instant,
    first_id: String,
    repeats: u64,
    /// The latest repeat: the folded record is it, with the count.
    last: Option<Alert>,
}

pub(crate) struct Dedup {
    window: Duration,
    open: HashMap<Key, Open>,
}

fn key_of(alert: &Alert) -> Key {
    (
        alert.rule_name().to_string(),
        alert.container.clone(),
        alert.severity,
        act_key(alert).1,
    )
}

impl Dedup {
    /// A zero window disables de-duplication.
    pub(crate) fn new(window: Duration) -> Self {
        Dedup {
            window,
            open: HashMap::new(),
        }
    }

    /// The alert to send now, or `None` when it is a repeat folded into its window.
    pub(crate) fn admit(&mut self, alert: Alert, now: Instant) -> Option<Alert> {
        if self.window.is_zero() || alert.control.follow_up || alert.control.quarantine {
            return Some(alert);
        }
        let key = key_of(&alert);
        match self.open.get_mut(&key) {
            Some(open) if now < open.ends => {
                open.repeats += alert.count.max(1);
                open.last = Some(alert);
                None
            }
            _ => {
                self.open.insert(
                    key,
                    Open {
                        ends: now + self.window,
                        first_id: alert.id.clone(),
                        repeats: 0,
                        last: None,
                    },
                );
                Some(alert)
            }
        }
    }

    /// When the next window ends (to wake up and emit its folded record).
    pub(crate) fn next_end(&self) -> Option<Instant> {
        self.open.values().map(|open| open.ends).min()
    }

    /// Close the windows that ended by `now`: one folded record for each that repeated.
    pub(crate) fn close_due(&mut self, now: Instant) -> Vec<Alert> {
        self.close(|open| open.ends <= now)
    }

    /// Close every window (the agent is stopping: nothing is lost).
    pub(crate) fn close_all(&mut self) -> Vec<Alert> {
        self.close(|_| true)
    }

    fn close(&mut self, due: impl Fn(&Open) -> bool) -> Vec<Alert> {
        let keys: Vec<Key> = self
            .open
            .iter()
            .filter(|(_, open)| due(open))
            .map(|(key, _)| key.clone())
            .collect();
        let window = self.window;
        let mut folded: Vec<Alert> = keys
            .into_iter()
            .filter_map(|key| self.open.remove(&key))
            .filter_map(|open| folded(open, window))
            .collect();
        // In the order they were raised (ids sort by time).
        folded.sort_by(|a, b| a.id.cmp(&b.id));
        folded
    }
}

/// The record of a window's repeats: the latest, standing for all of them.
fn folded(open: Open, window: Duration) -> Option<Alert> {
    let mut alert = open.last?;
    let seconds = window.as_secs_f64();
    alert.message = format!(
        "{} (repeated {} more time(s) within {seconds} s)",
        alert.message, open.repeats
    );
    alert.count = open.repeats;
    Some(alert.with(
        "dedup",
        json!({"first_id": open.first_id, "window_seconds": seconds}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::alert::AlertSource;

    fn shell(pid: u32) -> Alert {
        Alert::new(
            Severity::Critical,
            AlertSource::Processes,
            format!("shell pid {pid}"),
        )
        .rule("process_denylisted")
        .with("executable", "sh")
        .with("pid", pid)
        .for_container("box", "id")
    }

    #[test]
    fn repeats_fold_into_one_record_whose_count_adds_up() {
        let mut dedup = Dedup::new(Duration::from_secs(10));
        let start = Instant::now();
        let first = dedup
            .admit(shell(1), start)
            .expect("the first goes out at once");
        assert_eq!(first.count, 1);
        for i in 2..=5 {
            let at = start + Duration::from_secs(u64::from(i));
            assert!(dedup.admit(shell(i), at).is_none(), "repeat {i} is folded");
        }
        // Another executable, another container, another severity: not the same alert.
        let nc = shell(6).with("executable", "nc");
        assert!(dedup.admit(nc, start).is_some());
        let mut other = shell(7);
        other.container = "other".into();
        assert!(dedup.admit(other, start).is_some());
        let mut warning = shell(8);
        warning.severity = Severity::Warning;
        assert!(dedup.admit(warning, start).is_some());
        assert_eq!(dedup.next_end(), Some(start + Duration::from_secs(10)));
        assert!(dedup.close_due(start + Duration::from_secs(9)).is_empty());
        let folded = dedup.close_due(start + Duration::from_secs(10));
        assert_eq!(folded.len(), 1, "only the window that repeated: {folded:?}");
        assert_eq!(folded[0].count, 4);
        assert_eq!(
            first.count + folded[0].count,
            5,
            "every raised alert counted"
        );
        assert_eq!(folded[0].details["pid"], 5, "the latest repeat");
        assert_eq!(folded[0].details["dedup"]["first_id"], first.id.as_str());
        assert!(folded[0].message.contains("repeated 4 more time(s)"));
        assert_eq!(dedup.next_end(), None);
        // After the window: a first again, at once.
        assert!(
            dedup
                .admit(shell(9), start + Duration::from_secs(11))
                .is_some()
        );
    }

    #[test]
    fn control_alerts_and_a_zero_window_are_never_folded() {
        let start = Instant::now();
        let mut off = Dedup::new(Duration::ZERO);
        assert!(off.admit(shell(1), start).is_some());
        assert!(off.admit(shell(1), start).is_some());
        let mut dedup = Dedup::new(Duration::from_secs(10));
        let pause = || Alert::new(Severity::Critical, AlertSource::Policy, "paused").follow_up();
        assert!(dedup.admit(pause(), start).is_some());
        assert!(dedup.admit(pause(), start).is_some());
        let quarantine = || Alert::new(Severity::Critical, AlertSource::Policy, "q").quarantine();
        assert!(dedup.admit(quarantine(), start).is_some());
        assert!(dedup.admit(quarantine(), start).is_some());
    }

    #[test]
    fn stopping_emits_every_open_fold() {
        let mut dedup = Dedup::new(Duration::from_secs(10));
        let start = Instant::now();
        assert!(dedup.admit(shell(1), start).is_some());
        assert!(dedup.admit(shell(2), start).is_none());
        let folded = dedup.close_all();
        assert_eq!(folded.len(), 1);
        assert_eq!(folded[0].count, 1);
    }
}
