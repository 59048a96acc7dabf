//! Learn mode's result: the proposed monitor.yml, written atomically. The running policy is
//! carried over (container, profiles, rule actions, allowlist, exceptions) and what was
//! learned is added, each entry with a `# seen N times, first …, last …` comment. The file
//! is meant to be read, trimmed and then used as it is: `--config` accepts it unchanged.
use std::{
    io::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;

use crate::policy::{
    learn::{CarriedOver, Learned, LearnedException, Seen},
    rules::Policy,
};

/// How the learning went, for the file's header.
pub(crate) struct Session {
    pub duration: Duration,
    pub started: String,
    pub ended: String,
    /// Stopped by a signal before the time was up.
    pub cut_short: bool,
}

/// A string as a YAML scalar: single-quoted (readable regexes, no escapes), or as a JSON
/// string (a valid YAML double-quoted scalar) when it holds control characters.
fn scalar(text: &str) -> String {
    if text.chars().any(char::is_control) {
        serde_json::Value::from(text).to_string()
    } else {
        format!("'{}'", text.replace('\'', "''"))
    }
}

/// Text for a comment: one line, control characters escaped, bounded (it may be container
/// output).
fn comment_text(text: &str) -> String {
    let one_line: String = text.escape_debug().collect();
    crate::model::alert::truncate_marked(&one_line, 200)
}

fn seen_comment(seen: &Seen) -> String {
    let times = if seen.count == 1 { "time" } else { "times" };
    format!(
        "seen {} {times}, first {}, last {}",
        seen.count, seen.first, seen.last
    )
}

fn header(out: &mut String, carried: &CarriedOver, session: &Session) {
    out.push_str(&format!(
        "# Proposed by crabpot-agent learn mode ({}s) for container `{}`.\n",
        session.duration.as_secs(),
        comment_text(&carried.container)
    ));
    out.push_str(&format!(
        "# Learned from {} to {}{}.\n",
        session.started,
        session.ended,
        if session.cut_short {
            "; CUT SHORT by a stop signal before the time was up"
        } else {
            ""
        }
    ));
    let source = carried.file.as_ref().map_or_else(
        || "defaults and flags (no file)".to_string(),
        |p| p.display().to_string(),
    );
    out.push_str(&format!("# Based on: {}.\n", comment_text(&source)));
    out.push_str(
        "# Review every learned entry and remove what this container should not do, then\n\
         #   crabpot-agent --check-config --config THIS_FILE\n\
         #   crabpot-agent --config THIS_FILE\n\
         # Not carried over (copy by hand if you set them): thresholds, intervals, denylist,\n\
         # log patterns, trust, alerts_log.\n",
    );
}

fn policy_section(out: &mut String, carried: &CarriedOver) {
    out.push_str(&format!("container: {}\n", scalar(&carried.container)));
    out.push_str(&format!("profiles: [{}]\n", carried.profiles.join(", ")));
    if !carried.auto_pause {
        out.push_str("auto_pause: false\n");
    }
    out.push_str("policy:\n");
    for (rule, action) in carried.policy.rules() {
        out.push_str(&format!("  {}: {action}\n", rule.as_str()));
    }
}

fn allow_section(out: &mut String, policy: &Policy, learned: &Learned) {
    let carried: Vec<String> = policy
        .allow
        .iter()
        .map(ToString::to_string)
        .chain(policy.allow_hosts.iter().map(|h| match h.port {
            Some(port) => format!("{}:{port}", h.name),
            None => h.name.clone(),
        }))
        .collect();
    let fresh: Vec<(String, Seen)> = learned
        .allow_entries()
        .into_iter()
        .filter(|(entry, _)| !carried.contains(entry))
        .collect();
    if carried.is_empty() && fresh.is_empty() {
        out.push_str("allow: []\n");
        return;
    }
    out.push_str("allow:\n");
    if !carried.is_empty() {
        out.push_str("  # carried over from the running policy\n");
    }
    for entry in &carried {
        out.push_str(&format!("  - {}\n", scalar(entry)));
    }
    for (entry, seen) in &fresh {
        out.push_str(&format!("  # learned: {}\n", seen_comment(seen)));
        out.push_str(&format!("  - {}\n", scalar(entry)));
    }
}

fn exception_lines(
    out: &mut String,
    name: &str,
    rules: &[String],
    fields: &[(&str, String, bool)],
) {
    out.push_str(&format!("  - name: {}\n", scalar(name)));
    out.push_str(&format!("    rules: [{}]\n", rules.join(", ")));
    for (key, value, quoted) in fields {
        let value = if *quoted {
            scalar(value)
        } else {
            value.clone()
        };
        out.push_str(&format!("    {key}: {value}\n"));
    }
}

fn learned_fields(exception: &LearnedException) -> Vec<(&'static str, String, bool)> {
    [
        ("executable", &exception.executable),
        ("ancestor", &exception.ancestor),
        ("argv", &exception.argv),
        ("path", &exception.path),
    ]
    .into_iter()
    .filter_map(|(key, value)| value.clone().map(|v| (key, v, true)))
    .collect()
}

fn exceptions_section(out: &mut String, carried: &CarriedOver, learned: &Learned) {
    // An exception with no criterion would match everything: the parser refuses it.
    let fresh: Vec<(&LearnedException, &Seen)> = learned
        .exceptions
        .iter()
        .filter(|(e, _)| !learned_fields(e).is_empty())
        .collect();
    if carried.exceptions.is_empty() && fresh.is_empty() {
        return;
    }
    out.push_str("exceptions:\n");
    for (name, rules, fields) in &carried.exceptions {
        exception_lines(out, name, rules, fields);
    }
    let taken: Vec<&String> = carried.exceptions.iter().map(|e| &e.0).collect();
    let mut number = 0;
    for (exception, seen) in fresh {
        let rule = exception.rules.first().copied().unwrap_or("rule");
        let name = loop {
            number += 1;
            let name = format!("learned-{rule}-{number}");
            if !taken.contains(&&name) {
                break name;
            }
        };
        out.push_str(&format!("  # learned: {}\n", seen_comment(seen)));
        let rules: Vec<String> = exception.rules.iter().map(|r| r.to_string()).collect();
        exception_lines(out, &name, &rules, &learned_fields(exception));
    }
}

fn seen_only_section(out: &mut String, learned: &Learned) {
    if !learned.proc_reads.is_empty() {
        out.push_str(
            "# /proc reads seen (proc_open is `log`: they went to audit.log and raise \
             nothing, so no exception is needed):\n",
        );
        for (read, seen) in &learned.proc_reads {
            out.push_str(&format!(
                "#   {} by {} (parent {}): {}\n",
                comment_text(&read.path),
                comment_text(&read.executable),
                comment_text(&read.ancestor),
                seen_comment(seen)
            ));
        }
    }
    if !learned.unlearnable.is_empty() {
        out.push_str(
            "# Raised and not learnable here (log patterns, thresholds, health, lifecycle): \
             adjust those settings by hand if they are expected:\n",
        );
        for ((severity, rule, message), seen) in &learned.unlearnable {
            out.push_str(&format!(
                "#   {severity} {}: {}: {}\n",
                comment_text(rule),
                comment_text(message),
                seen_comment(seen)
            ));
        }
    }
    if learned.is_empty() {
        out.push_str("# Nothing was raised while learning: the running policy already fits.\n");
    }
}

/// The proposed file's text.
pub(crate) fn render(learned: &Learned, carried: &CarriedOver, session: &Session) -> String {
    let mut out = String::new();
    header(&mut out, carried, session);
    policy_section(&mut out, carried);
    allow_section(&mut out, &carried.policy, learned);
    exceptions_section(&mut out, carried, learned);
    seen_only_section(&mut out, learned);
    out
}

/// Write `text` to `path` atomically: a temporary file beside it, synced, then renamed.
pub(crate) fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "monitor.learned.yml".into());
    let temporary: PathBuf = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut file = std::fs::File::create(&temporary)
        .with_context(|| format!("creating {}", temporary.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("renaming {} to {}", temporary.display(), path.display()))
}

#[cfg(test)]
#[path = "learn_file_tests.rs"]
mod tests;
