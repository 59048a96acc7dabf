//! The alerts log may be damaged (a full disk, an editor, a crash): reading it back must
//! keep every valid line as an alert, report every other non-blank line, and never panic,
//! and selecting from what was read must not either.
#![no_main]

use std::path::Path;

use crabpot_agent::{
    Severity,
    reader::{ReadReport, parse_lines, select},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut report = ReadReport::default();
    parse_lines(Path::new("alerts.log"), data, &mut report);
    let lines = data
        .split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .count();
    assert_eq!(report.alerts.len() + report.problems.len(), lines);
    for alert in &report.alerts {
        let line = serde_json::to_string(alert).expect("an alert serialises");
        assert!(!line.contains('\n'), "a re-written alert would span lines");
    }
    // A `since` bound from the front of the input, as `crabpot alerts --since` parses it.
    let since = data
        .get(..25)
        .and_then(|front| std::str::from_utf8(front).ok())
        .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok());
    let kept = select(report.alerts, Some(Severity::Warning), since, 3);
    assert!(kept.len() <= 3);
    assert!(kept.iter().all(|a| a.severity >= Severity::Warning));
});
