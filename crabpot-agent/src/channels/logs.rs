//! Channel 4: the log scanner. Follows the container's stdout/stderr and matches each line
//! against one compiled pattern set.
use std::pin::Pin;

use bollard::{container::LogOutput, query_parameters::LogsOptionsBuilder};
use futures_util::Stream;
use regex::{Regex, RegexSet};

use crate::model::container::GuardedContainer;
use crate::{
    channels::{StreamWatcher, WatchContext},
    config::{ENCODED_BLOB, LogPattern, SECRET_SHAPES},
    model::alert::{Alert, AlertSource, Severity},
};

/// Longest partial line kept while waiting for its newline.
const MAX_PENDING: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("log pattern set does not compile: {0}")]
pub struct PatternError(#[from] regex::Error);

pub struct LogScanner {
    set: RegexSet,
    patterns: Vec<LogPattern>,
    /// Per pattern: a regex whose matches must also pass [`looks_encoded`] (the blob one).
    confirm: Vec<Option<Regex>>,
    /// Credential shapes, always redacted in what an alert shows (whatever pattern matched);
    /// `true` for the blob shape, whose matches are redacted only when they look encoded.
    secrets: Vec<(bool, Regex)>,
}

/// Characters of a secret kept in alert text: enough to tell the kind of key, never
/// enough to use it.
const SHOWN_PREFIX: usize = 8;

/// Whether a long run of base64 characters is encoded data rather than a hex digest, an
/// identifier or a path: real base64 mixes upper case, lower case and digits, and has few
/// slashes.
pub(crate) fn looks_encoded(run: &str) -> bool {
    let has = |f: fn(&u8) -> bool| run.as_bytes().iter().any(f);
    let slashes = run.bytes().filter(|b| *b == b'/').count();
    has(u8::is_ascii_uppercase)
        && has(u8::is_ascii_lowercase)
        && has(u8::is_ascii_digit)
        && slashes * 16 <= run.len()
}

/// What a line matched: the highest severity and the names of every pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogMatch {
    pub severity: Severity,
    pub patterns: Vec<String>,
}

impl LogScanner {
    pub fn new(patterns: &[LogPattern]) -> Result<Self, PatternError> {
        let confirm = patterns
            .iter()
            .map(|p| {
                (p.name == ENCODED_BLOB)
                    .then(|| Regex::new(&p.regex))
                    .transpose()
            })
            .collect::<Result<_, _>>()?;
        let secrets = SECRET_SHAPES
            .iter()
            .map(|(name, regex, _)| Regex::new(regex).map(|r| (*name == ENCODED_BLOB, r)))
            .collect::<Result<_, _>>()?;
        Ok(LogScanner {
            set: RegexSet::new(patterns.iter().map(|p| p.regex.as_str()))?,
            patterns: patterns.to_vec(),
            confirm,
            secrets,
        })
    }

    pub fn scan(&self, line: &str) -> Option<LogMatch> {
        let matched: Vec<&LogPattern> = self
            .set
            .matches(line)
            .into_iter()
            .filter(|i| match &self.confirm[*i] {
                Some(regex) => regex.find_iter(line).any(|m| looks_encoded(m.as_str())),
                None => true,
            })
            .map(|i| &self.patterns[i])
            .collect();
        let severity = matched.iter().map(|p| p.severity).max()?;
        let mut names: Vec<String> = Vec::new();
        for pattern in matched {
            if !names.contains(&pattern.name) {
                names.push(pattern.name.clone());
            }
        }
        Some(LogMatch {
            severity,
            patterns: names,
        })
    }

    /// `line` with every credential shape (and long encoded blob) cut to a short prefix:
    /// alerts are stored and forwarded, a key in them would leak it further.
    pub fn redact(&self, line: &str) -> String {
        let mut shown = line.to_string();
        for (blob, regex) in &self.secrets {
            if !regex.is_match(&shown) {
                continue;
            }
            shown = regex
                .replace_all(&shown, |caps: &regex::Captures| {
                    let secret = &caps[0];
                    // The header is evidence, not the key; a run of one letter or a hex
                    // digest is no encoded data (the same test the blob pattern passes).
                    if secret.starts_with("-----BEGIN") || (*blob && !looks_encoded(secret)) {
                        return secret.to_string();
                    }
                    let kept: String = secret
                        .chars()
                        .take(SHOWN_PREFIX.min(secret.len() / 3))
                        .collect();
                    format!("{kept}…[redacted {} chars]", secret.len() - kept.len())
                })
                .into_owned();
        }
        shown
    }
}

/// The first `max` characters of `line`, with a marker when more was cut.
pub fn cut(line: &str, max: usize) -> String {
    crate::model::alert::truncate_marked(line, max)
}

/// Splits a byte stream into lines, per output stream.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Complete lines in `chunk` (without their newline); an over-long partial line is
    /// emitted as is rather than kept without bound.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        // Only the new bytes are searched: the pending partial line has no newline in it.
        let mut lines = Vec::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            self.pending.extend_from_slice(&rest[..end]);
            let text = String::from_utf8_lossy(&self.pending);
            lines.push(text.trim_end_matches('\r').to_string());
            self.pending.clear();
            rest = &rest[end + 1..];
        }
        self.pending.extend_from_slice(rest);
        if self.pending.len() > MAX_PENDING {
            lines.push(String::from_utf8_lossy(&self.pending).into_owned());
            self.pending.clear();
        }
        lines
    }
}

pub(crate) struct LogsWatcher {
    scanner: LogScanner,
    stdout: LineSplitter,
    stderr: LineSplitter,
}

impl LogsWatcher {
    pub(crate) fn new(scanner: LogScanner) -> Self {
        LogsWatcher {
            scanner,
            stdout: LineSplitter::default(),
            stderr: LineSplitter::default(),
        }
    }
}

type LogStream = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

impl StreamWatcher for LogsWatcher {
    const CHANNEL: &'static str = "logs";
    type Item = LogOutput;
    type Stream = LogStream;

    fn open(&mut self, ctx: &WatchContext, container: &GuardedContainer) -> LogStream {
        self.stdout = LineSplitter::default();
        self.stderr = LineSplitter::default();
        let since = chrono::Utc::now().timestamp() as i32;
        let options = LogsOptionsBuilder::new()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .since(since)
            .tail("0")
            .build();
        Box::pin(ctx.docker.logs(&container.id, Some(options)))
    }

    async fn handle(&mut self, ctx: &WatchContext, _container: &GuardedContainer, item: LogOutput) {
        let (stream, lines) = match item {
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                ("stdout", self.stdout.push(&message))
            }
            LogOutput::StdErr { message } => ("stderr", self.stderr.push(&message)),
            LogOutput::StdIn { .. } => return,
        };
        for line in lines {
            let Some(found) = self.scanner.scan(&line) else {
                continue;
            };
            // Redacted before the cut, so a key split by the cut is still recognised.
            let shown = cut(&self.scanner.redact(&line), ctx.config.log_line_max);
            let alert = Alert::new(
                found.severity,
                AlertSource::Logs,
                format!("Log pattern {}: {shown}", found.patterns.join(", ")),
            )
            .rule("log_pattern")
            .with("line", shown)
            .with("stream", stream)
            .with("patterns", found.patterns);
            ctx.alerts.raise(alert).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_log_patterns;

    fn scan(line: &str) -> Option<LogMatch> {
        LogScanner::new(&default_log_patterns())
            .expect("compiles")
            .scan(line)
    }

    #[test]
    fn guide_patterns_warn() {
        let found = scan("FATAL: boom").expect("match");
        assert_eq!(found.severity, Severity::Warning);
        assert_eq!(found.patterns, vec!["error_keyword"]);
        assert!(scan("thread panicked: segfault").is_some());
        assert!(scan("403 Forbidden for /admin").is_some());
        assert!(scan("spawning /bin/bash for tool").is_some());
        assert_eq!(scan("GET /health 200"), None);
        assert_eq!(scan("an error in lower case is not the keyword"), None);
    }

    #[test]
    fn steered_agent_signs_have_their_own_severity() {
        assert_eq!(
            scan("calling https://evil.example/x").map(|m| m.severity),
            Some(Severity::Info)
        );
        assert_eq!(
            scan("running pip install requests").map(|m| m.severity),
            Some(Severity::Warning)
        );
        assert_eq!(
            scan("tool: printenv | grep API_KEY").map(|m| m.severity),
            Some(Severity::Critical)
        );
        assert_eq!(
            scan("read /etc/shadow").map(|m| m.severity),
            Some(Severity::Warning)
        );
        assert_eq!(
            scan("exec: whoami").map(|m| m.patterns.contains(&"reconnaissance".to_string())),
            Some(true)
        );
        assert_eq!(
            scan("require('child_process')").map(|m| m.severity),
            Some(Severity::Warning)
        );
    }

    fn corpus(text: &str) -> impl Iterator<Item = &str> {
        text.lines()
            .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
    }

    #[test]
    fn every_attack_line_hits_its_pattern_above_info() {
        let mut hits = 0;
        for entry in corpus(include_str!("log_corpus/attacks.txt")) {
            let (expected, line) = entry.split_once('\t').expect("PATTERN<TAB>LINE");
            let found = scan(line).unwrap_or_else(|| panic!("no match: {line}"));
            assert!(
                found.patterns.iter().any(|p| p == expected),
                "{line}: expected {expected}, got {:?}",
                found.patterns
            );
            assert!(found.severity >= Severity::Warning, "{line}: {found:?}");
            hits += 1;
        }
        assert!(hits >= 30, "the corpus shrank: {hits}");
    }

    #[test]
    fn ordinary_gateway_output_raises_nothing_above_info() {
        let mut lines = 0;
        for line in corpus(include_str!("log_corpus/ordinary.txt")) {
            if let Some(found) = scan(line) {
                assert!(found.severity <= Severity::Info, "{line}: {found:?}");
            }
            lines += 1;
        }
        assert!(lines >= 40, "the corpus shrank: {lines}");
    }

    #[test]
    fn secrets_are_redacted_to_a_prefix() {
        let scanner = LogScanner::new(&default_log_patterns()).expect("compiles");
        let key = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";
        let shown = scanner.redact(&format!("GITHUB_TOKEN={key} and AKIAIOSFODNN7EXAMPLE"));
        assert!(!shown.contains(key), "{shown}");
        assert!(!shown.contains("AKIAIOSFODNN7EXAMPLE"), "{shown}");
        assert!(
            shown.contains("GITHUB_TOKEN=ghp_16C7…[redacted 32 chars]"),
            "{shown}"
        );
        assert!(shown.contains("AKIAIO…[redacted 14 chars]"), "{shown}");
        for entry in corpus(include_str!("log_corpus/attacks.txt")) {
            let (name, line) = entry.split_once('\t').expect("PATTERN<TAB>LINE");
            let shown = scanner.redact(line);
            if name == "private_key" {
                assert!(shown.contains("PRIVATE KEY-----"), "{shown}");
            } else if SECRET_SHAPES.iter().any(|(n, ..)| *n == name) {
                assert!(shown.contains("…[redacted"), "{shown}");
            }
        }
        assert_eq!(scanner.redact("GET /health 200"), "GET /health 200");
    }

    #[test]
    fn encoded_blobs_are_told_from_digests_and_paths() {
        assert!(looks_encoded(
            "UEsDBBQAAAAIAGV0hVdXq3k9Nw0AAEsgAAAKABwAc2VjcmV0cy5lbnZV"
        ));
        assert!(!looks_encoded(
            &"9f86d081884c7d659a2feaa0c55ad015".repeat(4)
        ));
        assert!(!looks_encoded(&"/usr/Lib/x86/Node/Modules".repeat(5)));
    }

    #[test]
    fn cuts_on_characters_not_bytes() {
        assert_eq!(cut("ééé", 2), "éé…[truncated 2 bytes]");
        assert_eq!(cut("short", 200), "short");
    }

    #[test]
    fn splits_lines_across_chunks_and_bounds_partials() {
        let mut splitter = LineSplitter::default();
        assert!(splitter.push(b"FATAL: bo").is_empty());
        assert_eq!(
            splitter.push(b"om\r\nnext\n\xffx"),
            vec!["FATAL: boom", "next"]
        );
        assert_eq!(splitter.push(b"\n"), vec!["\u{fffd}x"]);
        let long = vec![b'a'; MAX_PENDING + 1];
        assert_eq!(splitter.push(&long).len(), 1);
    }

    /// Found by the `log_scanner` fuzz target: every push rescanned the whole partial line,
    /// so a container writing a long line a byte at a time cost the agent quadratic time
    /// (64 KiB in 1-byte frames: two billion comparisons).
    #[test]
    fn a_line_arriving_a_byte_at_a_time_costs_linear_time() {
        let mut splitter = LineSplitter::default();
        let started = std::time::Instant::now();
        for _ in 0..MAX_PENDING {
            assert!(splitter.push(b"x").is_empty());
        }
        let lines = splitter.push(b"\n");
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), MAX_PENDING);
        let mut many = b"a\n".repeat(MAX_PENDING);
        many.extend_from_slice(b"tail");
        assert_eq!(splitter.push(&many).len(), MAX_PENDING);
        assert_eq!(splitter.push(b"\r\n"), vec!["tail"]);
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(2), "{took:?}");
    }
}
