//! The agent's HTTP API as the operator reaches it: its address, the control token, one
//! plain HTTP/1.1 request per call (no client library for a handful of local requests).
use std::path::PathBuf;

use crabpot_agent::paths;

use crate::args::{AgentAccess, DEFAULT_AGENT};

/// The agent's address: `--agent`, else the `listen:` of the instance's configuration.
pub(crate) fn agent_address(agent: &str, instance: Option<&str>) -> Result<String, String> {
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

#[derive(Debug)]
pub(crate) enum RequestError {
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

/// POST a token-protected control action; the agent's answer text.
pub(crate) fn control_request(access: &AgentAccess, path: &str) -> Result<String, RequestError> {
    let token = read_token(access)?;
    let agent =
        agent_address(&access.agent, access.instance.as_deref()).map_err(RequestError::Other)?;
    agent_request(&agent, "POST", path, Some(token.trim()), "")
}

/// [`control_request`] with a JSON body.
pub(crate) fn control_request_with(
    access: &AgentAccess,
    path: &str,
    body: &str,
) -> Result<String, RequestError> {
    let token = read_token(access)?;
    let agent =
        agent_address(&access.agent, access.instance.as_deref()).map_err(RequestError::Other)?;
    agent_request(&agent, "POST", path, Some(token.trim()), body)
}

/// The operator's uid: the real uid, or the invoking user's under sudo.
pub(crate) fn operator_uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let sudo = std::env::var("SUDO_UID").ok().and_then(|u| u.parse().ok());
    match sudo {
        Some(invoker) if uid == 0 => invoker,
        _ => uid,
    }
}

/// The control token file: `--token-file`, else the first that exists of the instance's,
/// or of the system unit's and the home directory's; the error names every path tried.
pub(crate) fn token_path(access: &AgentAccess) -> Result<PathBuf, String> {
    if let Some(path) = &access.token_file {
        return Ok(path.clone());
    }
    let candidates = paths::Layout::current().token_candidates(access.instance.as_deref());
    paths::first_existing("control token", &candidates)
}

pub(crate) fn read_token(access: &AgentAccess) -> Result<String, RequestError> {
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
pub(crate) fn fetch_status(agent: &str) -> Result<String, String> {
    agent_request(agent, "GET", "/api/status", None, "").map_err(|e| e.to_string())
}

/// One minimal HTTP/1.1 request to the agent; the body of a 200 answer.
pub(crate) fn agent_request(
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
