//! `crabpot`: the operator's command — read alerts, pause and resume the container, reset
//! trust, audit its launch posture, launch it hardened (up, down, logs, restart), watch it
//! live (top).
#[path = "crabpot/top.rs"]
mod top;

use std::{path::PathBuf, process::ExitCode};

use chrono::{DateTime, FixedOffset};
use clap::{Parser, Subcommand};
use crabpot_agent::{
    Severity,
    control::{self, Outcome},
    format_alert, launch, paths, reader,
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
        /// The alerts log [default: /var/log/crabpot/alerts.log when present (the systemd
        /// unit's), else ~/.crabpot/data/alerts.log of the effective user].
        #[arg(long, env = "CRABPOT_ALERTS_LOG")]
        file: Option<PathBuf>,
        /// The agent instance `crabpot-agent@NAME`: /var/log/crabpot/NAME/alerts.log.
        #[arg(long, conflicts_with = "file")]
        instance: Option<String>,
    },
    /// What the running agent reports: container state, trust, layers, channels.
    Status {
        /// The agent's HTTP listener [default: the instance's `listen:`, else 127.0.0.1:9876].
        #[arg(long, default_value = DEFAULT_AGENT)]
        agent: String,
        /// The agent instance `crabpot-agent@NAME` (its listener from /etc/crabpot/NAME.yml).
        #[arg(long)]
        instance: Option<String>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Install crabpot-agent and crabpot (from beside this binary), the systemd unit and a
    /// default /etc/crabpot/monitor.yml (an existing one is kept). Then:
    /// `systemctl daemon-reload && systemctl enable --now crabpot-agent`.
    Install,
    /// Freeze the container now.
    Pause {
        #[arg(long, default_value = "crabpot", env = "CRABPOT_CONTAINER")]
        container: String,
    },
    /// Unfreeze the container after review. Through a running agent this also brings trust
    /// back to 100 (audited in the alerts log); with no agent running, Docker is asked
    /// directly.
    Resume {
        /// The container (name); the agent's first guarded one when absent (`crabpot`
        /// without an agent).
        #[arg(long, env = "CRABPOT_CONTAINER")]
        container: Option<String>,
        #[command(flatten)]
        agent: AgentAccess,
    },
    /// Break-glass: open a shell (or run CMD) in the guarded container, announced to the
    /// agent first (needs the control token), so it is a WARNING naming your uid, audited,
    /// not a freeze. An unannounced `docker exec` stays CRITICAL.
    Shell {
        /// The container (name or id); the one the agent guards when absent.
        #[arg(long, env = "CRABPOT_CONTAINER")]
        container: Option<String>,
        #[command(flatten)]
        agent: AgentAccess,
        /// The command to run instead of `sh`, after `--`.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// The pending decisions (auto-pauses, newly blocked destinations) waiting for an
    /// answer: `crabpot approve ID` or `crabpot deny ID`.
    Pending {
        #[command(flatten)]
        agent: AgentAccess,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending decision: resume the container and continue the stopped process.
    Approve {
        /// The decision's id (from `crabpot pending`, the alert or the toast).
        id: String,
        /// Also write the narrowest exception (or allow entry) to the managed
        /// conf.d/90-approved.yml and reload, so the same act passes from now on.
        #[arg(long)]
        always: bool,
        #[command(flatten)]
        agent: AgentAccess,
    },
    /// Deny a pending decision: kill the offending process tree and resume the container.
    Deny {
        id: String,
        /// Kill the process but leave the container frozen.
        #[arg(long)]
        keep_frozen: bool,
        #[command(flatten)]
        agent: AgentAccess,
    },
    /// The trust score of the running agent's container.
    Trust {
        #[command(subcommand)]
        action: TrustAction,
    },
    /// Remove the in-kernel hooks the agent pinned (they outlive the agent, on purpose):
    /// the container's connect and socket policy stops being enforced. Stop the agent first;
    /// a running agent's hooks stay until it exits.
    Unload {
        #[arg(long, default_value = "crabpot", env = "CRABPOT_CONTAINER")]
        container: String,
        /// Every container's pinned hooks.
        #[arg(long, conflicts_with = "container")]
        all: bool,
    },
    /// Audit how the container was launched (Docker socket, privileged, capabilities, host
    /// namespaces, seccomp/AppArmor, limits, public ports, root), straight from Docker; exits
    /// 1 when there is a WARNING or CRITICAL finding.
    Audit {
        #[arg(long, default_value = "crabpot", env = "CRABPOT_CONTAINER")]
        container: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create and start the guarded container with a hardened preset, and wait until it is
    /// healthy (or running, for an image without a health check).
    Up {
        #[arg(long, value_enum, default_value = "paranoid")]
        preset: launch::Preset,
        #[arg(long, default_value = "crabpot/openclaw-real:2026.9.6")]
        image: String,
        #[arg(long, default_value = "crabpot", env = "CRABPOT_CONTAINER")]
        name: String,
        /// The host port, on 127.0.0.1 only (0: any free port).
        #[arg(long, default_value_t = 18789)]
        port: u16,
        /// KEY=VALUE, or KEY to pass this shell's value (repeatable). OPENCLAW_GATEWAY_TOKEN
        /// is passed from this shell, or generated and printed.
        #[arg(short, long)]
        env: Vec<String>,
        /// Run as this user instead of the preset's choice.
        #[arg(long)]
        user: Option<String>,
        /// Seconds to wait for the container to be ready.
        #[arg(long, default_value_t = 180)]
        wait: u64,
    },
    /// Stop and remove the container.
    Down {
        #[arg(long, default_value = "crabpot", env = "CRABPOT_CONTAINER")]
        name: String,
    },
    /// The container's output.
    Logs {
        #[arg(long, default_value = "crabpot", env = "CRABPOT_CONTAINER")]
        name: String,
        /// Keep following.
        #[arg(short, long)]
        follow: bool,
        /// Lines from the end to show ("all" for everything).
        #[arg(long, default_value = "100")]
        tail: String,
    },
    /// A live terminal view of the running agent: guarded containers, pending decisions,
    /// recent alerts; keys to pause, resume, approve and deny (q quits).
    Top {
        #[command(flatten)]
        agent: AgentAccess,
        /// Refresh period in milliseconds.
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
    },
    /// Restart the container and wait until it is ready again.
    Restart {
        #[arg(long, default_value = "crabpot", env = "CRABPOT_CONTAINER")]
        name: String,
        #[arg(long, default_value_t = 180)]
        wait: u64,
    },
}

#[derive(Subcommand)]
enum TrustAction {
    /// Back to 100 without resuming (audited in the alerts log).
    Reset {
        #[command(flatten)]
        agent: AgentAccess,
    },
}

/// How to reach the running agent's token-protected control actions.
#[derive(clap::Args)]
struct AgentAccess {
    /// The agent's HTTP listener [default: the instance's `listen:`, else 127.0.0.1:9876].
    #[arg(long, default_value = DEFAULT_AGENT)]
    agent: String,
    /// The agent's control token file [default: /var/lib/crabpot/dashboard.token when
    /// present (the systemd unit's), else ~/.crabpot/dashboard.token].
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The agent instance `crabpot-agent@NAME`: its token in /var/lib/crabpot/NAME/, its
    /// listener from /etc/crabpot/NAME.yml.
    #[arg(long)]
    instance: Option<String>,
}

/// The agent's listener when neither `--agent` nor an instance's configuration names one.
const DEFAULT_AGENT: &str = "127.0.0.1:9876";

/// The agent's address: `--agent`, else the `listen:` of the instance's configuration.
fn agent_address(agent: &str, instance: Option<&str>) -> Result<String, String> {
    let Some(name) = instance.filter(|_| agent == DEFAULT_AGENT) else {
        return Ok(agent.to_string());
    };
    let path = paths::instance_config(name);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read {} for instance `{name}` ({e}); pass --agent ADDRESS",
            path.display()
        )
    })?;
    let file = crabpot_agent::parse_config_file(&path, &text).map_err(|e| e.to_string())?;
    Ok(file.listen.map_or(agent.to_string(), |a| a.to_string()))
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
            instance,
        } => alerts(file, instance.as_deref(), severity, since, last, json),
        Command::Status {
            agent,
            instance,
            json,
        } => match agent_address(&agent, instance.as_deref()) {
            Ok(agent) => status(&agent, json),
            Err(error) => failed(anyhow::anyhow!(error)),
        },
        Command::Install => install(),
        Command::Pause { container } => {
            report(&container, "paused", control::pause(&container).await)
        }
        Command::Resume { container, agent } => resume(container.as_deref(), &agent).await,
        Command::Shell {
            container,
            agent,
            command,
        } => shell(container, &agent, command),
        Command::Trust {
            action: TrustAction::Reset { agent },
        } => trust_reset(&agent),
        Command::Pending { agent, json } => pending(&agent, json),
        Command::Approve { id, always, agent } => {
            let answer = crabpot_agent::DecisionAnswer {
                always,
                ..crabpot_agent::DecisionAnswer::default()
            };
            decide(&agent, &id, "approve", answer)
        }
        Command::Deny {
            id,
            keep_frozen,
            agent,
        } => {
            let answer = crabpot_agent::DecisionAnswer {
                keep_frozen,
                ..crabpot_agent::DecisionAnswer::default()
            };
            decide(&agent, &id, "deny", answer)
        }
        Command::Audit { container, json } => audit(&container, json).await,
        Command::Up {
            preset,
            image,
            name,
            port,
            env,
            user,
            wait,
        } => {
            let request = launch::UpRequest {
                preset,
                image,
                name,
                port,
                env,
                user,
                wait: std::time::Duration::from_secs(wait),
            };
            up(&request).await
        }
        Command::Down { name } => match launch::down(&name).await {
            Ok(true) => done(format!("container `{name}` stopped and removed")),
            Ok(false) => done(format!("no container `{name}`")),
            Err(error) => failed(error),
        },
        Command::Logs { name, follow, tail } => match launch::logs(&name, follow, &tail).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => failed(error),
        },
        Command::Restart { name, wait } => {
            match launch::restart(&name, std::time::Duration::from_secs(wait)).await {
                Ok(healthy) => done(format!(
                    "container `{name}` restarted and {}",
                    if healthy { "healthy" } else { "running" }
                )),
                Err(error) => failed(error),
            }
        }
        Command::Unload { container, all } => unload(&container, all),
        Command::Top { agent, interval_ms } => {
            let address = match agent_address(&agent.agent, agent.instance.as_deref()) {
                Ok(address) => address,
                Err(error) => return failed(anyhow::anyhow!(error)),
            };
            let args = top::TopArgs {
                // None found: top names the home directory's in its message, viewing works.
                token_file: token_path(&agent)
                    .unwrap_or_else(|_| paths::Layout::current().token_file()),
                agent: address,
                interval: std::time::Duration::from_millis(interval_ms.max(100)),
            };
            match top::run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => failed(error),
            }
        }
    }
}

/// `crabpot alerts`: the matching alerts from the log, oldest first.
fn alerts(
    file: Option<PathBuf>,
    instance: Option<&str>,
    severity: Option<Severity>,
    since: Option<DateTime<FixedOffset>>,
    last: usize,
    json: bool,
) -> ExitCode {
    let path = match file {
        Some(path) => path,
        None => {
            let candidates = paths::Layout::current().alerts_log_candidates(instance);
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

fn trust_reset(agent: &AgentAccess) -> ExitCode {
    match control_request(agent, "/api/trust/reset") {
        Ok(text) => {
            print!("crabpot: {text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("crabpot: {error}");
            ExitCode::FAILURE
        }
    }
}

fn unload(container: &str, all: bool) -> ExitCode {
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

fn done(text: String) -> ExitCode {
    println!("crabpot: {text}");
    ExitCode::SUCCESS
}

fn failed(error: anyhow::Error) -> ExitCode {
    eprintln!("crabpot: {error:#}");
    ExitCode::FAILURE
}

/// Print the posture findings and score; failure when any is WARNING or worse.
async fn audit(container: &str, json: bool) -> ExitCode {
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

async fn up(request: &launch::UpRequest) -> ExitCode {
    match launch::up(request).await {
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

/// Resume through the running agent (unfreeze + audited trust reset); with no agent
/// answering, through Docker directly.
async fn resume(named: Option<&str>, access: &AgentAccess) -> ExitCode {
    let container = named.unwrap_or("crabpot");
    // Docker names are [a-zA-Z0-9][a-zA-Z0-9_.-]*: nothing to escape in the query.
    if !container
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        eprintln!("crabpot: `{container}` is not a container name");
        return ExitCode::FAILURE;
    }
    let path = match named {
        Some(name) => format!("/api/resume?container={name}"),
        None => "/api/resume".to_string(),
    };
    match control_request(access, &path) {
        Ok(text) => {
            print!("crabpot: container resumed; {text}");
            ExitCode::SUCCESS
        }
        Err(RequestError::NotRunning(why)) => {
            eprintln!("crabpot: {why}; asking Docker directly (no trust reset without the agent)");
            report(container, "resumed", control::resume(container).await)
        }
        Err(error) => {
            eprintln!("crabpot: {error}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug)]
enum RequestError {
    NotRunning(String),
    Other(String),
    /// The agent answered with an error status: its status line and text.
    Answered(String, String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::NotRunning(text) | RequestError::Other(text) => f.write_str(text),
            RequestError::Answered(status, text) => {
                write!(f, "the agent answered: {status} {text}")
            }
        }
    }
}

/// An error of a decision request, said plainly: the agent's own text for an unknown or
/// stale id; where it looked for a dead agent.
fn decision_error(error: RequestError) -> ExitCode {
    match error {
        RequestError::Answered(status, text)
            if !text.is_empty() && (status.contains(" 404") || status.contains(" 409")) =>
        {
            eprintln!("crabpot: {text}");
        }
        RequestError::NotRunning(why) => {
            eprintln!("crabpot: {why}; is the service running? (`systemctl status crabpot-agent`)");
        }
        error => eprintln!("crabpot: {error}"),
    }
    ExitCode::FAILURE
}

/// `crabpot pending`: the decisions waiting for an answer, oldest first.
fn pending(access: &AgentAccess, json: bool) -> ExitCode {
    let body = match read_token(access).and_then(|token| {
        agent_request(&access.agent, "GET", "/api/pending", Some(token.trim()), "")
    }) {
        Ok(body) => body,
        Err(error) => return decision_error(error),
    };
    if json {
        println!("{}", body.trim());
        return ExitCode::SUCCESS;
    }
    let parsed: serde_json::Value = match serde_json::from_str(&body) {
        Ok(value) => value,
        Err(error) => {
            eprintln!("crabpot: unexpected answer from the agent ({error}): {body}");
            return ExitCode::FAILURE;
        }
    };
    let list = parsed["pending"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("crabpot: no pending decisions");
        return ExitCode::SUCCESS;
    }
    for d in &list {
        let text = |key: &str| d[key].as_str().unwrap_or("-").to_string();
        println!(
            "{}  {}  [{}]  {}",
            text("id"),
            text("created"),
            text("container"),
            text("describe")
        );
    }
    println!(
        "crabpot: {} pending; answer with `sudo crabpot approve ID [--always]` or `sudo crabpot \
         deny ID [--keep-frozen]`",
        list.len()
    );
    ExitCode::SUCCESS
}

/// `crabpot approve|deny ID`: the agent carries it out and audits it under the operator's
/// uid.
fn decide(
    access: &AgentAccess,
    id: &str,
    verb: &str,
    mut answer: crabpot_agent::DecisionAnswer,
) -> ExitCode {
    answer.uid = Some(operator_uid());
    // Ids are d-<seconds>-<n>: nothing else reaches the URL path.
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        eprintln!("crabpot: `{id}` is not a decision id (d-…); list them with `crabpot pending`");
        return ExitCode::FAILURE;
    }
    let path = format!("/api/decisions/{id}/{verb}");
    let result = serde_json::to_string(&answer)
        .map_err(|e| RequestError::Other(e.to_string()))
        .and_then(|body| control_request_with(access, &path, &body));
    match result {
        Ok(text) => {
            print!("crabpot: {text}");
            ExitCode::SUCCESS
        }
        Err(error) => decision_error(error),
    }
}

/// POST a token-protected control action; the agent's answer text.
fn control_request(access: &AgentAccess, path: &str) -> Result<String, RequestError> {
    let token = read_token(access)?;
    let agent =
        agent_address(&access.agent, access.instance.as_deref()).map_err(RequestError::Other)?;
    agent_request(&agent, "POST", path, Some(token.trim()), "")
}

/// The operator's uid: the real uid, or the invoking user's under sudo.
fn operator_uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let sudo = std::env::var("SUDO_UID").ok().and_then(|u| u.parse().ok());
    match sudo {
        Some(invoker) if uid == 0 => invoker,
        _ => uid,
    }
}

/// Announce the exec to the agent, then run `docker exec` with the exact argv announced.
fn shell(container: Option<String>, access: &AgentAccess, command: Vec<String>) -> ExitCode {
    let argv = if command.is_empty() {
        vec!["sh".to_string()]
    } else {
        command
    };
    let uid = operator_uid();
    let announce = crabpot_agent::ShellAnnounce {
        uid,
        argv: argv.clone(),
        container,
    };
    let grant = serde_json::to_string(&announce)
        .map_err(|e| RequestError::Other(e.to_string()))
        .and_then(|body| control_request_with(access, "/api/shell/announce", &body))
        .and_then(|text| {
            serde_json::from_str::<crabpot_agent::ShellGrant>(&text)
                .map_err(|e| RequestError::Other(format!("unexpected answer ({e}): {text}")))
        });
    let grant = match grant {
        Ok(grant) => grant,
        Err(error) => {
            eprintln!("crabpot: the agent did not accept the break-glass shell: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "crabpot: break-glass shell in `{}` announced as uid {uid} (audited)",
        grant.container
    );
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let mut docker = std::process::Command::new("docker");
    docker
        .arg("exec")
        .arg(if interactive { "-it" } else { "-i" })
        .arg(&grant.container_id)
        .args(&argv);
    match docker.status() {
        Ok(status) => status
            .code()
            .map_or(ExitCode::FAILURE, |c| ExitCode::from(c.clamp(0, 255) as u8)),
        Err(error) => {
            eprintln!("crabpot: cannot run docker exec: {error}");
            ExitCode::FAILURE
        }
    }
}

/// [`control_request`] with a JSON body.
fn control_request_with(
    access: &AgentAccess,
    path: &str,
    body: &str,
) -> Result<String, RequestError> {
    let token = read_token(access)?;
    let agent =
        agent_address(&access.agent, access.instance.as_deref()).map_err(RequestError::Other)?;
    agent_request(&agent, "POST", path, Some(token.trim()), body)
}

/// The control token file: `--token-file`, else the first that exists of the instance's,
/// or of the system unit's and the home directory's; the error names every path tried.
fn token_path(access: &AgentAccess) -> Result<PathBuf, String> {
    if let Some(path) = &access.token_file {
        return Ok(path.clone());
    }
    let candidates = paths::Layout::current().token_candidates(access.instance.as_deref());
    paths::first_existing("control token", &candidates)
}

fn read_token(access: &AgentAccess) -> Result<String, RequestError> {
    let token_path = token_path(access).map_err(|why| {
        RequestError::Other(format!(
            "{why}; run as the agent's user (root) or pass --token-file / --instance"
        ))
    })?;
    std::fs::read_to_string(&token_path).map_err(|e| {
        RequestError::Other(format!(
            "cannot read the control token {} ({e}); run as the agent's user (root) or pass \
             --token-file",
            token_path.display()
        ))
    })
}

/// GET /api/status from the agent.
fn fetch_status(agent: &str) -> Result<String, String> {
    agent_request(agent, "GET", "/api/status", None, "").map_err(|e| e.to_string())
}

/// One minimal HTTP/1.1 request to the agent; the body of a 200 answer.
fn agent_request(
    agent: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Result<String, RequestError> {
    use std::io::{Read as _, Write as _};
    let not_running = |e: std::io::Error| {
        RequestError::NotRunning(format!(
            "crabpot-agent is not running (nothing answers at http://{agent}: {e}); start it with `sudo crabpot-agent --openclaw` or `systemctl start crabpot-agent`"
        ))
    };
    let other = |e: std::io::Error| RequestError::Other(e.to_string());
    let mut stream = std::net::TcpStream::connect(agent).map_err(not_running)?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .map_err(other)?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let kind = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {agent}\r\n{auth}{kind}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(not_running)?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(other)?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| {
        RequestError::Other("the agent sent a malformed HTTP response".to_string())
    })?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(RequestError::Answered(
            head.lines().next().unwrap_or("").to_string(),
            body.trim().to_string(),
        ));
    }
    Ok(body.to_string())
}

fn status(agent: &str, json: bool) -> ExitCode {
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

fn install() -> ExitCode {
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
