//! De-duplication before the sinks: identical alerts (same rule, container, severity and
//! subject: the executable or destination, else the message) inside a window are one record.
//! The first goes out at once; the repeats are folded into one record emitted when the
//! window ends, with `count` = the repeats, so the counts in the alerts log add up to the
//! alerts raised. Control alerts (an auto-pause, a quarantine) are never folded.
use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};

use serde_json::json;
use tokio::time::Instant;

use crate::{
    model::alert::{Alert, Severity},
    policy::repeats::act_key,
};

/// Default window (`--dedup-window`).
pub(crate) const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// Open windows at most: past it, a new distinct alert goes out unfolded and untracked (a
/// flood of distinct alerts has nothing to fold, and the memory stays bounded).
const MAX_OPEN: usize = 4096;

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
    /// When each window ends, in the order they opened (so in time order: the window is
    /// fixed): the next deadline is the front, and closing what is due pops from the front,
    /// never a scan of every open window (a flood of distinct alerts opens one per alert).
    /// An entry whose window was closed early (see [`Dedup::admit`]) is skipped.
    ends: VecDeque<(Instant, Key)>,
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
            ends: VecDeque::new(),
        }
    }

    /// What to send now, in order: nothing when the alert is a repeat folded into its
    /// window; else the alert, after the folded record of its previous window when that
    /// ended but was not closed yet (it is never overwritten: the counts add up).
    pub(crate) fn admit(&mut self, alert: Alert, now: Instant) -> Vec<Alert> {
        if self.window.is_zero() || alert.control.follow_up || alert.control.quarantine {
            return vec![alert];
        }
        let key = key_of(&alert);
        let mut out = Vec::new();
        if let Some(open) = self.open.get_mut(&key) {
            if now < open.ends {
                open.repeats += alert.count.max(1);
                open.last = Some(alert);
                return out;
            }
            out.extend(
                self.open
                    .remove(&key)
                    .and_then(|ended| folded(ended, self.window)),
            );
        }
        if self.open.len() >= MAX_OPEN {
            out.push(alert);
            return out;
        }
        let ends = now + self.window;
        self.ends.push_back((ends, key.clone()));
        self.open.insert(
            key,
            Open {
                ends,
                first_id: alert.id.clone(),
                repeats: 0,
                last: None,
            },
        );
        out.push(alert);
        out
    }

    /// When the next window ends (to wake up and emit its folded record).
    pub(crate) fn next_end(&self) -> Option<Instant> {
        self.ends.front().map(|(ends, _)| *ends)
    }

    /// Close the windows that ended by `now`: one folded record for each that repeated.
    pub(crate) fn close_due(&mut self, now: Instant) -> Vec<Alert> {
        let mut out = Vec::new();
        while self.ends.front().is_some_and(|(ends, _)| *ends <= now) {
            let Some((ends, key)) = self.ends.pop_front() else {
                break;
            };
            // Still the same window (not closed early and re-opened by `admit`).
            if self.open.get(&key).is_some_and(|open| open.ends == ends) {
                out.extend(
                    self.open
                        .remove(&key)
                        .and_then(|open| folded(open, self.window)),
                );
            }
        }
        // In the order they were raised (ids sort by time).
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Close every window (the agent is stopping: nothing is lost).
    pub(crate) fn close_all(&mut self) -> Vec<Alert> {
        self.ends.clear();
        let window = self.window;
        let mut out: Vec<Alert> = self
            .open
            .drain()
            .filter_map(|(_, open)| folded(open, window))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
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
            .pop()
            .expect("the first goes out at once");
        assert_eq!(first.count, 1);
        for i in 2..=5 {
            let at = start + Duration::from_secs(u64::from(i));
            assert!(dedup.admit(shell(i), at).is_empty(), "repeat {i} is folded");
        }
        // Another executable, another container, another severity: not the same alert.
        let nc = shell(6).with("executable", "nc");
        assert!(dedup.admit(nc, start).len() == 1);
        let mut other = shell(7);
        other.container = "other".into();
        assert!(dedup.admit(other, start).len() == 1);
        let mut warning = shell(8);
        warning.severity = Severity::Warning;
        assert!(dedup.admit(warning, start).len() == 1);
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
        assert!(dedup.admit(shell(9), start + Duration::from_secs(11)).len() == 1);
    }

    #[test]
    fn control_alerts_and_a_zero_window_are_never_folded() {
        let start = Instant::now();
        let mut off = Dedup::new(Duration::ZERO);
        assert!(off.admit(shell(1), start).len() == 1);
        assert!(off.admit(shell(1), start).len() == 1);
        let mut dedup = Dedup::new(Duration::from_secs(10));
        let pause = || Alert::new(Severity::Critical, AlertSource::Policy, "paused").follow_up();
        assert!(dedup.admit(pause(), start).len() == 1);
        assert!(dedup.admit(pause(), start).len() == 1);
        let quarantine = || Alert::new(Severity::Critical, AlertSource::Policy, "q").quarantine();
        assert!(dedup.admit(quarantine(), start).len() == 1);
        assert!(dedup.admit(quarantine(), start).len() == 1);
    }

    #[test]
    fn stopping_emits_every_open_fold() {
        let mut dedup = Dedup::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(dedup.admit(shell(1), start).len(), 1);
        assert!(dedup.admit(shell(2), start).is_empty());
        let folded = dedup.close_all();
        assert_eq!(folded.len(), 1);
        assert_eq!(folded[0].count, 1);
    }

    #[test]
    fn an_ended_window_not_yet_closed_is_emitted_before_the_next_first() {
        let mut dedup = Dedup::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(dedup.admit(shell(1), start).len(), 1);
        assert!(
            dedup
                .admit(shell(2), start + Duration::from_secs(1))
                .is_empty()
        );
        // The window ended, nobody closed it yet, and the same alert comes again.
        let out = dedup.admit(shell(3), start + Duration::from_secs(12));
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!((out[0].count, &out[0].details["pid"]), (1, &json!(2)));
        assert_eq!((out[1].count, &out[1].details["pid"]), (1, &json!(3)));
        // The stale deadline of the closed window folds nothing; the new one is next.
        assert_eq!(dedup.next_end(), Some(start + Duration::from_secs(10)));
        assert!(dedup.close_due(start + Duration::from_secs(11)).is_empty());
        assert_eq!(dedup.next_end(), Some(start + Duration::from_secs(22)));
    }

    #[test]
    fn many_distinct_alerts_close_in_time_order() {
        let mut dedup = Dedup::new(Duration::from_secs(10));
        let start = Instant::now();
        for pid in 0..4_000u32 {
            let at = start + Duration::from_millis(u64::from(pid));
            let distinct = shell(pid).with("executable", format!("prog{pid}"));
            assert_eq!(dedup.admit(distinct.clone(), at).len(), 1);
            assert!(dedup.admit(distinct, at).is_empty());
        }
        assert_eq!(dedup.next_end(), Some(start + Duration::from_secs(10)));
        let folded = dedup.close_due(start + Duration::from_millis(11_999));
        assert_eq!(folded.len(), 2_000);
        assert_eq!(folded.iter().map(|a| a.count).sum::<u64>(), 2_000);
        assert_eq!(dedup.close_all().len(), 2_000);
        assert_eq!(dedup.next_end(), None);
    }

    #[test]
    fn past_the_open_window_bound_alerts_go_out_unfolded() {
        let mut dedup = Dedup::new(Duration::from_secs(10));
        let start = Instant::now();
        for pid in 0..MAX_OPEN as u32 {
            let distinct = shell(pid).with("executable", format!("prog{pid}"));
            assert_eq!(dedup.admit(distinct, start).len(), 1);
        }
        let extra = || shell(0).with("executable", "one-more");
        assert_eq!(dedup.admit(extra(), start).len(), 1);
        assert_eq!(
            dedup.admit(extra(), start).len(),
            1,
            "not tracked: not folded"
        );
    }
}
