//! `--events`: one line per kernel event on stdout, as text or JSON.
use std::io::Write as _;

use serde::Serialize;

use crate::{
    model::event::{Ancestor, KernelEvent},
    sinks::terminal_text::escape_for_terminal,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EventFormat {
    Text,
    Json,
}

/// A kernel event with what the agent knows around it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ObservedEvent<'a> {
    pub container: &'a str,
    pub container_id: &'a str,
    #[serde(flatten)]
    pub event: &'a KernelEvent,
    pub lineage: &'a [Ancestor],
}

/// The line printed for an event in `format`.
pub(crate) fn format_line(observed: &ObservedEvent<'_>, format: EventFormat) -> String {
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
                crate::events::describe(&observed.event.body),
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
pub(crate) fn print_line(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}
