//! Alerts from kernel events: the instant paths of the process watchdog (exec of a
//! denylisted program) and of the network auditor (connect to a non-allowed address).
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use serde_json::json;

use crate::{
    alert::{Alert, AlertSource, Severity},
    policy::{
        denylist::{Denylist, executable_name},
        exe_identity::{ExeIdentity, ExecFiles, ExecTarget},
        network_allow::is_allowed,
    },
    sources::{
        bpf::{EventBody, KernelEvent},
        lineage::Ancestor,
        watchers::processes::AlertedPids,
    },
};

/// A repeated connect to the same destination within this window raises no new alert.
const CONNECT_REPEAT_WINDOW: Duration = Duration::from_secs(60);
const MAX_REMEMBERED_DESTINATIONS: usize = 4096;

pub struct KernelRules {
    denylist: Arc<Denylist>,
    identity: Arc<ExeIdentity>,
    allow: Vec<IpNet>,
    alerted_pids: AlertedPids,
    recent_connects: HashMap<(IpAddr, u16), Instant>,
    /// Alert on connects from the tracepoint; off when the cgroup connect rule reports them.
    connect_alerts: bool,
    /// Main process of the guarded container, for execs whose process is already gone.
    container_pid: Option<u32>,
}

fn common_details(alert: Alert, event: &KernelEvent, lineage: &[Ancestor]) -> Alert {
    let h = &event.header;
    alert
        .with("pid", h.tgid)
        .with("tid", h.pid)
        .with("ppid", lineage.first().map(|a| a.pid).unwrap_or(h.ppid))
        .with("uid", h.uid)
        .with("comm", h.comm.clone())
        .with("lineage", json!(lineage))
        .with("kernel_ts_ns", h.ts_ns)
        .with("detected_by", "ebpf")
}

impl KernelRules {
    pub fn new(
        denylist: Arc<Denylist>,
        identity: Arc<ExeIdentity>,
        allow: Vec<IpNet>,
        alerted_pids: AlertedPids,
    ) -> Self {
        KernelRules {
            denylist,
            identity,
            allow,
            alerted_pids,
            recent_connects: HashMap::new(),
            connect_alerts: true,
            container_pid: None,
        }
    }

    /// The guarded container's main process (changes when it restarts).
    pub fn set_container_pid(&mut self, pid: Option<u32>) {
        self.container_pid = pid;
    }

    /// Leave connect alerts to the cgroup connect rule (which also knows the verdict).
    pub fn without_connect_alerts(mut self) -> Self {
        self.connect_alerts = false;
        self
    }

    /// A denylisted program, judged by the name the exec shows and by the file it runs: a
    /// renamed copy, a link, an fd or memfd exec of a denylisted program is that program. A
    /// fileless exec whose process is gone before its file could be judged is reported too.
    fn exec_alert(&self, event: &KernelEvent, lineage: &[Ancestor]) -> Option<Alert> {
        let EventBody::Exec {
            filename,
            argv,
            dirfd,
            flags,
            ..
        } = &event.body
        else {
            return None;
        };
        let shown = executable_name(filename, argv);
        // The name already says shell (or runtime, net tool…): alert without reading files —
        // this is the detection-latency hot path. Only innocent names need the file checked.
        let by_name = self.denylist.category(&shown).is_some();
        let files = if by_name {
            ExecFiles::default()
        } else {
            self.identity.exec_names(&ExecTarget {
                tgid: event.header.tgid,
                container_pid: self.container_pid,
                filename,
                dirfd: *dirfd,
                flags: *flags,
                argv,
            })
        };
        let identified_by_file = files
            .names
            .iter()
            .any(|n| self.denylist.category(n).is_some());
        let hit = std::iter::once(shown)
            .chain(files.names)
            .find_map(|n| self.denylist.category(&n).map(|c| (n, c)));
        let alert = match hit {
            Some((name, category)) => Alert::new(
                Severity::Critical,
                AlertSource::Processes,
                format!("Suspicious process detected: {filename} ({name}, {category})"),
            )
            .with("executable", name)
            .with("category", category),
            None if files.fileless && !files.opened => Alert::new(
                Severity::Warning,
                AlertSource::Processes,
                format!(
                    "Fileless exec of {filename:?}: the program exited before it could be identified"),
            )
            .with("executable", "unidentified")
            .with("category", "fileless exec"),
            None => return None,
        };
        if let Ok(mut pids) = self.alerted_pids.lock() {
            pids.insert(event.header.tgid);
        }
        let alert = alert
            .with("filename", filename.clone())
            .with("argv", json!(argv))
            .with("identified_by_file", identified_by_file);
        Some(common_details(alert, event, lineage))
    }

    pub fn evaluate(&mut self, event: &KernelEvent, lineage: &[Ancestor]) -> Option<Alert> {
        match &event.body {
            EventBody::Exec { .. } => self.exec_alert(event, lineage),
            EventBody::Connect {
                address: Some(address),
                port,
                ..
            } => {
                if !self.connect_alerts || is_allowed(*address, &self.allow) {
                    return None;
                }
                let now = Instant::now();
                let key = (*address, *port);
                if self
                    .recent_connects
                    .get(&key)
                    .is_some_and(|last| now.duration_since(*last) < CONNECT_REPEAT_WINDOW)
                {
                    return None;
                }
                if self.recent_connects.len() >= MAX_REMEMBERED_DESTINATIONS {
                    self.recent_connects
                        .retain(|_, last| now.duration_since(*last) < CONNECT_REPEAT_WINDOW);
                }
                self.recent_connects.insert(key, now);
                let alert = Alert::new(
                    Severity::Warning,
                    AlertSource::Network,
                    format!("Outbound connection to non-whitelisted address {address} port {port}"),
                )
                .with("address", address.to_string())
                .with("port", *port);
                Some(common_details(alert, event, lineage))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::MonitorConfig, sources::bpf::Header};

    fn rules() -> KernelRules {
        let config = MonitorConfig::default();
        KernelRules::new(
            Arc::new(Denylist::new(&config.process_denylist)),
            Arc::new(ExeIdentity::new(&config.process_denylist)),
            config.network_allow,
            AlertedPids::default(),
        )
    }

    fn event(body: EventBody) -> KernelEvent {
        KernelEvent {
            header: Header {
                ts_ns: 5,
                pid: 10,
                tgid: 10,
                ppid: 0,
                uid: 0,
                cgroup_id: 1,
                comm: "node".into(),
            },
            body,
        }
    }

    fn exec(filename: &str, argv: &[&str]) -> KernelEvent {
        event(EventBody::Exec {
            syscall: "execve",
            dirfd: -100,
            flags: 0,
            filename: filename.into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
        })
    }

    fn connect(address: &str, port: u16) -> KernelEvent {
        event(EventBody::Connect {
            fd: 3,
            family: 2,
            address: Some(address.parse().expect("ip")),
            port,
        })
    }

    #[test]
    fn shells_are_critical_by_what_is_executed() {
        let mut rules = rules();
        let alert = rules
            .evaluate(&exec("/bin/sh", &["sh"]), &[])
            .expect("alert");
        assert_eq!(alert.severity, Severity::Critical);
        assert_eq!(alert.details["executable"], "sh");
        assert!(
            rules
                .evaluate(&exec("/bin/busybox", &["nc", "-l"]), &[])
                .is_some()
        );
        assert!(
            rules
                .evaluate(&exec("/usr/bin/node", &["node", "sh"]), &[])
                .is_none()
        );
        assert!(
            rules.evaluate(&exec("/bin/cat", &["sh"]), &[]).is_none(),
            "argv[0] alone lies"
        );
        assert!(rules.alerted_pids.lock().expect("lock").contains(&10));
    }

    #[test]
    fn connects_outside_the_allowlist_warn_once_per_destination() {
        let mut rules = rules();
        assert!(rules.evaluate(&connect("127.0.0.1", 80), &[]).is_none());
        let alert = rules
            .evaluate(&connect("172.17.0.1", 18790), &[])
            .expect("alert");
        assert_eq!(alert.severity, Severity::Warning);
        assert_eq!(alert.details["port"], 18790);
        assert!(rules.evaluate(&connect("172.17.0.1", 18790), &[]).is_none());
        assert!(rules.evaluate(&connect("172.17.0.1", 18791), &[]).is_some());
    }
}
