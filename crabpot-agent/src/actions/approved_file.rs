//! `crabpot approve ID --always`: the narrowest entry that lets exactly the approved act
//! through, appended to the managed drop-in `<config dir>/conf.d/90-approved.yml` (then the
//! agent reloads). An exec becomes an exception on [exec, process] for that executable,
//! parent and exact argv; a destination an `allow:` entry host:port (the DNS-learned name
//! when known) or address:port.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::policy::decisions::Decision;

/// The managed drop-in's file name: late in name order, so it adds to everything else.
pub(crate) const MANAGED_NAME: &str = "90-approved.yml";

const HEADER: &str = "# managed by crabpot approve: each entry was approved by an operator \
                      (`crabpot approve ID --always`).\n# The agent appends to this file and \
                      reloads; remove an entry to withdraw it (then `systemctl reload \
                      crabpot-agent` or SIGHUP).\n";

pub(crate) fn managed_path(config_dir: &Path) -> PathBuf {
    crate::config_file::dropin_dir(config_dir).join(MANAGED_NAME)
}

/// An exception as the managed file writes it (the same keys monitor.yml reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ManagedException {
    pub name: String,
    pub rules: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ancestor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Managed {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    exceptions: Vec<ManagedException>,
}

/// One entry for the managed file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Entry {
    Exception(ManagedException),
    Allow(String),
}

impl Entry {
    pub(crate) fn describe(&self) -> String {
        match self {
            Entry::Exception(e) => format!(
                "exception `{}` (executable {}, parent {}, argv ^{}$)",
                e.name,
                e.executable.as_deref().unwrap_or("-"),
                e.ancestor.as_deref().unwrap_or("-"),
                e.argv.as_deref().unwrap_or("-")
            ),
            Entry::Allow(a) => format!("allow entry `{a}`"),
        }
    }
}

/// The narrowest entry that lets the act of `decision` through; an error says why there
/// is none (an alert that is neither an exec nor a destination).
pub(crate) fn narrowest(decision: &Decision) -> Result<Entry, String> {
    let s = &decision.subject;
    match s.kind.as_str() {
        "exec" => {
            let executable = s
                .executable
                .clone()
                .ok_or("the exec's executable is unknown")?;
            // Anchored (the exception adds ^…$) and exact: every character taken literally.
            let argv = s.argv.as_ref().map(|a| regex::escape(&a.join(" ")));
            Ok(Entry::Exception(ManagedException {
                name: format!("approved-{}", decision.id),
                rules: vec!["exec".into(), "process".into()],
                executable: Some(executable),
                ancestor: s.parent.clone().filter(|p| !p.is_empty()),
                argv,
            }))
        }
        "destination" => {
            let port = s.port.ok_or("the destination's port is unknown")?;
            let entry = match (&s.host, &s.address) {
                (Some(host), _) => format!("{host}:{port}"),
                (None, Some(address)) if address.contains(':') => format!("[{address}]:{port}"),
                (None, Some(address)) => format!("{address}:{port}"),
                (None, None) => return Err("the destination's address is unknown".into()),
            };
            Ok(Entry::Allow(entry))
        }
        _ => Err(format!(
            "a `{}` alert has no narrow exception to write (only an exec or a destination \
             has); approve it without --always, or write an exception in monitor.yml",
            s.rule
        )),
    }
}

/// Append `entry` to the managed file (created with its header), atomically.
pub(crate) fn append(path: &Path, entry: &Entry) -> Result<(), String> {
    let mut managed: Managed = match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => serde_norway::from_str(&text).map_err(|e| {
            format!(
                "{} cannot be read back ({e}); fix or remove it",
                path.display()
            )
        })?,
        _ => Managed::default(),
    };
    match entry {
        Entry::Exception(e) if !managed.exceptions.contains(e) => {
            managed.exceptions.push(e.clone())
        }
        Entry::Allow(a) if !managed.allow.contains(a) => managed.allow.push(a.clone()),
        _ => {}
    }
    let body = serde_norway::to_string(&managed).map_err(|e| e.to_string())?;
    let dir = path.parent().ok_or("the managed file has no directory")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let temp = path.with_extension(format!("yml.tmp{}", std::process::id()));
    std::fs::write(&temp, format!("{HEADER}{body}"))
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::decisions::{Status, Subject};

    fn decision(subject: Subject) -> Decision {
        Decision {
            id: "d-1-1".into(),
            container: "c".into(),
            container_id: "abc".into(),
            created: String::new(),
            created_unix: 1,
            status: Status::Pending,
            subject,
            answer: None,
            alert_id: String::new(),
        }
    }

    fn exec(argv: &[&str]) -> Subject {
        Subject {
            kind: "exec".into(),
            executable: Some("/bin/sh".into()),
            argv: Some(argv.iter().map(|s| s.to_string()).collect()),
            parent: Some("runc".into()),
            ..Subject::default()
        }
    }

    #[test]
    fn the_written_exception_matches_exactly_the_approved_exec() {
        use crate::policy::exceptions::{Exceptions, Scope, Subject as Act};
        let dir = std::env::temp_dir().join(format!(
            "crabpot-approved-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let path = managed_path(&dir);
        let entry = narrowest(&decision(exec(&["sh", "-c", "echo a.b*"]))).expect("exec");
        append(&path, &entry).expect("write");
        append(&path, &entry).expect("again: no duplicate");
        let allow = narrowest(&decision(Subject {
            kind: "destination".into(),
            address: Some("192.0.2.7".into()),
            port: Some(443),
            ..Subject::default()
        }))
        .expect("destination");
        assert_eq!(allow, Entry::Allow("192.0.2.7:443".into()));
        append(&path, &allow).expect("write allow");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("# managed by crabpot approve"), "{text}");
        // The file is a valid drop-in and its exception matches only the exact argv.
        let file = crate::config_file::parse(&path, &text).expect("valid drop-in");
        assert_eq!(file.allow.as_ref().map(Vec::len), Some(1));
        let list = Exceptions::new(file.exceptions.unwrap_or_default());
        assert_eq!(list.hits().len(), 1);
        let act = |exe: &str, argv: &[&str], parent: &str| Act {
            executable: Some(exe.into()),
            argv: Some(argv.iter().map(|s| s.to_string()).collect()),
            ancestors: vec![crate::model::event::Ancestor {
                pid: 9,
                name: parent.into(),
            }],
            ..Act::default()
        };
        let scopes = [Scope::Process];
        let hit = |a: &Act| list.matching(&scopes, a);
        assert!(hit(&act("/bin/sh", &["sh", "-c", "echo a.b*"], "runc")).is_some());
        assert!(
            hit(&act("/bin/sh", &["sh", "-c", "echo aXb*"], "runc")).is_none(),
            "literal"
        );
        assert!(hit(&act("/bin/sh", &["sh", "-c", "echo a.b* x"], "runc")).is_none());
        assert!(hit(&act("/bin/ash", &["sh", "-c", "echo a.b*"], "runc")).is_none());
        assert!(hit(&act("/bin/sh", &["sh", "-c", "echo a.b*"], "node")).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn destinations_prefer_the_learned_name_and_alerts_have_no_narrow_entry() {
        let named = Subject {
            kind: "destination".into(),
            address: Some("2001:db8::1".into()),
            port: Some(443),
            ..Subject::default()
        };
        assert_eq!(
            narrowest(&decision(named.clone())),
            Ok(Entry::Allow("[2001:db8::1]:443".into()))
        );
        let host = Subject {
            host: Some("api.example.com".into()),
            ..named
        };
        assert_eq!(
            narrowest(&decision(host)),
            Ok(Entry::Allow("api.example.com:443".into()))
        );
        let other = Subject {
            kind: "alert".into(),
            rule: "log_pattern".into(),
            ..Subject::default()
        };
        assert!(narrowest(&decision(other)).is_err_and(|e| e.contains("without --always")));
    }
}
