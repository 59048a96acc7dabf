//! Commands that look without changing anything: alerts, status, top.
use std::process::ExitCode;

use crabpot_agent::{format_alert, paths, reader};

use crate::{
    agent_api::{agent_address, fetch_status, token_path},
    args::{AgentAccess, AlertsArgs},
    output::failed,
    top,
};

/// `crabpot alerts`: the matching alerts from the log, oldest first.
pub(crate) fn alerts(args: AlertsArgs) -> ExitCode {
    let AlertsArgs {
        last,
        severity,
        since,
        json,
        file,
        instance,
    } = args;
    let path = match file {
        Some(path) => path,
        None => {
            let candidates = paths::Layout::current().alerts_log_candidates(instance.as_deref());
            match paths::first_existing("alerts log", &candidates) {
                Ok(path) => path,
                Err(why) => {
                    // Not a failure: an agent that has raised nothing has no log yet.
                    eprintln!("crabpot: {why}: no alerts yet, or pass --file / --instance");
                    return ExitCode::SUCCESS;
                }
            }
        }
    };
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

/// `crabpot status`: what the agent at `--agent` (or the instance's listener) reports.
pub(crate) fn status(agent: &str, instance: Option<&str>, json: bool) -> ExitCode {
    match agent_address(agent, instance) {
        Ok(agent) => show_status(&agent, json),
        Err(error) => failed(anyhow::anyhow!(error)),
    }
}

fn show_status(agent: &str, json: bool) -> ExitCode {
    let body = match fetch_status(agent) {
        Ok(body) => body,
        Err(error) => {
            eprintln!("crabpot: {error}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        println!("{body}");
        return ExitCode::SUCCESS;
    }
    let Ok(status) = serde_json::from_str::<crabpot_agent::Status>(&body) else {
        eprintln!("crabpot: the agent's status is not what this version expects:\n{body}");
        return ExitCode::FAILURE;
    };
    println!(
        "container: {} ({})",
        status.container.as_deref().unwrap_or("-"),
        status.state
    );
    println!(
        "trust: {} after {} violation(s){}",
        status.trust_score,
        status.violations,
        if status.quarantined {
            ", quarantined"
        } else {
            ""
        }
    );
    // Several guarded containers: one line each (the lines above describe the first).
    if status.containers.len() > 1 {
        for c in &status.containers {
            println!(
                "guarded: {} {} ({}), trust {} after {} violation(s)",
                c.name,
                c.id.get(..12).filter(|id| !id.is_empty()).unwrap_or("-"),
                c.state,
                c.trust_score,
                c.violations
            );
        }
    }
    if let Some(layers) = status.info["layers"].as_array() {
        let text: Vec<String> = layers
            .iter()
            .filter_map(|l| Some(format!("{}={}", l[0].as_str()?, l[1].as_str()?)))
            .collect();
        println!("bpf enforcement: {}", text.join(" "));
    }
    println!(
        "kernel events: {} received, {} dropped",
        status.kernel_events, status.kernel_events_dropped
    );
    for (channel, at) in &status.channels {
        println!("channel {channel}: last tick {at}");
    }
    for (name, hits) in &status.exceptions {
        println!("exception {name}: {hits} hit(s)");
    }
    if let Some(url) = status.info["dashboard_url"].as_str() {
        println!("dashboard: {}", url.split("?token=").next().unwrap_or(url));
    }
    ExitCode::SUCCESS
}

/// `crabpot top`: the live view of the agent at `--agent` (or the instance's listener).
pub(crate) async fn top(agent: &AgentAccess, interval_ms: u64) -> ExitCode {
    let address = match agent_address(&agent.agent, agent.instance.as_deref()) {
        Ok(address) => address,
        Err(error) => return failed(anyhow::anyhow!(error)),
    };
    let args = top::TopArgs {
        // None found: top names the home directory's in its message, viewing works.
        token_file: token_path(agent).unwrap_or_else(|_| paths::Layout::current().token_file()),
        agent: address,
        interval: std::time::Duration::from_millis(interval_ms.max(100)),
    };
    match top::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => failed(error),
    }
}
