//! The break-glass shell: an operator's `docker exec` the agent was told of in advance
//! (`crabpot shell`, through the token-protected control API). The announcement is a
//! one-time grant for one container and one exact argv that expires within seconds; it is
//! consumed by the first matching process that was started from outside the container
//! (runc's exec: no parent inside). A process inside the container cannot claim it: its
//! parent is inside, it has no token to announce with, and a used grant is gone.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    model::container::GuardedContainer,
    policy::origin::{Candidate, Origin, parent_and_start, started_from_outside},
};

/// How long an announcement waits for its `docker exec`.
pub(crate) const GRANT_TTL: Duration = Duration::from_secs(10);
/// Pending grants kept at most (announcements need the token; this bounds a loop).
const MAX_GRANTS: usize = 16;
/// Break-glass processes remembered at most (their descendants are the operator's too).
const MAX_SESSIONS: usize = 256;

#[derive(Debug, Clone)]
struct Grant {
    container_id: String,
    argv: Vec<String>,
    uid: u32,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    grants: Mutex<Vec<Grant>>,
    /// pid -> (start time, operator uid) of the processes that consumed a grant.
    sessions: Mutex<HashMap<u32, (u64, u32)>>,
}

/// Pending grants and the sessions they opened, shared by the control API (announces), the
/// kernel exec path and the `docker top` backstop (claim).
#[derive(Debug, Clone, Default)]
pub struct BreakGlass(Arc<Inner>);

impl BreakGlass {
    /// Record a one-time grant for `argv` in the container `container_id`.
    pub(crate) fn announce(
        &self,
        container_id: &str,
        argv: Vec<String>,
        uid: u32,
    ) -> Result<(), String> {
        if argv.is_empty() || argv.iter().any(|a| a.contains('\0')) {
            return Err("the command is empty or holds a NUL byte".into());
        }
        let mut grants = self.0.grants.lock().map_err(|_| "grants poisoned")?;
        let now = Instant::now();
        grants.retain(|g| g.expires > now);
        if grants.len() >= MAX_GRANTS {
            return Err("too many break-glass announcements pending; wait a few seconds".into());
        }
        grants.push(Grant {
            container_id: container_id.to_string(),
            argv,
            uid,
            expires: now + GRANT_TTL,
        });
        Ok(())
    }

    /// Whether any grant waits (the exec hot path asks nothing more otherwise).
    pub(crate) fn pending(&self) -> bool {
        self.0.grants.lock().is_ok_and(|g| !g.is_empty())
    }

    /// Consume the grant `pid` fulfils, if any: same container, its argv (by `matches`),
    /// started from outside the container (`no_inside_parent` decides only when /proc
    /// cannot tell). The operator's uid.
    pub(crate) fn claim(
        &self,
        container: &GuardedContainer,
        pid: u32,
        no_inside_parent: bool,
        matches: &dyn Fn(&[String]) -> bool,
    ) -> Option<u32> {
        let mut grants = self.0.grants.lock().ok()?;
        let now = Instant::now();
        grants.retain(|g| g.expires > now);
        let at = grants
            .iter()
            .position(|g| g.container_id == container.id && matches(&g.argv))?;
        if !started_from_outside(pid, container.pid).unwrap_or(no_inside_parent) {
            return None;
        }
        let grant = grants.remove(at);
        drop(grants);
        self.remember(pid, grant.uid);
        Some(grant.uid)
    }

    /// Who started a process, break-glass first: a live session (or its descendant), or
    /// the process that fulfils a pending grant; then the probe, the main process or other.
    pub(crate) fn classify<A: IntoIterator<Item = u32>>(
        &self,
        probes: &crate::policy::origin::Probes,
        container: &GuardedContainer,
        candidate: Candidate<'_, A>,
    ) -> Origin {
        let ancestors: Vec<u32> = candidate.ancestors.into_iter().collect();
        if let Some(uid) = self.session_of(candidate.pid, &ancestors) {
            return Origin::BreakGlass(uid);
        }
        if candidate.from_runc
            && self.pending()
            && let Some(uid) = self.claim(
                container,
                candidate.pid,
                candidate.no_inside_parent,
                candidate.matches,
            )
        {
            return Origin::BreakGlass(uid);
        }
        let candidate = Candidate {
            pid: candidate.pid,
            ancestors,
            from_runc: candidate.from_runc,
            no_inside_parent: candidate.no_inside_parent,
            matches: candidate.matches,
        };
        crate::policy::origin::classify(probes, container, candidate)
    }

    fn remember(&self, pid: u32, uid: u32) {
        let start = parent_and_start(pid).map_or(0, |(_, start)| start);
        if let Ok(mut sessions) = self.0.sessions.lock() {
            if sessions.len() >= MAX_SESSIONS {
                sessions.retain(|pid, (start, _)| {
                    parent_and_start(*pid).is_some_and(|(_, now)| now == *start)
                });
            }
            sessions.insert(pid, (start, uid));
        }
    }

    /// The operator's uid when `pid` or one of `ancestors` is a live break-glass process.
    pub(crate) fn session_of(&self, pid: u32, ancestors: &[u32]) -> Option<u32> {
        let sessions = self.0.sessions.lock().ok()?;
        if sessions.is_empty() {
            return None;
        }
        std::iter::once(pid)
            .chain(ancestors.iter().copied())
            .find_map(|p| {
                let (start, uid) = sessions.get(&p)?;
                // A start of 0: the process was gone when claimed; only its own exec counts.
                let same = parent_and_start(p).is_some_and(|(_, now)| now == *start);
                same.then_some(*uid)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> GuardedContainer {
        GuardedContainer {
            name: "c".into(),
            id: "abc".into(),
            image: "test".into(),
            pid: std::process::id(),
            cgroup: crate::model::container::ProcessCgroup {
                directory: "/sys/fs/cgroup/x".into(),
                id: 1,
                relative: "/x".into(),
            },
            paused: false,
            started_at: None,
            command: Vec::new(),
            health_probe: None,
            stopping_since: None,
        }
    }

    fn argv(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_grant_is_consumed_once_by_its_argv_in_its_container() {
        let glass = BreakGlass::default();
        assert!(!glass.pending());
        glass
            .announce("abc", argv(&["sh"]), 1000)
            .expect("announced");
        assert!(glass.pending());
        let is = |want: &'static [&'static str]| {
            move |g: &[String]| g.iter().map(String::as_str).eq(want.iter().copied())
        };
        let other = GuardedContainer {
            id: "other".into(),
            ..container()
        };
        // The gone pid 0 leaves the fork record (no parent inside) to decide.
        assert_eq!(glass.claim(&other, 0, true, &is(&["sh"])), None);
        assert_eq!(
            glass.claim(&container(), 0, true, &is(&["sh", "-c", "x"])),
            None
        );
        assert_eq!(
            glass.claim(&container(), 0, false, &is(&["sh"])),
            None,
            "parent inside"
        );
        assert_eq!(glass.claim(&container(), 0, true, &is(&["sh"])), Some(1000));
        assert_eq!(
            glass.claim(&container(), 0, true, &is(&["sh"])),
            None,
            "used"
        );
        assert!(!glass.pending());
    }

    #[test]
    fn announcements_are_bounded_and_checked() {
        let glass = BreakGlass::default();
        assert!(glass.announce("abc", Vec::new(), 0).is_err());
        for _ in 0..MAX_GRANTS {
            glass.announce("abc", argv(&["id"]), 0).expect("room");
        }
        assert!(glass.announce("abc", argv(&["id"]), 0).is_err());
    }
}
