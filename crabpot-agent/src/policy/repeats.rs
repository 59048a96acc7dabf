//! Repeats of one blocked act — the same rule and subject (destination, executable, mount
//! target) — within a window are one violation and one alert. A client that retries a
//! refused connect five times is one decision to review, not five; the repeats are counted
//! and summarised once when the window closes.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::model::alert::{Alert, Severity};

/// How long repeats of one act are folded into its first report.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);

/// What a blocked act is: its rule and what it was aimed at.
pub(crate) type ActKey = (String, String);

struct Open {
    since: Instant,
    repeats: u32,
    first: Alert,
}

#[derive(Default)]
pub(crate) struct Repeats {
    open: HashMap<ActKey, Open>,
}

/// The rule and subject of a violation's alert (details written by the judge).
pub(crate) fn act_key(alert: &Alert) -> ActKey {
    let text = |key: &str| match alert.details.get(key) {
        Some(Value::String(text)) => Some(text.clone()),
        Some(Value::Number(number)) => Some(number.to_string()),
        _ => None,
    };
    let rule = text("rule").unwrap_or_default();
    let subject = match (text("address"), text("port")) {
        (Some(address), Some(port)) => format!("{address}:{port}"),
        (Some(address), None) => address,
        _ => [
            "executable",
            "filename",
            "target",
            "fstype",
            "request",
            "family",
        ]
        .iter()
        .find_map(|key| text(key))
        .unwrap_or_else(|| alert.message.clone()),
    };
    (rule, subject)
}

impl Repeats {
    /// `true` when this is the first such act in the window (report it, count it); `false`
    /// for a repeat (counted here only).
    pub(crate) fn first(&mut self, alert: &Alert, now: Instant) -> bool {
        let key = act_key(alert);
        match self.open.get_mut(&key) {
            Some(open) if now.duration_since(open.since) < WINDOW => {
                open.repeats += 1;
                false
            }
            _ => {
                self.open.insert(
                    key,
                    Open {
                        since: now,
                        repeats: 0,
                        first: alert.clone(),
                    },
                );
                true
            }
        }
    }

    /// Close the windows that ended by `now`: one INFO summary for each act that repeated.
    pub(crate) fn close_expired(&mut self, now: Instant) -> Vec<Alert> {
        let ended: Vec<ActKey> = self
            .open
            .iter()
            .filter(|(_, open)| now.duration_since(open.since) >= WINDOW)
            .map(|(key, _)| key.clone())
            .collect();
        ended
            .into_iter()
            .filter_map(|key| {
                let open = self.open.remove(&key)?;
                (open.repeats > 0).then(|| summary(open, &key))
            })
            .collect()
    }

    /// Forget every open window (a new container instance).
    pub(crate) fn clear(&mut self) {
        self.open.clear();
    }
}

fn summary(open: Open, key: &ActKey) -> Alert {
    let message = format!(
        "{} — repeated {} more time(s) within {} s; counted as one violation",
        open.first.message,
        open.repeats,
        WINDOW.as_secs()
    );
    let mut alert = Alert::new(Severity::Info, open.first.source, message)
        .with("repeats", open.repeats)
        .with("count", open.repeats + 1)
        .with("subject", key.1.clone());
    for carried in [
        "rule",
        "verdict",
        "address",
        "port",
        "executable",
        "filename",
    ] {
        if let Some(value) = open.first.details.get(carried) {
            alert = alert.with(carried, value.clone());
        }
    }
    alert.rule = open.first.rule_name().to_string();
    alert.count = u64::from(open.repeats) + 1;
    alert
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::alert::AlertSource;

    fn blocked(address: &str, port: u16) -> Alert {
        Alert::new(Severity::Warning, AlertSource::Network, "connect blocked")
            .with("rule", "connect")
            .with("verdict", "blocked")
            .with("address", address)
            .with("port", port)
    }

    #[test]
    fn repeats_of_one_act_are_one_report_and_one_summary() {
        let mut repeats = Repeats::default();
        let start = Instant::now();
        assert!(repeats.first(&blocked("10.0.0.1", 53), start));
        for i in 1..5 {
            assert!(!repeats.first(&blocked("10.0.0.1", 53), start + Duration::from_secs(i)));
        }
        assert!(
            repeats.first(&blocked("10.0.0.1", 443), start),
            "another port"
        );
        assert!(
            repeats.first(&blocked("10.0.0.2", 53), start),
            "another address"
        );
        assert!(
            repeats
                .close_expired(start + Duration::from_secs(30))
                .is_empty()
        );
        let summaries = repeats.close_expired(start + WINDOW);
        assert_eq!(summaries.len(), 1, "only the act that repeated");
        assert_eq!(summaries[0].details["repeats"], 4);
        assert_eq!(summaries[0].details["count"], 5);
        assert_eq!(summaries[0].severity, Severity::Info);
        assert!(
            repeats.first(&blocked("10.0.0.1", 53), start + WINDOW),
            "a new window"
        );
    }

    #[test]
    fn the_subject_is_the_destination_or_the_executable() {
        let exec = Alert::new(Severity::Critical, AlertSource::Syscalls, "m")
            .with("rule", "exec")
            .with("executable", "/bin/sh");
        assert_eq!(act_key(&exec), ("exec".into(), "/bin/sh".into()));
        assert_eq!(
            act_key(&blocked("::1", 80)),
            ("connect".into(), "::1:80".into())
        );
    }
}
