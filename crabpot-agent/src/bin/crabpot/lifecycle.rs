//! Commands that launch, inspect and tear down the container and the agent's install: up,
//! down, logs, restart, audit, install, unload.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use crabpot_agent::{Severity, launch};

use crate::{
    args::UpArgs,
    output::{done, failed},
};

/// Print the posture findings and score; failure when any is WARNING or worse.
pub(crate) async fn audit(container: &str, json: bool) -> ExitCode {
    let report = match launch::audit(container).await {
        Ok(report) => report,
        Err(error) => return failed(error),
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(error) => return failed(error.into()),
        }
    } else {
        for finding in &report.findings {
            println!(
                "{:<8} posture_{}: {} [{}]",
                finding.severity.as_str(),
                finding.finding,
                finding.message,
                finding.detail
            );
        }
        println!(
            "posture of `{}`: score {}/100, {} finding(s)",
            report.container,
            report.score(),
            report.findings.len()
        );
    }
    let serious = report
        .findings
        .iter()
        .any(|f| f.severity >= Severity::Warning);
    if serious {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `crabpot up`: create and start the container, then say how to guard and check it.
pub(crate) async fn up(args: UpArgs) -> ExitCode {
    let request = launch::UpRequest {
        preset: args.preset,
        image: args.image,
        name: args.name,
        port: args.port,
        env: args.env,
        user: args.user,
        wait: Duration::from_secs(args.wait),
    };
    match launch::up(&request).await {
        Ok(started) => {
            println!(
                "crabpot: `{}` is {} with the {} preset: {}",
                request.name,
                if started.healthy {
                    "healthy"
                } else {
                    "running"
                },
                request.preset.as_str(),
                started.url
            );
            if let Some(token) = started.generated_token {
                println!("crabpot: gateway token (OPENCLAW_GATEWAY_TOKEN): {token}");
            }
            println!(
                "crabpot: guard it with `sudo crabpot-agent --container {}`; check it with \
                 `crabpot audit --container {}`",
                request.name, request.name
            );
            ExitCode::SUCCESS
        }
        Err(error) => failed(error),
    }
}

pub(crate) fn install() -> ExitCode {
    let from = match std::env::current_exe() {
        Ok(exe) => exe.parent().map(PathBuf::from).unwrap_or_default(),
        Err(error) => {
            eprintln!("crabpot: cannot find this binary's directory: {error}");
            return ExitCode::FAILURE;
        }
    };
    match crabpot_agent::install(&from, &crabpot_agent::InstallLayout::default()) {
        Ok(done) => {
            for line in done {
                println!("{line}");
            }
            if std::path::Path::new("/run/systemd/system").exists() {
                println!("next: systemctl daemon-reload && systemctl enable --now crabpot-agent");
            } else {
                println!(
                    "systemd is not running here: start the agent by hand (sudo crabpot-agent)"
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("crabpot: {error} (run as root)");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn unload(container: &str, all: bool) -> ExitCode {
    let which = (!all).then_some(container);
    match crabpot_agent::unload_pins(which) {
        Ok(removed) => {
            println!(
                "crabpot: removed {removed} pinned hook(s) for {}",
                which.map_or("every container".to_string(), |c| format!("`{c}`"))
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("crabpot: {error} (run as root)");
            ExitCode::FAILURE
        }
    }
}

/// `crabpot down`.
pub(crate) async fn down(name: &str) -> ExitCode {
    match launch::down(name).await {
        Ok(true) => done(format!("container `{name}` stopped and removed")),
        Ok(false) => done(format!("no container `{name}`")),
        Err(error) => failed(error),
    }
}

/// `crabpot logs`.
pub(crate) async fn logs(name: &str, follow: bool, tail: &str) -> ExitCode {
    match launch::logs(name, follow, tail).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => failed(error),
    }
}

/// `crabpot restart`: restart and wait until ready again.
pub(crate) async fn restart(name: &str, wait: u64) -> ExitCode {
    match launch::restart(name, Duration::from_secs(wait)).await {
        Ok(healthy) => done(format!(
            "container `{name}` restarted and {}",
            if healthy { "healthy" } else { "running" }
        )),
        Err(error) => failed(error),
    }
}
