//! `--events`: one line per kernel event on stdout, as text or JSON.
use std::io::Write as _;

use serde::Serialize;

use crate::{
    sinks::terminal_text::escape_for_terminal,
    sources::{
        bpf::{EventBody, KernelEvent},
        lineage::Ancestor,
    },
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EventFormat {
    Text,
    Json,
}

/// A kernel event with what the agent knows around it.
#[derive(Debug, Clone, Serialize)]
pub struct ObservedEvent<'a> {
    pub container: &'a str,
    pub container_id: &'a str,
    #[serde(flatten)]
    pub event: &'a KernelEvent,
    pub lineage: &'a [Ancestor],
}

fn describe(body: &EventBody) -> String {
    match body {
        EventBody::Exec {
            syscall,
            filename,
            argv,
            ret,
            ..
        } if *ret < 0 => format!("{syscall} {filename} argv={argv:?} failed ({ret})"),
        EventBody::Exec {
            syscall,
            filename,
            argv,
            ..
        } => format!("{syscall} {filename} argv={argv:?}"),
        EventBody::Open { path, flags, .. } => format!("openat {path} flags={flags:#x}"),
        EventBody::Connect {
            family,
            address,
            port,
            ..
        } => match address {
            Some(address) => format!("connect {address} port {port}"),
            None => format!("connect family={family}"),
        },
        EventBody::Ptrace {
            request,
            target_pid,
            verdict,
            ..
        } => format!(
            "ptrace request={request} target={target_pid} {}",
            verdict.as_str()
        ),
        EventBody::Mount {
            source,
            target,
            fstype,
            flags,
            verdict,
            from_fd,
            to_fd,
            ..
        } => format!(
            "mount {source} on {target} type {fstype} flags={flags:#x} from_fd={from_fd} \
             to_fd={to_fd} {}",
            verdict.as_str()
        ),
        EventBody::NetPolicy {
            rule,
            verdict,
            op,
            address,
            port,
            family,
            ..
        } => match address {
            Some(address) => format!(
                "{} {op} {address} port {port} {}",
                rule.as_str(),
                verdict.as_str()
            ),
            None => format!(
                "{} {op} family={family} {}",
                rule.as_str(),
                verdict.as_str()
            ),
        },
        EventBody::Refused { rule, ret } => format!("{} refused ret={ret}", rule.as_str()),
        EventBody::DnsReply {
            resolver, payload, ..
        } => match resolver {
            Some(resolver) => format!("dns reply from {resolver} ({} bytes)", payload.len()),
            None => format!("dns reply ({} bytes)", payload.len()),
        },
    }
}

/// The line printed for an event in `format`.
pub fn format_line(observed: &ObservedEvent<'_>, format: EventFormat) -> String {
    match format {
        EventFormat::Json => serde_json::to_string(observed)
            .unwrap_or_else(|e| format!("{{\"error\":\"cannot encode event: {e}\"}}")),
        EventFormat::Text => {
            let h = &observed.event.header;
            let lineage: Vec<String> = observed
                .lineage
                .iter()
                .map(|a| format!("{}({})", a.name, a.pid))
                .collect();
            escape_for_terminal(&format!(
                "[{}] {} pid={} tgid={} ppid={} uid={} comm={} cgroup={} {}{}",
                observed.event.kind().name(),
                observed.container,
                h.pid,
                h.tgid,
                h.ppid,
                h.uid,
                h.comm,
                h.cgroup_id,
                describe(&observed.event.body),
                if lineage.is_empty() {
                    String::new()
                } else {
                    format!(" lineage={}", lineage.join("<"))
                }
            ))
        }
    }
}

/// Print one line; a closed stdout is reported to the caller.
pub fn print_line(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}
