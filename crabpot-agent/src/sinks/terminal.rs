//! The terminal sink: one line per alert on stderr, coloured by severity on a terminal,
//! plain for journald and pipes.
use std::{io::Write as _, sync::Arc};

use tokio::sync::mpsc;

use crate::{
    model::alert::{Alert, Severity},
    sinks::terminal_text::escape_for_terminal,
};

/// `[CRITICAL] 14:23:01 processes: message`, as in the guide.
pub fn format_alert(alert: &Alert, colour: bool) -> String {
    let time = chrono::DateTime::parse_from_rfc3339(&alert.timestamp)
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_else(|_| alert.timestamp.clone());
    let label = format!("[{}]", alert.severity);
    let line = format!(
        "{label:<10} {time} {}: {}",
        alert.source.as_str(),
        escape_for_terminal(&alert.message)
    );
    if !colour {
        return line;
    }
    let code = match alert.severity {
        Severity::Critical => "1;31",
        Severity::Warning => "33",
        Severity::Info => "36",
    };
    format!("\u{1b}[{code}m{line}\u{1b}[0m")
}

pub(crate) async fn run(mut alerts: mpsc::Receiver<Arc<Alert>>) {
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    while let Some(alert) = alerts.recv().await {
        let line = format_alert(&alert, colour);
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::alert::AlertSource;

    #[test]
    fn formats_like_the_guide_and_escapes_hostile_text() {
        let mut alert = Alert::new(Severity::Critical, AlertSource::Processes, "shell\u{1b}[2J");
        alert.timestamp = "2026-11-23T14:23:01.000+00:00".into();
        assert_eq!(
            format_alert(&alert, false),
            "[CRITICAL] 14:23:01 processes: shell\\u{1b}[2J"
        );
        assert!(format_alert(&alert, true).starts_with("\u{1b}[1;31m[CRITICAL]"));
    }
}
