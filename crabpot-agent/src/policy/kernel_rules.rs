//! Alerts from kernel events: the instant paths of the process watchdog (exec of a
//! denylisted program) and of the network auditor (connect to a non-allowed address).
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::json;

use crate::model::container::GuardedContainer;
use crate::{
    model::alert::{Alert, AlertSource, Severity},
    model::event::Ancestor,
    model::event::{EventBody, ExeFile, KernelAction, KernelEvent, RuleName},
    policy::alerted::AlertedPids,
    policy::{
        break_glass::BreakGlass,
        denylist::{Denylist, MULTICALL, applet, basename, executable_name, login_form},
        drift::Drift,
        exe_identity::{ExeIdentity, ExecFiles, ExecTarget},
        exec_failures::{ExecFailures, Failure},
        origin::{self, Candidate, Origin, Probes},
        rules::{Action, Policy},
    },
};

/// A repeated connect to the same destination within this window raises no new alert.
const CONNECT_REPEAT_WINDOW: Duration = Duration::from_secs(60);
const MAX_REMEMBERED_DESTINATIONS: usize = 4096;

pub(crate) struct KernelRules {
    denylist: Arc<Denylist>,
    identity: Arc<ExeIdentity>,
    alerted_pids: AlertedPids,
    recent_connects: HashMap<(IpAddr, u16), Instant>,
    /// The guarded container as last seen: its main process (for execs whose process is
    /// already gone), configured command and health probe.
    container: Option<GuardedContainer>,
    /// Health-probe processes, shared with the `docker top` backstop.
    probes: Probes,
    /// Announced break-glass shells, shared with the control API and the backstop.
    glass: BreakGlass,
    failures: ExecFailures,
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
        .kernel_ts(h.ts_ns)
        .with("detected_by", "ebpf")
}

/// The alert for an executed program, by what it was identified as and who started it.
fn exec_alert_of(
    filename: &str,
    argv: &[String],
    (hit, origin): (Option<(String, &'static str)>, Origin),
    drifted: bool,
    kernel_action: KernelAction,
) -> Alert {
    match (hit, origin) {
        (hit, Origin::HealthProbe) => origin::probe_alert(filename, hit.map(|h| h.0)),
        (_, Origin::BreakGlass(uid)) => origin::break_glass_alert(filename, argv, uid),
        (Some((name, category)), Origin::MainProcess) => {
            origin::main_process_alert(filename, &name, category)
        }
        (Some((name, category)), _) => Alert::new(
            Severity::Critical,
            AlertSource::Processes,
            format!(
                "Suspicious process detected: {filename} ({name}, {category}){}",
                stop_note(kernel_action)
            ),
        )
        .rule("process_denylisted")
        .with("executable", name)
        .with("category", category),
        (None, _) if drifted => Alert::new(
            Severity::Warning,
            AlertSource::Processes,
            format!("Exec of {filename:?}"),
        )
        .rule("drift")
        .with("executable", "unknown")
        .with("category", "drift"),
        (None, _) => Alert::new(
            Severity::Warning,
            AlertSource::Processes,
            format!(
                "Fileless exec of {filename:?}: the program exited before it could be identified"
            ),
        )
        .rule("fileless_exec")
        .with("executable", "unidentified")
        .with("category", "fileless exec"),
    }
}

/// Mark an exec alert as drift: "drift: executable not in the image" in the message (kept
/// after what was there, so existing readers still match) and the why in details.
fn with_drift(mut alert: Alert, drift: Option<&Drift>) -> Alert {
    let Some(drift) = drift else {
        return alert;
    };
    alert.message = format!(
        "{}; drift: executable not in the image ({}: {})",
        alert.message,
        drift.reason(),
        drift.path()
    );
    let mut alert = alert
        .with("drift", true)
        .with("drift_reason", drift.reason())
        .with("drift_path", drift.path());
    if let Drift::WritableMount {
        mount_point,
        fstype,
        ..
    } = drift
    {
        alert = alert
            .with("drift_mount", mount_point.clone())
            .with("drift_fstype", fstype.clone());
    }
    alert
}

impl KernelRules {
    pub(crate) fn new(
        denylist: Arc<Denylist>,
        identity: Arc<ExeIdentity>,
        alerted_pids: AlertedPids,
    ) -> Self {
        KernelRules {
            denylist,
            identity,
            alerted_pids,
            recent_connects: HashMap::new(),
            container: None,
            probes: Probes::default(),
            glass: BreakGlass::default(),
            failures: ExecFailures::default(),
        }
    }

    /// Share the record of verified health probes (with the `docker top` backstop).
    pub(crate) fn with_probes(mut self, probes: Probes) -> Self {
        self.probes = probes;
        self
    }

    /// Share the announced break-glass shells (with the control API and the backstop).
    pub(crate) fn with_break_glass(mut self, glass: BreakGlass) -> Self {
        self.glass = glass;
        self
    }

    /// The operator's uid when this exec is the first program of an announced break-glass
    /// `docker exec` (runc's init execs it, with no parent inside the container).
    fn break_glass(&self, event: &KernelEvent, argv: &[String]) -> Option<u32> {
        let container = self.container.as_ref()?;
        if event.header.comm != origin::RUNC_INIT_COMM || !self.glass.pending() {
            return None;
        }
        let matches = |expected: &[String]| origin::kernel_argv_matches(argv, expected);
        self.glass.claim(
            container,
            event.header.tgid,
            event.header.ppid == 0,
            &matches,
        )
    }

    /// The guarded container (changes when it restarts). This runs for every event, so only
    /// the run's identity is compared (its command and health probe cannot change within a
    /// run) and it is cloned only when that changed.
    /// The guarded container's main process (host pid), while it is known.
    pub(crate) fn container_pid(&self) -> Option<u32> {
        self.container
            .as_ref()
            .map(|c| c.pid)
            .filter(|pid| *pid != 0)
    }

    pub(crate) fn set_container(&mut self, container: Option<&GuardedContainer>) {
        let same_run = match (&self.container, container) {
            (Some(known), Some(now)) => known.pid == now.pid && known.id == now.id,
            (None, None) => true,
            _ => false,
        };
        if !same_run {
            self.container = container.cloned();
        }
    }

    /// Summaries of failed exec attempts that have settled.
    pub(crate) fn due_failures(&mut self) -> Vec<Alert> {
        self.failures.due(Instant::now())
    }

    /// The denylisted name an exec ran as, judged by the name it shows and by the file it
    /// runs: a renamed copy, a link, an fd or memfd exec of a denylisted program is that
    /// program. `None` with `files.fileless` set when a fileless exec could not be judged.
    fn identify(
        &self,
        shown: String,
        target: ExecTarget<'_>,
    ) -> (Option<(String, &'static str)>, ExecFiles, bool) {
        // The name already says shell (or runtime, net tool…): no file is read — this is the
        // detection-latency hot path. Only innocent names need the file checked.
        let files = if self.denylist.category(&shown).is_some() {
            ExecFiles::default()
        } else {
            self.identity.exec_names(&target)
        };
        let by_file = files
            .names
            .iter()
            .any(|n| self.denylist.category(n).is_some());
        let hit = std::iter::once(shown)
            .chain(files.names.iter().cloned())
            .find_map(|n| self.denylist.category(&n).map(|c| (n, c)));
        (hit, files, by_file)
    }

    /// Who started the exec's process, asked only of execs that would alert or that show
    /// the health probe's argv (the /proc reads are kept off the common path).
    fn origin(&self, event: &KernelEvent, argv: &[String], lineage: &[Ancestor]) -> Origin {
        let Some(container) = &self.container else {
            return Origin::Other;
        };
        let matches = |expected: &[String]| origin::kernel_argv_matches(argv, expected);
        let candidate = Candidate {
            pid: event.header.tgid,
            ancestors: lineage.iter().map(|a| a.pid),
            from_runc: event.header.comm == origin::RUNC_INIT_COMM,
            no_inside_parent: event.header.ppid == 0,
            matches: &matches,
        };
        self.glass.classify(&self.probes, container, candidate)
    }

    /// A failed attempt is remembered for one summary; a success settles the attempts of
    /// the same name (a PATH lookup that found it).
    fn exec_failed(&mut self, event: &KernelEvent, filename: &str, argv: &[String], ret: i32) {
        let name = executable_name(filename, argv);
        if let Some(category) = self.denylist.category(&name) {
            let failure = Failure {
                tgid: event.header.tgid,
                name: &name,
                category,
                path: filename,
                ret,
                comm: &event.header.comm,
                uid: event.header.uid,
            };
            self.failures.failed(failure, Instant::now());
        }
    }

    /// The WARNING of an announced break-glass exec; its process counts as alerted, like
    /// any other exec alerted on.
    fn break_glass_exec(
        &self,
        event: &KernelEvent,
        filename: &str,
        argv: &[String],
        lineage: &[Ancestor],
    ) -> Option<Alert> {
        let uid = self.break_glass(event, argv)?;
        if let Ok(mut pids) = self.alerted_pids.lock() {
            pids.insert(event.header.tgid);
        }
        let alert = origin::break_glass_alert(filename, argv, uid)
            .with("filename", filename.to_string())
            .with("argv", json!(argv))
            .with("origin", Origin::BreakGlass(uid).as_str());
        Some(common_details(alert, event, lineage))
    }

    /// The alert an executed program deserves: CRITICAL for a denylisted one, unless Docker
    /// started it as the health probe (INFO) or it is the container's configured main
    /// process (one posture WARNING).
    pub(crate) fn exec_alert(
        &mut self,
        event: &KernelEvent,
        lineage: &[Ancestor],
    ) -> Option<Alert> {
        let EventBody::Exec {
            filename,
            argv,
            dirfd,
            flags,
            ret,
            kernel_action,
            action_ts_ns,
            exe,
            ..
        } = &event.body
        else {
            return None;
        };
        if *ret < 0 {
            self.exec_failed(event, filename, argv, *ret);
            return None;
        }
        if let Some(alert) = self.break_glass_exec(event, filename, argv, lineage) {
            return Some(alert);
        }
        let shown = executable_name(filename, argv);
        let failed_tries = self.failures.succeeded(event.header.tgid, &shown);
        let target = ExecTarget {
            tgid: event.header.tgid,
            container_pid: self.container.as_ref().map(|c| c.pid),
            filename,
            dirfd: *dirfd,
            flags: *flags,
            argv,
        };
        let (mut hit, files, identified_by_file) = self.identify(shown, target);
        let fileless = files.fileless && !files.opened;
        if hit.is_none() && !files.opened {
            hit = self.kernel_exe_hit(exe.as_ref(), argv);
        }
        if hit.is_none()
            && let Some(drift) = &files.drift
        {
            hit = self.drift_name(drift, argv);
        }
        let probe_like = self
            .container
            .as_ref()
            .and_then(|c| c.health_probe.as_deref())
            .is_some_and(|probe| origin::kernel_argv_matches(argv, probe));
        if hit.is_none() && !fileless && !probe_like && files.drift.is_none() {
            return None;
        }
        let origin = self.origin(event, argv, lineage);
        let drifted = files.drift.is_some();
        if hit.is_none() && !fileless && !drifted {
            return None;
        }
        let alert = exec_alert_of(filename, argv, (hit, origin), drifted, *kernel_action);
        if let Ok(mut pids) = self.alerted_pids.lock() {
            pids.insert(event.header.tgid);
        }
        let mut alert = with_drift(alert, files.drift.as_ref())
            .with("filename", filename.clone())
            .with("argv", json!(argv))
            .with("identified_by_file", identified_by_file)
            .with("origin", origin.as_str());
        alert = kernel_details(alert, *kernel_action, *action_ts_ns, exe.as_ref());
        if failed_tries > 0 {
            alert = alert.with("failed_path_candidates", failed_tries);
        }
        Some(common_details(alert, event, lineage))
    }

    /// The executed file as the kernel named it at the exec, for a program the agent could
    /// not read (its process is gone): its own name, or for busybox/toybox and a file with
    /// no name (a memfd, a deleted file) the applet its argv selects, as busybox would run
    /// it. argv[0] decides only where the kernel said the file itself does not.
    fn kernel_exe_hit(
        &self,
        exe: Option<&ExeFile>,
        argv: &[String],
    ) -> Option<(String, &'static str)> {
        let exe = exe?;
        let multicall = MULTICALL.iter().any(|m| exe.name.starts_with(m));
        let name = if exe.memfd || exe.unlinked || multicall {
            applet(argv)
        } else {
            exe.name.clone()
        };
        let category = self.denylist.category(&name)?;
        Some((name, category))
    }

    /// The denylisted name a drifted file runs as, by what it can be told by alone: its own
    /// name, or the applet argv[0] picks (an unknown binary may be a changed multi-call
    /// one, which obeys argv[0]).
    fn drift_name(&self, drift: &Drift, argv: &[String]) -> Option<(String, &'static str)> {
        let own = login_form(basename(drift.path())).to_string();
        [own, applet(argv)]
            .into_iter()
            .find_map(|n| self.denylist.category(&n).map(|c| (n, c)))
    }

    /// A connect outside the policy's allowlist, once per destination per window; only
    /// while the connect rule is off (otherwise its cgroup hook decides and reports).
    pub(crate) fn connect_alert(
        &mut self,
        event: &KernelEvent,
        lineage: &[Ancestor],
        policy: &Policy,
    ) -> Option<Alert> {
        let EventBody::Connect {
            address: Some(address),
            port,
            ..
        } = &event.body
        else {
            return None;
        };
        if policy.action(RuleName::Connect) != Action::Off || policy.allows(*address) {
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
}

/// What the kernel did to the program and what it read of its file.
fn kernel_details(
    mut alert: Alert,
    action: KernelAction,
    action_ts_ns: u64,
    exe: Option<&ExeFile>,
) -> Alert {
    alert = alert.with("kernel_action", json!(action));
    if action_ts_ns > 0 {
        alert = alert.with("kernel_action_ts_ns", action_ts_ns);
    }
    if let Some(exe) = exe {
        alert = alert
            .with("exe_inode", exe.ino)
            .with("exe_dev", exe.dev)
            .with("exe_name", exe.name.clone())
            .with("exe_memfd", exe.memfd)
            .with("exe_unlinked", exe.unlinked);
    }
    alert
}

/// The message's note on what the kernel did before the program ran.
fn stop_note(action: KernelAction) -> String {
    match action {
        KernelAction::None => String::new(),
        other => format!(" - {} before its first instruction", other.as_text()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::MonitorConfig, model::event::Header};

    fn rules() -> KernelRules {
        let config = MonitorConfig::default();
        KernelRules::new(
            Arc::new(Denylist::new(&config.process_denylist)),
            Arc::new(ExeIdentity::new(&config.process_denylist)),
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
            ret: 0,
            kernel_action: KernelAction::None,
            action_ts_ns: 0,
            exe: None,
        })
    }

    fn failed_exec(filename: &str, argv: &[&str]) -> KernelEvent {
        let mut event = exec(filename, argv);
        if let EventBody::Exec { ret, .. } = &mut event.body {
            *ret = -2;
        }
        event
    }

    #[test]
    fn failed_candidates_are_no_alerts_and_a_miss_is_one_summary() {
        let mut rules = rules();
        for path in ["/nope1/sh", "/nope2/sh"] {
            assert!(rules.exec_alert(&failed_exec(path, &["sh"]), &[]).is_none());
        }
        let ran = rules
            .exec_alert(&exec("/bin/sh", &["sh"]), &[])
            .expect("what ran is judged");
        assert_eq!(ran.details["filename"], "/bin/sh");
        assert_eq!(ran.details["failed_path_candidates"], 2);
        for path in ["/a/perl", "/b/perl", "/c/perl"] {
            assert!(
                rules
                    .exec_alert(&failed_exec(path, &["perl"]), &[])
                    .is_none()
            );
        }
        // A name that is not denylisted is not even remembered.
        assert!(
            rules
                .exec_alert(&failed_exec("/a/cat", &["cat"]), &[])
                .is_none()
        );
        std::thread::sleep(crate::policy::exec_failures::SETTLE);
        let due = rules.due_failures();
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!(due[0].severity, Severity::Info);
        assert_eq!(due[0].details["tries"], 3);
        assert!(rules.due_failures().is_empty());
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
            .exec_alert(&exec("/bin/sh", &["sh"]), &[])
            .expect("alert");
        assert_eq!(alert.severity, Severity::Critical);
        assert_eq!(alert.details["executable"], "sh");
        assert!(
            rules
                .exec_alert(&exec("/bin/busybox", &["nc", "-l"]), &[])
                .is_some()
        );
        assert!(
            rules
                .exec_alert(&exec("/usr/bin/node", &["node", "sh"]), &[])
                .is_none()
        );
        assert!(
            rules.exec_alert(&exec("/bin/cat", &["sh"]), &[]).is_none(),
            "argv[0] alone lies"
        );
        assert!(rules.alerted_pids.lock().expect("lock").contains(&10));
    }

    fn exec_of_exe(argv: &[&str], name: &str, memfd: bool) -> KernelEvent {
        let mut event = exec("", argv);
        if let EventBody::Exec { exe, syscall, .. } = &mut event.body {
            *syscall = "execveat";
            *exe = Some(ExeFile {
                ino: 42,
                dev: 1,
                nlink: u32::from(!memfd),
                name: name.into(),
                memfd,
                unlinked: memfd,
            });
        }
        // A pid that does not exist: the process is gone, only the kernel's word is left.
        event.header.tgid = u32::MAX - 1;
        event
    }

    #[test]
    fn a_gone_fileless_program_is_judged_by_what_the_kernel_read() {
        let mut rules = rules();
        let alert = rules
            .exec_alert(&exec_of_exe(&["sh", "-c", "x"], "memfd:x", true), &[])
            .expect("memfd run as sh");
        assert_eq!(alert.severity, Severity::Critical);
        assert_eq!(alert.details["executable"], "sh");
        assert_eq!(alert.details["exe_memfd"], true);
        assert_eq!(alert.details["exe_inode"], 42);
        let busybox = rules
            .exec_alert(&exec_of_exe(&["-sh"], "busybox", false), &[])
            .expect("busybox by fd, login shell form");
        assert_eq!(busybox.details["executable"], "sh");
        // A file with a name of its own is that name, whatever argv[0] says.
        let cat = rules.exec_alert(&exec_of_exe(&["sh"], "cat", false), &[]);
        assert!(
            cat.as_ref()
                .is_none_or(|a| a.severity != Severity::Critical),
            "{cat:?}"
        );
    }

    #[test]
    fn connects_outside_the_allowlist_warn_once_per_destination() {
        let mut rules = rules();
        let mut policy = Policy::default();
        policy.set(RuleName::Connect, Action::Off);
        let mut judge = |address, port| rules.connect_alert(&connect(address, port), &[], &policy);
        assert!(judge("127.0.0.1", 80).is_none());
        let alert = judge("172.17.0.1", 18790).expect("alert");
        assert_eq!(alert.severity, Severity::Warning);
        assert_eq!(alert.details["port"], 18790);
        assert!(judge("172.17.0.1", 18790).is_none());
        assert!(judge("172.17.0.1", 18791).is_some());
    }

    #[test]
    fn with_the_connect_rule_on_its_cgroup_hook_reports_instead() {
        let mut rules = rules();
        let policy = Policy::default();
        assert_ne!(policy.action(RuleName::Connect), Action::Off);
        assert!(
            rules
                .connect_alert(&connect("172.17.0.1", 18790), &[], &policy)
                .is_none()
        );
    }
}
