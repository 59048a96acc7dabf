//! Who started a process: Docker's health probe, the container's own configured command, or
//! anything else.
//!
//! Docker runs both the health probe and an operator's `docker exec` through runc, from
//! outside the container, so the process's parent is not a process of the container. Only
//! such a process can be trusted, and only when its argv is exactly the container's
//! `Config.Healthcheck.Test` (an operator's `docker exec` differs). A process inside the
//! container cannot pass for one: its parent is in the container's PID namespace, whatever
//! argv it shows. The main process is the container's PID 1 (the init of its PID namespace),
//! which no other process can be.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use crabpot_common::{ARG_LEN, ARGV_COUNT};

use crate::model::{
    alert::{Alert, AlertSource, Severity},
    container::GuardedContainer,
};

/// Trusted health-probe processes kept at most (bounds memory; probes are short-lived).
const MAX_PROBES: usize = 1024;

/// Whether an exec's argv, as the kernel captured it (the first [`ARGV_COUNT`] entries,
/// each cut to `ARG_LEN - 1` bytes), is `expected`.
pub(crate) fn kernel_argv_matches(seen: &[String], expected: &[String]) -> bool {
    if expected.is_empty() || seen.len() != expected.len().min(ARGV_COUNT) {
        return false;
    }
    seen.iter().zip(expected).all(|(seen, expected)| {
        // The kernel keeps at most ARG_LEN - 1 bytes; a longer argument must start with what
        // was kept (replacement characters from a cut UTF-8 sequence never match).
        if expected.len() < ARG_LEN {
            seen == expected
        } else {
            seen.len() >= ARG_LEN - 4 && expected.as_bytes().starts_with(seen.as_bytes())
        }
    })
}

/// Whether a `docker top` args column (argv joined by spaces) is `expected`, directly or run
/// through a `#!` interpreter (`/bin/sh /entrypoint.sh …`: the kernel puts the interpreter,
/// and its one optional argument, before the script's argv).
pub(crate) fn args_line_matches(line: &str, expected: &[String]) -> bool {
    if expected.is_empty() {
        return false;
    }
    let wanted = expected.join(" ");
    let line = line.trim_end();
    if line == wanted {
        return true;
    }
    let Some(prefix) = line.strip_suffix(wanted.as_str()) else {
        return false;
    };
    let words: Vec<&str> = prefix.split_whitespace().collect();
    prefix.ends_with(' ') && (1..=2).contains(&words.len()) && words[0].starts_with('/')
}

/// The inode of a process's PID namespace.
fn pid_namespace(pid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|link| link.to_string_lossy().into_owned())
}

/// `(ppid, start time in clock ticks)` of a live process, from `/proc/<pid>/stat`.
pub(crate) fn parent_and_start(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_parent_and_start(&String::from_utf8_lossy(&stat))
}

/// The parent (field 4) and start time (field 22) of a `/proc/<pid>/stat` text; the comm
/// (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
pub(crate) fn parse_parent_and_start(stat: &str) -> Option<(u32, u64)> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((ppid, start))
}

/// Whether `pid` was started from outside the container whose main process is
/// `container_pid`: its parent (runc, or the containerd shim it is handed to) lives in
/// another PID namespace. `None` when it cannot be told (the process is gone already); the
/// caller then has only the kernel's fork record.
pub(crate) fn started_from_outside(pid: u32, container_pid: u32) -> Option<bool> {
    if pid == container_pid {
        return Some(false);
    }
    let (ppid, _) = parent_and_start(pid)?;
    let container_ns = pid_namespace(container_pid)?;
    let parent_ns = pid_namespace(ppid)?;
    // The process must itself be in the container's namespace (it is, being in its cgroup,
    // unless it made its own; then it is not the probe).
    Some(pid_namespace(pid)? == container_ns && parent_ns != container_ns)
}

/// Processes verified as Docker's health probe, with their start time so a reused pid is
/// not mistaken for one. Shared by the eBPF exec path and the `docker top` backstop.
#[derive(Debug, Clone, Default)]
pub(crate) struct Probes(Arc<Mutex<HashMap<u32, u64>>>);

impl Probes {
    /// Remember `pid` (alive now) as a probe.
    pub(crate) fn trust(&self, pid: u32) {
        let Some((_, start)) = parent_and_start(pid) else {
            return;
        };
        if let Ok(mut probes) = self.0.lock() {
            if probes.len() >= MAX_PROBES {
                probes.retain(|pid, start| parent_and_start(*pid).is_some_and(|p| p.1 == *start));
            }
            probes.insert(pid, start);
        }
    }

    /// Whether `pid` is a remembered probe that is still the same process.
    pub(crate) fn is_probe(&self, pid: u32) -> bool {
        let Some(start) = self.0.lock().ok().and_then(|p| p.get(&pid).copied()) else {
            return false;
        };
        parent_and_start(pid).is_some_and(|(_, now)| now == start)
    }

    /// Whether `pid` or one of `ancestors` is a remembered probe.
    pub(crate) fn within_probe(&self, pid: u32, ancestors: impl IntoIterator<Item = u32>) -> bool {
        std::iter::once(pid)
            .chain(ancestors)
            .any(|pid| self.is_probe(pid))
    }
}

/// Who started a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Docker's health probe, or a descendant of it.
    HealthProbe,
    /// The container's PID 1 running its configured command.
    MainProcess,
    /// An operator's announced break-glass shell (`crabpot shell`), or a descendant of
    /// it: the operator's uid.
    BreakGlass(u32),
    /// Anything else: judged on what it runs.
    Other,
}

impl Origin {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Origin::HealthProbe => "health probe",
            Origin::MainProcess => "main process",
            Origin::BreakGlass(_) => "break-glass shell",
            Origin::Other => "container",
        }
    }
}

/// Whether `pid` is the init of the container's PID namespace: the container's main
/// process (its `NSpid` is the host pid then 1, in exactly one nested namespace).
pub(crate) fn is_container_init(pid: u32, container_pid: u32) -> bool {
    if pid == container_pid {
        return true;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))
        .is_some_and(|ids| {
            ids.split_whitespace().collect::<Vec<_>>() == [pid.to_string(), "1".to_string()]
        })
}

/// The comm of runc's container-side init, which makes a `docker exec`'s (and a health
/// probe's) first exec.
pub(crate) const RUNC_INIT_COMM: &str = "runc:[2:INIT]";

/// What is known of the process being classified.
pub(crate) struct Candidate<'a, A> {
    pub pid: u32,
    /// Its ancestors, nearest first.
    pub ancestors: A,
    /// Whether this is the first program of a process runc started (from the exec's
    /// comm at entry); a process that later re-executes itself with the probe's argv is
    /// not the probe.
    pub from_runc: bool,
    /// Whether the kernel's fork record has no parent for it inside the container (it was
    /// forked by a task outside the guarded cgroup). Decides only when the process is gone
    /// before `/proc` could be asked (a fast probe exits within a millisecond).
    pub no_inside_parent: bool,
    /// Whether the process's argv is the given one.
    pub matches: &'a dyn Fn(&[String]) -> bool,
}

/// Classify a process of `container`. A process newly verified as the health probe is
/// remembered in `probes` for its descendants.
pub(crate) fn classify<A: IntoIterator<Item = u32>>(
    probes: &Probes,
    container: &GuardedContainer,
    candidate: Candidate<'_, A>,
) -> Origin {
    let Candidate {
        pid,
        ancestors,
        from_runc,
        no_inside_parent,
        matches,
    } = candidate;
    if probes.within_probe(pid, ancestors) {
        return Origin::HealthProbe;
    }
    if let Some(probe) = container.health_probe.as_deref()
        && from_runc
        && matches(probe)
        && started_from_outside(pid, container.pid).unwrap_or(no_inside_parent)
    {
        probes.trust(pid);
        return Origin::HealthProbe;
    }
    if matches(&container.command) && is_container_init(pid, container.pid) {
        return Origin::MainProcess;
    }
    Origin::Other
}

/// The record of an operator's announced break-glass shell (or what it runs): a WARNING,
/// never a freeze, never a violation.
pub(crate) fn break_glass_alert(filename: &str, argv: &[String], uid: u32) -> Alert {
    Alert::new(
        Severity::Warning,
        AlertSource::Processes,
        format!(
            "break-glass shell by uid {uid}: {filename} {:?} (announced with crabpot shell)",
            argv
        ),
    )
    .with("break_glass", true)
    .with("operator_uid", uid)
}

/// The record of a denylisted program run by Docker's health probe (or of the probe itself).
pub(crate) fn probe_alert(filename: &str, executable: Option<String>) -> Alert {
    Alert::new(
        Severity::Info,
        AlertSource::Processes,
        format!("health probe: {filename} (run by Docker from the container's health check)"),
    )
    .with("executable", executable.unwrap_or_default())
}

/// The posture warning for a container whose configured main process is a denylisted
/// program (a shell script as PID 1): its own command, not an intrusion, so no freeze.
pub(crate) fn main_process_alert(filename: &str, name: &str, category: &str) -> Alert {
    Alert::new(
        Severity::Warning,
        AlertSource::Processes,
        format!(
            "main process is a {category}: {filename} ({name}) is the container's configured \
             command; what it starts is still judged"
        ),
    )
    .with("executable", name.to_string())
    .with("category", category.to_string())
    .with("posture", true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::container::health_argv;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn health_tests_become_argv() {
        assert_eq!(
            health_argv(&v(&["CMD-SHELL", "wget -q -O- x || exit 1"]), None),
            Some(v(&["/bin/sh", "-c", "wget -q -O- x || exit 1"]))
        );
        assert_eq!(
            health_argv(
                &v(&["CMD-SHELL", "x"]),
                Some(&v(&["/bin/ash", "-eo", "-c"]))
            ),
            Some(v(&["/bin/ash", "-eo", "-c", "x"]))
        );
        assert_eq!(
            health_argv(&v(&["CMD", "/bin/wget", "-q"]), None),
            Some(v(&["/bin/wget", "-q"]))
        );
        assert_eq!(health_argv(&v(&["NONE"]), None), None);
        assert_eq!(health_argv(&v(&["CMD"]), None), None);
        assert_eq!(health_argv(&v(&["CMD-SHELL", "a", "b"]), None), None);
        assert_eq!(health_argv(&[], None), None);
    }

    #[test]
    fn kernel_argv_is_compared_as_captured() {
        let probe = v(&[
            "/bin/sh",
            "-c",
            "wget -q -O- http://127.0.0.1:18789/healthz || exit 1",
        ]);
        assert!(kernel_argv_matches(&probe, &probe));
        assert!(!kernel_argv_matches(&v(&["sh", "-c", "id"]), &probe));
        assert!(!kernel_argv_matches(&v(&["/bin/sh", "-c"]), &probe));
        let long = "x".repeat(100);
        let expected = v(&["/bin/sh", "-c", &long]);
        let cut = "x".repeat(ARG_LEN - 1);
        assert!(kernel_argv_matches(&v(&["/bin/sh", "-c", &cut]), &expected));
        assert!(!kernel_argv_matches(&v(&["/bin/sh", "-c", "x"]), &expected));
        // Only ARGV_COUNT entries are captured.
        let many = v(&["/bin/wget", "-q", "-O", "/dev/null", "http://x/"]);
        assert!(kernel_argv_matches(&many[..ARGV_COUNT], &many));
        assert!(!kernel_argv_matches(&many[..2], &many));
        assert!(!kernel_argv_matches(&[], &[]));
    }

    #[test]
    fn top_lines_match_directly_or_through_an_interpreter() {
        let script = v(&["/entrypoint.sh", "serve"]);
        assert!(args_line_matches("/entrypoint.sh serve", &script));
        assert!(args_line_matches("/bin/sh /entrypoint.sh serve", &script));
        assert!(args_line_matches(
            "/usr/bin/env -S /entrypoint.sh serve",
            &script
        ));
        assert!(!args_line_matches("sh -c /entrypoint.sh serve", &v(&["x"])));
        assert!(!args_line_matches("evil/entrypoint.sh serve", &script));
        assert!(!args_line_matches(
            "/bin/sh -c x /entrypoint.sh serve",
            &script
        ));
        assert!(!args_line_matches("anything", &[]));
    }

    #[test]
    fn stat_fields_after_a_hostile_comm() {
        let stat = "42 (a) b) c) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1 2";
        assert_eq!(parse_parent_and_start(stat), Some((7, 98765)));
        assert_eq!(parse_parent_and_start("42 (x) S 7"), None);
    }

    fn container(pid: u32) -> GuardedContainer {
        GuardedContainer {
            name: "c".into(),
            id: "id".into(),
            image: String::new(),
            pid,
            cgroup: crate::model::container::ProcessCgroup {
                directory: "/x".into(),
                id: 1,
                relative: "/x".into(),
            },
            paused: false,
            started_at: None,
            command: v(&["/entrypoint.sh"]),
            health_probe: Some(v(&["/bin/sh", "-c", "probe"])),
            stopping_since: None,
        }
    }

    fn classify_pid(pid: u32, container: &GuardedContainer, argv: &[String]) -> Origin {
        let matches = |expected: &[String]| expected == argv;
        let candidate = Candidate {
            pid,
            ancestors: std::iter::empty(),
            from_runc: true,
            no_inside_parent: true,
            matches: &matches,
        };
        classify(&Probes::default(), container, candidate)
    }

    #[test]
    fn only_an_outside_parent_makes_the_probe() {
        let probe = v(&["/bin/sh", "-c", "probe"]);
        let me = std::process::id();
        // A child of this test shares its parent's namespace: "inside" a container whose
        // main process is this test, so even the exact probe argv is not the probe.
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn sleep");
        let inside = classify_pid(child.id(), &container(me), &probe);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(inside, Origin::Other);
        // Gone before /proc could answer: the kernel's fork record decides.
        assert_eq!(
            classify_pid(90_000_003, &container(me), &probe),
            Origin::HealthProbe
        );
        assert_eq!(
            classify_pid(90_000_003, &container(me), &v(&["sh"])),
            Origin::Other
        );
        // The main process is the namespace's init running the configured command.
        assert_eq!(
            classify_pid(me, &container(me), &v(&["/entrypoint.sh"])),
            Origin::MainProcess
        );
        assert_eq!(
            classify_pid(me, &container(me), &v(&["/bin/sh"])),
            Origin::Other
        );
    }

    #[test]
    fn a_probe_is_the_same_process_or_nothing() {
        let probes = Probes::default();
        let me = std::process::id();
        assert!(!probes.is_probe(me));
        probes.trust(me);
        assert!(probes.is_probe(me));
        assert!(probes.within_probe(90_000_000, [me]));
        // A pid that is not running is never a probe, even if remembered.
        if let Ok(mut map) = probes.0.lock() {
            map.insert(90_000_001, 1);
        }
        assert!(!probes.is_probe(90_000_001));
        assert!(started_from_outside(90_000_002, 1).is_none());
    }
}
