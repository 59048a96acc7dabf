//! Reading the alerts log back, rotated files included, for `crabpot alerts`: schema v1
//! records, the records before v1, and lines in Falco's shape. A malformed line is reported
//! with its file and line number and skipped.
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};

use crate::{
    model::alert::{Alert, Severity},
    sinks::alert_log::writer::rotated,
};

#[derive(Debug, Default)]
pub struct ReadReport {
    /// Oldest first.
    pub alerts: Vec<Alert>,
    pub problems: Vec<String>,
}

/// The log and its rotated files that exist, oldest first.
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..=1000)
        .map(|n| rotated(path, n))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    if path.exists() {
        files.push(path.to_path_buf());
    }
    files
}

pub fn read_alerts(path: &Path) -> ReadReport {
    let mut report = ReadReport::default();
    let files = log_files(path);
    if files.is_empty() {
        report
            .problems
            .push(format!("{}: no alerts log yet", path.display()));
    }
    for file in files {
        let bytes = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            Err(error) => {
                report.problems.push(format!("{}: {error}", file.display()));
                continue;
            }
        };
        parse_lines(&file, &bytes, &mut report);
    }
    report
}

/// Parse the bytes of one log file, named `file` in problems: each valid line is an alert,
/// each malformed one a problem; blank lines are skipped.
pub fn parse_lines(file: &Path, bytes: &[u8], report: &mut ReadReport) {
    for (index, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = std::str::from_utf8(line)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                serde_json::from_str::<Alert>(text)
                    .or_else(|e| crate::sinks::formats::from_falco(text).ok_or(e))
                    .map_err(|e| e.to_string())
            });
        match parsed {
            Ok(alert) => report.alerts.push(alert),
            Err(error) => report.problems.push(format!(
                "{}:{}: skipped malformed line: {error}",
                file.display(),
                index + 1
            )),
        }
    }
}

/// Keep alerts at `min` severity or above, at or after `since`, then the last `last`.
pub fn select(
    alerts: Vec<Alert>,
    min: Option<Severity>,
    since: Option<DateTime<FixedOffset>>,
    last: usize,
) -> Vec<Alert> {
    let kept: Vec<Alert> = alerts
        .into_iter()
        .filter(|a| min.is_none_or(|min| a.severity >= min))
        .filter(|a| {
            since.is_none_or(|since| {
                DateTime::parse_from_rfc3339(&a.timestamp).is_ok_and(|t| t >= since)
            })
        })
        .collect();
    let skip = kept.len().saturating_sub(last);
    kept.into_iter().skip(skip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{model::alert::AlertSource, sinks::alert_log::AlertLogWriter};

    #[test]
    fn reads_rotated_files_in_order_and_reports_bad_lines() {
        let dir = std::env::temp_dir().join(format!("crabpot-reader-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("alerts.log");
        let mut writer = AlertLogWriter::open(&path, 600, 5).expect("open");
        for i in 0..12 {
            let severity = if i % 3 == 0 {
                Severity::Critical
            } else {
                Severity::Info
            };
            writer
                .append(&Alert::new(severity, AlertSource::Events, format!("n{i}")))
                .expect("append");
        }
        drop(writer);
        let mut text = std::fs::read(&path).expect("read");
        text.extend_from_slice(b"{not json\n\xff\xfe\n");
        std::fs::write(&path, text).expect("write");

        let report = read_alerts(&path);
        let messages: Vec<String> = report.alerts.iter().map(|a| a.message.clone()).collect();
        assert_eq!(
            messages,
            (0..12).map(|i| format!("n{i}")).collect::<Vec<_>>()
        );
        assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
        assert!(
            report.problems[0].contains("alerts.log:"),
            "{:?}",
            report.problems
        );

        let critical = select(report.alerts, Some(Severity::Critical), None, 2);
        let messages: Vec<&str> = critical.iter().map(|a| a.message.as_str()).collect();
        assert_eq!(messages, vec!["n6", "n9"]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
