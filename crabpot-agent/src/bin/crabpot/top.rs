//! `crabpot top`: a live terminal view of the running agent — guarded containers, pending
//! decisions, recent alerts — with keys to pause, resume, approve and deny. It polls the
//! agent's HTTP API (`/api/status`, `/api/recent`, `/api/pending`); actions use the token.
#[path = "top/state.rs"]
mod state;
#[path = "top/view.rs"]
mod view;

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use state::TopState;

/// What one key asks for.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Quit,
    Pause,
    Resume,
    Approve { always: bool },
    Deny { keep_frozen: bool },
    Next,
    Previous,
    Nothing,
}

fn action_for(key: KeyEvent) -> Action {
    if key.kind != KeyEventKind::Press {
        return Action::Nothing;
    }
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Action::Quit,
        KeyCode::Char('p') => Action::Pause,
        KeyCode::Char('r') => Action::Resume,
        KeyCode::Char('a') => Action::Approve { always: false },
        KeyCode::Char('A') => Action::Approve { always: true },
        KeyCode::Char('d') => Action::Deny { keep_frozen: false },
        KeyCode::Char('D') => Action::Deny { keep_frozen: true },
        KeyCode::Down | KeyCode::Char('j') => Action::Next,
        KeyCode::Up | KeyCode::Char('k') => Action::Previous,
        _ => Action::Nothing,
    }
}

/// The agent's API, with the control token when it could be read.
struct AgentApi {
    base: String,
    token: Option<String>,
    token_problem: String,
    http: reqwest::Client,
}

impl AgentApi {
    async fn get(&self, path: &str) -> anyhow::Result<Option<Value>> {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| {
            anyhow::anyhow!(
                "crabpot-agent does not answer at {} ({e}); is it running?",
                self.base
            )
        })?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!("{path}: {status}: {}", body.trim());
        }
        Ok(Some(serde_json::from_str(&body).with_context(|| {
            format!("{path} answered something that is not JSON")
        })?))
    }

    /// A token-protected POST; the agent's answer text, or why it refused.
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<String> {
        let Some(token) = &self.token else {
            anyhow::bail!("{}", self.token_problem);
        };
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("crabpot-agent does not answer at {}", self.base))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(text.trim().to_string())
        } else {
            anyhow::bail!("{status}: {}", text.trim())
        }
    }
}

/// Refresh everything on screen from the agent; a failure is shown, not fatal.
async fn refresh(api: &AgentApi, state: &mut TopState) {
    let fetched = async {
        let status = api.get("/api/status").await?.unwrap_or(Value::Null);
        let recent = api.get("/api/recent?last=50").await?.unwrap_or(Value::Null);
        let pending = api.get("/api/pending").await?;
        anyhow::Ok((status, recent, pending))
    }
    .await;
    match fetched {
        Ok((status, recent, pending)) => {
            let mut containers = state::containers_from_status(&status);
            state::apply_stats(&mut containers, &recent);
            state.containers = containers;
            state.alerts = state::alerts_from_recent(&recent);
            state.pending_supported = pending.is_some();
            state.pending = pending
                .as_ref()
                .map(state::pending_from)
                .unwrap_or_default();
            state.clamp_selection();
            state.error = None;
            state.updated = chrono::Local::now().format("%H:%M:%S").to_string();
        }
        Err(error) => state.error = Some(format!("{error:#}")),
    }
}

/// Carry out `action`; `false` to quit.
async fn act(api: &AgentApi, state: &mut TopState, action: Action) -> bool {
    let outcome = match action {
        Action::Quit => return false,
        Action::Nothing => return true,
        Action::Next => {
            state.select_next();
            return true;
        }
        Action::Previous => {
            state.select_previous();
            return true;
        }
        Action::Pause => api.post("/api/pause", json!({})).await,
        Action::Resume => api.post("/api/resume", json!({})).await,
        Action::Approve { always } => match state.selected_decision() {
            Some(d) => {
                let path = format!("/api/decisions/{}/approve", d.id);
                api.post(&path, json!({ "always": always })).await
            }
            None => Err(anyhow::anyhow!("no pending decision to approve")),
        },
        Action::Deny { keep_frozen } => match state.selected_decision() {
            Some(d) => {
                let path = format!("/api/decisions/{}/deny", d.id);
                api.post(&path, json!({ "keep_frozen": keep_frozen })).await
            }
            None => Err(anyhow::anyhow!("no pending decision to deny")),
        },
    };
    state.message = match outcome {
        Ok(text) if text.is_empty() => "done".into(),
        Ok(text) => text,
        Err(error) => format!("refused: {error:#}"),
    };
    true
}

/// Keys from the terminal, read on their own thread (crossterm's read blocks).
fn key_reader() -> mpsc::UnboundedReceiver<KeyEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while let Ok(event) = event::read() {
            if let Event::Key(key) = event
                && tx.send(key).is_err()
            {
                return;
            }
        }
    });
    rx
}

pub(crate) struct TopArgs {
    pub(crate) agent: String,
    pub(crate) token_file: PathBuf,
    pub(crate) interval: Duration,
}

pub(crate) async fn run(args: TopArgs) -> anyhow::Result<()> {
    let (token, token_problem) = match std::fs::read_to_string(&args.token_file) {
        Ok(text) => (Some(text.trim().to_string()), String::new()),
        Err(error) => (
            None,
            format!(
                "cannot read the control token {} ({error}): viewing works, actions need \
                 it (run as the agent's user or pass --token-file)",
                args.token_file.display()
            ),
        ),
    };
    let api = AgentApi {
        base: format!("http://{}", args.agent),
        token,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()?,
        token_problem: token_problem.clone(),
    };
    let mut state = TopState {
        agent: args.agent.clone(),
        message: token_problem,
        ..TopState::default()
    };
    let mut keys = key_reader();
    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let result = async {
        loop {
            refresh(&api, &mut state).await;
            terminal.draw(|frame| view::draw(frame, &state))?;
            tokio::select! {
                key = keys.recv() => {
                    let Some(key) = key else { return anyhow::Ok(()) };
                    if !act(&api, &mut state, action_for(key)).await {
                        return Ok(());
                    }
                }
                () = tokio::time::sleep(args.interval) => {}
            }
        }
    }
    .await;
    ratatui::try_restore().context("cannot restore the terminal")?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_actions() {
        let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
        assert_eq!(action_for(key(KeyCode::Char('q'))), Action::Quit);
        assert_eq!(
            action_for(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Action::Quit
        );
        assert_eq!(
            action_for(key(KeyCode::Char('A'))),
            Action::Approve { always: true }
        );
        assert_eq!(
            action_for(key(KeyCode::Char('D'))),
            Action::Deny { keep_frozen: true }
        );
        assert_eq!(action_for(key(KeyCode::Down)), Action::Next);
        assert_eq!(action_for(key(KeyCode::Char('x'))), Action::Nothing);
    }
}
