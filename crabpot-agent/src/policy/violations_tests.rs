use super::*;
use crate::sources::bpf::Header;

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
        verdict,
    }
}

#[test]
fn a_killed_mount_is_a_critical_violation_to_undo() {
    let mut judge = ViolationJudge::default();
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
    let mut judge = ViolationJudge::default();
    let j = judge.judge(&event(5, mount(Verdict::Audit)), &[], &Policy::default());
    assert!(j.alert.expect("alert").message.contains("audit"));
    assert!(!j.violation);
    assert!(j.undo_mount.is_none());
}

#[test]
fn a_refusal_unseen_at_entry_is_a_violation() {
    let mut judge = ViolationJudge::default();
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
    let mut judge = ViolationJudge::default();
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
    let mut judge = ViolationJudge::default();
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
    let mut judge = ViolationJudge::default();
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
