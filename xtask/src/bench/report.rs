//! The one table: our figure beside each baseline, the ratio, the target; printed, and saved
//! as Markdown and JSON under target/bench/.
use std::{fmt::Write as _, path::Path};

use anyhow::Context as _;
use serde_json::json;

/// What a row must show to meet its target: a bound on our figure, or on its ratio to the
/// row's baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Target {
    AtMost(f64),
    AtLeast(f64),
    RatioAtMost(f64),
}

impl Target {
    fn text(self, unit: &str) -> String {
        match self {
            Target::AtMost(v) => format!("≤ {} {unit}", number(v)),
            Target::AtLeast(v) => format!("≥ {} {unit}", number(v)),
            Target::RatioAtMost(r) => format!("≤ {r:.2}×"),
        }
    }

    /// Met or missed; `None` when the row has no figure to judge (a ratio without a
    /// baseline, a figure that is not a number).
    fn met(self, row: &Row) -> Option<bool> {
        match self {
            Target::AtMost(v) => row.ours.is_finite().then_some(row.ours <= v),
            Target::AtLeast(v) => row.ours.is_finite().then_some(row.ours >= v),
            Target::RatioAtMost(r) => row.ratio().map(|ratio| ratio <= r),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Row {
    pub measure: String,
    pub unit: &'static str,
    pub ours: f64,
    pub baseline_name: String,
    pub baseline: Option<f64>,
    pub target: Option<Target>,
    pub note: String,
}

impl Row {
    pub(super) fn new(measure: impl Into<String>, unit: &'static str, ours: f64) -> Self {
        Row {
            measure: measure.into(),
            unit,
            ours,
            baseline_name: String::new(),
            baseline: None,
            target: None,
            note: String::new(),
        }
    }

    pub(super) fn against(mut self, name: impl Into<String>, value: f64) -> Self {
        self.baseline_name = name.into();
        self.baseline = Some(value);
        self
    }

    pub(super) fn target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    fn target_text(&self) -> String {
        self.target.map(|t| t.text(self.unit)).unwrap_or_default()
    }

    /// "met", "missed", or empty (no target, or nothing to judge).
    pub(super) fn verdict(&self) -> &'static str {
        match self.target.and_then(|t| t.met(self)) {
            Some(true) => "met",
            Some(false) => "missed",
            None => "",
        }
    }

    pub(super) fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    /// Ours divided by the baseline (below 1: we are lower — faster or cheaper).
    pub(super) fn ratio(&self) -> Option<f64> {
        self.baseline
            .filter(|b| *b != 0.0 && b.is_finite() && self.ours.is_finite())
            .map(|b| self.ours / b)
    }
}

#[derive(Debug, Default)]
pub(super) struct Report {
    pub machine: String,
    pub sections: Vec<(String, Vec<Row>)>,
    pub seconds: f64,
}

fn number(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".into();
    }
    let magnitude = value.abs();
    if magnitude >= 1000.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

impl Report {
    pub(super) fn section(&mut self, title: &str, rows: Vec<Row>) {
        self.sections.push((title.to_string(), rows));
    }

    pub(super) fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Machine: {}. `cargo xtask bench` took {:.0} s.\n",
            self.machine, self.seconds
        );
        let _ = writeln!(
            out,
            "| Measure | Unit | CrabPot | Baseline | Baseline value | Ratio | Target | Met | Note |"
        );
        let _ = writeln!(out, "|---|---|---:|---|---:|---:|---|---|---|");
        for (title, rows) in &self.sections {
            let _ = writeln!(out, "| **{title}** | | | | | | | | |");
            for row in rows {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    row.measure,
                    row.unit,
                    number(row.ours),
                    row.baseline_name,
                    row.baseline.map(number).unwrap_or_default(),
                    row.ratio().map(|r| format!("{r:.2}×")).unwrap_or_default(),
                    row.target_text(),
                    row.verdict(),
                    row.note
                );
            }
        }
        out
    }

    pub(super) fn json(&self) -> serde_json::Value {
        json!({
            "machine": self.machine,
            "seconds": self.seconds,
            "sections": self.sections.iter().map(|(title, rows)| json!({
                "title": title,
                "rows": rows.iter().map(|r| json!({
                    "measure": r.measure,
                    "unit": r.unit,
                    "crabpot": r.ours,
                    "baseline": r.baseline_name,
                    "baseline_value": r.baseline,
                    "ratio": r.ratio(),
                    "target": r.target_text(),
                    "met": match r.verdict() { "met" => json!(true), "missed" => json!(false), _ => json!(null) },
                    "note": r.note,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }

    pub(super) fn save(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let md = dir.join("latest.md");
        std::fs::write(&md, self.markdown())
            .with_context(|| format!("writing {}", md.display()))?;
        let js = dir.join("latest.json");
        let text = serde_json::to_string_pretty(&self.json())?;
        std::fs::write(&js, text).with_context(|| format!("writing {}", js.display()))?;
        eprintln!("xtask: saved {} and {}", md.display(), js.display());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_the_ratio_to_their_baseline() {
        let mut report = Report {
            machine: "test box".into(),
            ..Report::default()
        };
        report.section(
            "Latency",
            vec![
                Row::new("alert p99", "ms", 2.0)
                    .against("poll-only", 8000.0)
                    .target(Target::AtMost(5.0)),
                Row::new("no baseline", "MiB", 12.5),
                Row::new("open, container", "ns/call", 1300.0)
                    .against("no agent", 1000.0)
                    .target(Target::RatioAtMost(1.10)),
                Row::new("drained", "events/s", 5e5).target(Target::AtLeast(1e6)),
            ],
        );
        let md = report.markdown();
        assert!(
            md.contains(
                "| alert p99 | ms | 2.000 | poll-only | 8000 | 0.00× | ≤ 5.000 ms | met |  |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| no baseline | MiB | 12.5 |  |  |  |  |  |  |"),
            "{md}"
        );
        assert!(md.contains("| 1.30× | ≤ 1.10× | missed |"), "{md}");
        assert!(md.contains("| ≥ 1000000 events/s | missed |"), "{md}");
        let json = report.json();
        assert_eq!(json["sections"][0]["rows"][0]["ratio"], 0.00025);
        assert_eq!(json["sections"][0]["rows"][0]["met"], true);
        assert_eq!(
            json["sections"][0]["rows"][1]["met"],
            serde_json::Value::Null
        );
        assert_eq!(json["sections"][0]["rows"][2]["met"], false);
    }
}
