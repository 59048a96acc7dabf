use std::sync::Arc;

use super::*;
use crate::{
    config::MonitorConfig,
    model::{
        alert::Severity,
        event::{Header, RuleName, Verdict},
    },
    policy::{alerted::AlertedPids, denylist::Denylist, exe_identity::ExeIdentity},
};

/// The judges as the agent builds them, with the default denylist.
fn judges() -> Judges {
    let config = MonitorConfig::default();
    Judges::new(KernelRules::new(
        Arc::new(Denylist::new(&config.process_denylist)),
        Arc::new(ExeIdentity::new(&config.process_denylist)),
        AlertedPids::default(),
    ))
}

fn event(pid: u32, body: EventBody) -> KernelEvent {
    KernelEvent {
        header: Header {
            ts_ns: 1,
            pid,
            tgid: pid,
            ppid: 0,
            uid: 0,
            cgroup_id: 1,
            comm: "x".into(),
        },
        body,
    }
}

fn mount(verdict: Verdict) -> EventBody {
    EventBody::Mount {
        source: "none".into(),
        target: "/mnt".into(),
        fstype: "tmpfs".into(),
        flags: 0,
        attr_flags: 0,
        from_fd: -100,
        to_fd: -100,
        verdict,
    }
}

fn new_api(fstype: &str, source: &str, target: &str, from_fd: i32, to_fd: i32) -> EventBody {
    EventBody::Mount {
        source: source.into(),
        target: target.into(),
        fstype: fstype.into(),
        flags: 0x4,
        attr_flags: 0x1,
        from_fd,
        to_fd,
        verdict: Verdict::Killed,
    }
}

#[test]
fn new_mount_api_alerts_say_what_is_known() {
    let mut judge = judges();
    let policy = Policy::default();
    let mut message = |body| {
        let j = judge_of(&mut judge, body, &policy);
        j.alert.expect("alert").message
    };
    let fsmount = message(new_api("fsmount", "", "", 3, -1));
    assert_eq!(
        fsmount,
        "fsmount of filesystem context fd 3 (flags 0x4, mount attributes 0x1) killed"
    );
    let moved = message(new_api("move_mount", "", "/mnt", 4, -100));
    assert_eq!(moved, "move_mount of fd 4 to `/mnt` (flags 0x4) killed");
    let relative = message(new_api("move_mount", "sub", "dir", 5, 6));
    assert_eq!(
        relative,
        "move_mount of `sub` under fd 5 to `dir` under fd 6 (flags 0x4) killed"
    );
    let j = judge_of(&mut judge, new_api("move_mount", "", "", 4, 7), &policy);
    let alert = j.alert.expect("alert");
    assert_eq!(
        alert.message,
        "move_mount of fd 4 to fd 7 (flags 0x4) killed"
    );
    assert_eq!(alert.details["from_fd"], 4);
    assert_eq!(alert.details["to_fd"], 7);
    assert_eq!(j.undo_mount, None, "no path to undo");
}

fn judge_of(judge: &mut Judges, body: EventBody, policy: &Policy) -> Judgement {
    // A new thread each time, so no entry pairs with another.
    static TID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(100);
    let tid = TID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    judge.judge(&event(tid, body), &[], policy)
}

#[test]
fn a_killed_mount_is_a_critical_violation_to_undo() {
    let mut judge = judges();
    let j = judge.judge(&event(5, mount(Verdict::Killed)), &[], &Policy::default());
    let alert = j.alert.expect("alert");
    assert_eq!(alert.severity, Severity::Critical);
    assert!(alert.message.contains("killed"), "{}", alert.message);
    assert_eq!(alert.details["rule"], "mount");
    assert!(j.violation);
    assert_eq!(j.undo_mount.as_deref(), Some("/mnt"));
    // Its exit (the kill lands after the call) adds nothing.
    let exit = EventBody::Refused {
        rule: RuleName::Mount,
        ret: -1,
    };
    assert_eq!(
        judge.judge(&event(5, exit), &[], &Policy::default()),
        Judgement::default()
    );
}

#[test]
fn audit_alerts_without_a_violation() {
    let mut judge = judges();
    let j = judge.judge(&event(5, mount(Verdict::Audit)), &[], &Policy::default());
    assert!(j.alert.expect("alert").message.contains("audit"));
    assert!(!j.violation);
    assert!(j.undo_mount.is_none());
}

#[test]
fn a_refusal_unseen_at_entry_is_a_violation() {
    let mut judge = judges();
    let exit = EventBody::Refused {
        rule: RuleName::Ptrace,
        ret: -1,
    };
    let j = judge.judge(&event(9, exit), &[], &Policy::default());
    assert!(j.violation);
    assert_eq!(j.alert.expect("alert").details["verdict"], "refused");
}

#[test]
fn proc_opens_are_logged_not_alerted() {
    let mut judge = judges();
    let open = EventBody::Open {
        dirfd: -100,
        flags: 0,
        mode: 0,
        path: "/proc/1/status".into(),
        base: None,
    };
    let j = judge.judge(&event(3, open), &[], &Policy::default());
    assert!(j.alert.is_none());
    assert_eq!(j.audit.expect("audit").details["path"], "/proc/1/status");
    let other = EventBody::Open {
        dirfd: -100,
        flags: 0,
        mode: 0,
        path: "/etc/hosts".into(),
        base: None,
    };
    assert_eq!(
        judge.judge(&event(3, other), &[], &Policy::default()),
        Judgement::default()
    );
}

#[test]
fn another_process_environ_is_a_warning_not_a_violation() {
    let mut judge = judges();
    let open = EventBody::Open {
        dirfd: -100,
        flags: 0,
        mode: 0,
        path: "/proc/1/environ".into(),
        base: None,
    };
    // tgid 3 is no process of ours: its in-container pid is unknown, so not 1.
    let j = judge.judge(&event(3, open), &[], &Policy::default());
    assert!(!j.violation);
    let alert = j.alert.expect("alert");
    assert_eq!(alert.severity, Severity::Warning);
    assert_eq!(alert.details["rule"], "sensitive_read");
    assert_eq!(alert.details["path"], "/proc/1/environ");
}

#[test]
fn moltbot_watches_devices() {
    let mut judge = judges();
    let open = EventBody::Open {
        dirfd: -100,
        flags: 0,
        mode: 0,
        path: "/dev/snd/pcmC0D0c".into(),
        base: None,
    };
    let policy = Policy::default().with_profiles(&["moltbot"]);
    let j = judge.judge(&event(3, open.clone()), &[], &policy);
    assert_eq!(j.alert.expect("alert").severity, Severity::Warning);
    assert!(
        judge
            .judge(&event(3, open), &[], &Policy::default())
            .alert
            .is_none()
    );
}
