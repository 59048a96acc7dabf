//! Commands that answer the agent's pending decisions: pending, approve, deny.
use std::process::ExitCode;

use crate::{
    agent_api::{RequestError, agent_request, control_request_with, operator_uid, read_token},
    args::AgentAccess,
};

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
pub(crate) fn pending(access: &AgentAccess, json: bool) -> ExitCode {
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

/// `crabpot approve ID [--always]`.
pub(crate) fn approve(access: &AgentAccess, id: &str, always: bool) -> ExitCode {
    let answer = crabpot_agent::DecisionAnswer {
        always,
        ..crabpot_agent::DecisionAnswer::default()
    };
    decide(access, id, "approve", answer)
}

/// `crabpot deny ID [--keep-frozen]`.
pub(crate) fn deny(access: &AgentAccess, id: &str, keep_frozen: bool) -> ExitCode {
    let answer = crabpot_agent::DecisionAnswer {
        keep_frozen,
        ..crabpot_agent::DecisionAnswer::default()
    };
    decide(access, id, "deny", answer)
}
