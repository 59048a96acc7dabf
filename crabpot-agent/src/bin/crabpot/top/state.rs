//! What `crabpot top` shows, parsed leniently from the agent's JSON (`/api/status`,
//! `/api/recent`, `/api/pending`): a field the agent does not send is shown as unknown, never
//! an error, so the view works against older and newer agents alike.
use serde_json::Value;

/// Alerts kept for the view (newest first).
pub(crate) const ALERTS_SHOWN: usize = 50;

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ContainerRow {
    pub(crate) name: String,
    pub(crate) id: String,
    pub(crate) state: String,
    pub(crate) trust: Option<i64>,
    pub(crate) violations: Option<u64>,
    pub(crate) cpu_percent: Option<f64>,
    pub(crate) memory_used: Option<u64>,
    pub(crate) memory_limit: Option<u64>,
    pub(crate) pids: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AlertRow {
    pub(crate) time: String,
    pub(crate) severity: String,
    pub(crate) rule: String,
    pub(crate) container: String,
    pub(crate) message: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PendingRow {
    pub(crate) id: String,
    pub(crate) container: String,
    pub(crate) what: String,
    pub(crate) since: String,
}

/// Everything on screen.
#[derive(Debug, Default)]
pub(crate) struct TopState {
    pub(crate) agent: String,
    pub(crate) containers: Vec<ContainerRow>,
    pub(crate) alerts: Vec<AlertRow>,
    pub(crate) pending: Vec<PendingRow>,
    /// The agent answers no decisions API (an older agent): say so instead of "none".
    pub(crate) pending_supported: bool,
    /// The highlighted pending decision.
    pub(crate) selected: usize,
    /// The outcome of the operator's last key.
    pub(crate) message: String,
    /// Why the last refresh failed (agent down, refused).
    pub(crate) error: Option<String>,
    pub(crate) updated: String,
}

fn text(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// A container's name from either a string or a schema-v1 `{name, id, image}` object.
fn container_name(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(object @ Value::Object(_)) => text(object, "name").unwrap_or_default(),
        _ => String::new(),
    }
}

fn container_row(entry: &Value) -> ContainerRow {
    ContainerRow {
        name: text(entry, "name")
            .or_else(|| text(entry, "container"))
            .unwrap_or_else(|| "-".into()),
        id: text(entry, "id")
            .or_else(|| text(entry, "container_id"))
            .map(|id| id.chars().take(12).collect())
            .unwrap_or_default(),
        state: text(entry, "state").unwrap_or_else(|| "unknown".into()),
        trust: entry.get("trust_score").and_then(Value::as_i64),
        violations: entry.get("violations").and_then(Value::as_u64),
        ..ContainerRow::default()
    }
}

/// The guarded containers from `/api/status`: a `containers` list when the agent guards
/// several, else the one container's top-level fields.
pub(crate) fn containers_from_status(status: &Value) -> Vec<ContainerRow> {
    if let Some(list) = status.get("containers").and_then(Value::as_array) {
        return list.iter().map(container_row).collect();
    }
    if status.get("container").is_some_and(|c| !c.is_null()) {
        return vec![container_row(status)];
    }
    Vec::new()
}

/// Fold the latest stats sample of `/api/recent` into its container's row (the one named
/// by the sample, else the first).
pub(crate) fn apply_stats(rows: &mut [ContainerRow], recent: &Value) {
    let Some(stats) = recent.get("stats").filter(|s| !s.is_null()) else {
        return;
    };
    let sample = stats.get("sample").unwrap_or(stats);
    let named = container_name(sample.get("container").or(stats.get("container")));
    let row = match rows.iter_mut().position(|r| r.name == named) {
        Some(index) => &mut rows[index],
        None => match rows.first_mut() {
            Some(first) => first,
            None => return,
        },
    };
    row.cpu_percent = sample.get("cpu_percent").and_then(Value::as_f64);
    row.memory_used = sample.get("memory_used_bytes").and_then(Value::as_u64);
    row.memory_limit = sample.get("memory_limit_bytes").and_then(Value::as_u64);
    row.pids = sample.get("pids").and_then(Value::as_u64);
}

/// The alerts of `/api/recent`, newest first.
pub(crate) fn alerts_from_recent(recent: &Value) -> Vec<AlertRow> {
    let Some(list) = recent.get("alerts").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .rev()
        .take(ALERTS_SHOWN)
        .map(|alert| AlertRow {
            time: text(alert, "time")
                .map(|t| clock_time(&t))
                .unwrap_or_default(),
            severity: text(alert, "severity").unwrap_or_default(),
            rule: text(alert, "rule").unwrap_or_default(),
            container: container_name(alert.get("container")),
            message: text(alert, "message").unwrap_or_default(),
        })
        .collect()
}

/// `2026-12-02T05:01:02.123456789Z` → `05:01:02`: the view has no room for the rest.
fn clock_time(time: &str) -> String {
    time.split_once('T')
        .map(|(_, clock)| clock.chars().take(8).collect())
        .unwrap_or_else(|| time.to_string())
}

/// Pending decisions from `/api/pending`: a list, or `{"pending": [...]}`; decided ones are
/// left out.
pub(crate) fn pending_from(value: &Value) -> Vec<PendingRow> {
    let list = value
        .as_array()
        .or_else(|| value.get("pending").and_then(Value::as_array));
    let Some(list) = list else {
        return Vec::new();
    };
    list.iter()
        .filter(|d| text(d, "status").is_none_or(|s| s == "pending"))
        .map(|d| {
            let subject = d.get("subject").unwrap_or(d);
            PendingRow {
                id: text(d, "id").unwrap_or_default(),
                container: container_name(d.get("container").or(subject.get("container"))),
                what: text(d, "summary")
                    .or_else(|| text(subject, "summary"))
                    .or_else(|| text(subject, "message"))
                    .or_else(|| text(d, "reason"))
                    .unwrap_or_default(),
                since: text(d, "created")
                    .or_else(|| text(d, "time"))
                    .map(|t| clock_time(&t))
                    .unwrap_or_default(),
            }
        })
        .collect()
}

impl TopState {
    /// Keep the highlight on an existing row after the list changed.
    pub(crate) fn clamp_selection(&mut self) {
        self.selected = self.selected.min(self.pending.len().saturating_sub(1));
    }

    pub(crate) fn select_next(&mut self) {
        self.selected = (self.selected + 1).min(self.pending.len().saturating_sub(1));
    }

    pub(crate) fn select_previous(&mut self) {
        self.selected = self.selected.saturating_sub(1);
    }

    pub(crate) fn selected_decision(&self) -> Option<&PendingRow> {
        self.pending.get(self.selected)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn one_container_status_and_a_stats_sample_make_one_row() {
        let status = json!({"container": "crabpot", "container_id": "0123456789abcdef",
            "state": "paused", "trust_score": 80, "violations": 1});
        let mut rows = containers_from_status(&status);
        apply_stats(
            &mut rows,
            &json!({"stats": {"t": 1.0, "sample": {"cpu_percent": 12.5,
                "memory_used_bytes": 1048576, "memory_limit_bytes": 4194304, "pids": 7}}}),
        );
        assert_eq!(
            rows,
            vec![ContainerRow {
                name: "crabpot".into(),
                id: "0123456789ab".into(),
                state: "paused".into(),
                trust: Some(80),
                violations: Some(1),
                cpu_percent: Some(12.5),
                memory_used: Some(1_048_576),
                memory_limit: Some(4_194_304),
                pids: Some(7),
            }]
        );
    }

    #[test]
    fn a_container_list_wins_and_no_container_is_no_row() {
        let several = json!({"containers": [{"name": "a", "state": "running"},
            {"name": "b", "state": "paused"}]});
        let names: Vec<_> = containers_from_status(&several)
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert!(containers_from_status(&json!({"container": null, "state": "absent"})).is_empty());
    }

    #[test]
    fn alerts_are_newest_first_with_schema_v1_containers() {
        let recent = json!({"alerts": [
            {"time": "2026-12-02T05:00:01.5Z", "severity": "INFO", "rule": "a",
             "container": {"name": "crabpot"}, "message": "first"},
            {"time": "2026-12-02T05:00:02.5Z", "severity": "CRITICAL", "rule": "exec",
             "container": {"name": "crabpot"}, "message": "second"}]});
        let alerts = alerts_from_recent(&recent);
        assert_eq!(alerts[0].message, "second");
        assert_eq!(alerts[0].time, "05:00:02");
        assert_eq!(alerts[1].container, "crabpot");
    }

    #[test]
    fn decided_decisions_are_not_pending_and_selection_stays_in_range() {
        let value = json!({"pending": [
            {"id": "d-1", "status": "pending", "container": "crabpot", "summary": "exec sh"},
            {"id": "d-2", "status": "approved", "container": "crabpot", "summary": "x"},
            {"id": "d-3", "container": {"name": "other"}, "subject": {"message": "connect"}}]});
        let mut state = TopState {
            pending: pending_from(&value),
            selected: 5,
            ..TopState::default()
        };
        assert_eq!(state.pending.len(), 2);
        assert_eq!(state.pending[1].what, "connect");
        assert_eq!(state.pending[1].container, "other");
        state.clamp_selection();
        assert_eq!(
            state.selected_decision().map(|d| d.id.as_str()),
            Some("d-3")
        );
        state.select_next();
        assert_eq!(state.selected, 1);
        state.select_previous();
        state.select_previous();
        assert_eq!(state.selected, 0);
    }
}
