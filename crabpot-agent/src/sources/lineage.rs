//! Process lineage for events: who started the process, and who started that one.
//!
//! The kernel gives the parent for processes forked inside the container; exec events give
//! the program names. What the table has not seen (processes that predate the agent, or the
//! first process of a `docker exec`, forked outside the container) is read once from
//! `/proc/<pid>/stat` and cached.
use std::collections::HashMap;

use crate::model::event::{Ancestor, EventBody, KernelEvent};

/// Ancestors kept per event.
pub(crate) const MAX_DEPTH: usize = 4;
/// Entries kept before the table is emptied (bounds memory under pid churn).
const MAX_ENTRIES: usize = 32 * 1024;

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    ppid: u32,
}

#[derive(Debug, Default)]
pub(crate) struct ProcessTable {
    entries: HashMap<u32, Entry>,
}

/// Program name and parent pid from the text of `/proc/<pid>/stat`.
pub(crate) fn parse_stat(stat: &str) -> Option<(String, u32)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((name, ppid))
}

fn read_proc(pid: u32) -> Option<(String, u32)> {
    // A process name is hostile input and need not be UTF-8.
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&String::from_utf8_lossy(&stat))
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl ProcessTable {
    fn insert(&mut self, pid: u32, entry: Entry) {
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.clear();
        }
        self.entries.insert(pid, entry);
    }

    /// Learn from an event: an exec names its process; any event tells us its parent.
    pub(crate) fn observe(&mut self, event: &KernelEvent) {
        let tgid = event.header.tgid;
        let known_ppid = self.entries.get(&tgid).map(|e| e.ppid).unwrap_or(0);
        let ppid = match (event.header.ppid, known_ppid) {
            (0, 0) => read_proc(tgid).map(|(_, ppid)| ppid).unwrap_or(0),
            (0, known) => known,
            (from_kernel, _) => from_kernel,
        };
        match &event.body {
            // A failed exec leaves the process running its old program.
            EventBody::Exec {
                filename, ret: 0, ..
            } => {
                let name = basename(filename).to_string();
                self.insert(tgid, Entry { name, ppid });
            }
            _ if !self.entries.contains_key(&tgid) && ppid != 0 => {
                let name = event.header.comm.clone();
                self.insert(tgid, Entry { name, ppid });
            }
            _ => {}
        }
    }

    fn lookup(&mut self, pid: u32) -> Option<Entry> {
        if let Some(entry) = self.entries.get(&pid) {
            return Some(entry.clone());
        }
        let (name, ppid) = read_proc(pid)?;
        let entry = Entry { name, ppid };
        self.insert(pid, entry.clone());
        Some(entry)
    }

    /// Parent, grandparent… of the event's process, nearest first.
    pub(crate) fn lineage(&mut self, event: &KernelEvent) -> Vec<Ancestor> {
        let mut lineage = Vec::new();
        let mut pid = match event.header.ppid {
            0 => self.lookup(event.header.tgid).map(|e| e.ppid).unwrap_or(0),
            ppid => ppid,
        };
        while pid > 1 && lineage.len() < MAX_DEPTH {
            let Some(entry) = self.lookup(pid) else { break };
            lineage.push(Ancestor {
                pid,
                name: entry.name,
            });
            pid = entry.ppid;
        }
        lineage
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::Header;

    fn exec(tgid: u32, ppid: u32, filename: &str) -> KernelEvent {
        KernelEvent {
            header: Header {
                ts_ns: 0,
                pid: tgid,
                tgid,
                ppid,
                uid: 0,
                cgroup_id: 1,
                comm: "x".into(),
            },
            body: EventBody::Exec {
                syscall: "execve",
                dirfd: -100,
                flags: 0,
                filename: filename.into(),
                argv: vec![],
                ret: 0,
                kernel_action: crate::model::event::KernelAction::None,
                action_ts_ns: 0,
                exe: None,
            },
        }
    }

    #[test]
    fn parses_stat_with_hostile_names() {
        assert_eq!(
            parse_stat("42 (sh) S 7 42 42 0 -1"),
            Some(("sh".to_string(), 7))
        );
        assert_eq!(
            parse_stat("42 (a) b) (c) R 9 1"),
            Some(("a) b) (c".to_string(), 9))
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x)"), None);
    }

    #[test]
    fn builds_lineage_from_exec_events() {
        // Pids far above pid_max so /proc cannot answer: the table alone must.
        let mut table = ProcessTable::default();
        let shell = exec(90_000_001, 90_000_000, "/bin/sh");
        let cat = exec(90_000_002, 90_000_001, "/bin/cat");
        table.insert(
            90_000_000,
            Entry {
                name: "node".into(),
                ppid: 0,
            },
        );
        table.observe(&shell);
        table.observe(&cat);
        assert_eq!(
            table.lineage(&cat),
            vec![
                Ancestor {
                    pid: 90_000_001,
                    name: "sh".into()
                },
                Ancestor {
                    pid: 90_000_000,
                    name: "node".into()
                },
            ]
        );
    }

    #[test]
    fn reads_proc_for_unknown_parents() {
        let mut table = ProcessTable::default();
        let me = std::process::id();
        let event = exec(90_000_010, me, "/bin/true");
        let lineage = table.lineage(&event);
        assert_eq!(lineage.first().map(|a| a.pid), Some(me));
    }
}
