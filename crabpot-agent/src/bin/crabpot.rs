//! `crabpot`: the operator's command — read alerts, pause and resume the container.
use std::{path::PathBuf, process::ExitCode};

use chrono::{DateTime, FixedOffset};
use clap::{Parser, Subcommand};
use crabpot_agent::{
    alert::Severity,
    config::default_alerts_log,
    control::{self, Outcome},
    sinks::{alert_log::reader, terminal::format_alert},
};

#[derive(Parser)]
#[command(name = "crabpot", version, about = "CrabPot operator commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show recent alerts from the JSON-lines log (rotated files included).
    Alerts {
        /// How many of the most recent matching alerts to show.
        #[arg(long, default_value_t = 20)]
        last: usize,
        /// Only this severity and above (INFO, WARNING, CRITICAL).
        #[arg(long)]
        severity: Option<Severity>,
        /// Only alerts at or after this time: RFC 3339 (2026-11-23T14:00:00+00:00) or an
        /// age such as 30s, 10m, 2h, 1d.
        #[arg(long, value_parser = parse_since)]
        since: Option<DateTime<FixedOffset>>,
        /// Print the alerts as JSON lines.
        #[arg(long)]
        json: bool,
        /// The alerts log [default: ~/.crabpot/data/alerts.log of the effective user].
        #[arg(long, env = "CRABPOT_ALERTS_LOG")]
        file: Option<PathBuf>,
    },
    /// Freeze the container now.
    Pause {
        #[arg(long, default_value = "crabpot", env = "CRABPOT_CONTAINER")]
        container: String,
    },
    /// Unfreeze the container (works whether or not the agent runs).
    Resume {
        #[arg(long, default_value = "crabpot", env = "CRABPOT_CONTAINER")]
        container: String,
    },
}

fn parse_since(text: &str) -> Result<DateTime<FixedOffset>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let amount: i64 = number
        .parse()
        .map_err(|_| format!("`{text}` is neither RFC 3339 nor an age like 10m"))?;
    let seconds = match unit {
        "s" | "" => amount,
        "m" => amount * 60,
        "h" => amount * 3600,
        "d" => amount * 86_400,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{text}`: use s, m, h or d"
            ));
        }
    };
    let now = chrono::Local::now().fixed_offset();
    Ok(now - chrono::Duration::seconds(seconds))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Alerts {
            last,
            severity,
            since,
            json,
            file,
        } => {
            let path = file.unwrap_or_else(default_alerts_log);
            let report = reader::read_alerts(&path);
            for problem in &report.problems {
                eprintln!("crabpot: {problem}");
            }
            let colour = std::io::IsTerminal::is_terminal(&std::io::stdout());
            for alert in reader::select(report.alerts, severity, since, last) {
                if json {
                    match serde_json::to_string(&alert) {
                        Ok(line) => println!("{line}"),
                        Err(error) => eprintln!("crabpot: cannot encode an alert: {error}"),
                    }
                } else {
                    println!("{}", format_alert(&alert, colour));
                }
            }
            ExitCode::SUCCESS
        }
        Command::Pause { container } => {
            report(&container, "paused", control::pause(&container).await)
        }
        Command::Resume { container } => {
            report(&container, "resumed", control::resume(&container).await)
        }
    }
}

fn report(
    container: &str,
    verb: &str,
    outcome: Result<Outcome, control::ControlError>,
) -> ExitCode {
    match outcome {
        Ok(Outcome::Done) => {
            println!("container `{container}` {verb}");
            ExitCode::SUCCESS
        }
        Ok(Outcome::AlreadyInState) => {
            println!("container `{container}` was already {verb}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("crabpot: {error}");
            ExitCode::FAILURE
        }
    }
}
