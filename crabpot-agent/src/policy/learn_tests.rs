use super::*;
use crate::model::event::Ancestor;

fn subject(exe: &str, parent: &str, argv: &[&str], path: Option<&str>) -> Subject {
    Subject {
        executable: Some(exe.into()),
        ancestors: vec![Ancestor {
            pid: 1,
            name: parent.into(),
        }],
        argv: Some(argv.iter().map(|s| s.to_string()).collect()),
        path: path.map(str::to_string),
        uid: Some(0),
        ..Subject::default()
    }
}

#[test]
fn durations_take_seconds_minutes_and_hours() {
    assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
    for bad in ["", "0s", "10d", "m", "-5s", "1.5m", "99999999999999999999h"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn learning_audits_what_would_block_and_keeps_the_rest() {
    let mut configured = Policy::default();
    configured.set(RuleName::Socket, Action::Block);
    let learning = audit_everything(&configured);
    for (rule, action) in configured.rules() {
        let expected = if action == Action::Block {
            Action::Audit
        } else {
            action
        };
        assert_eq!(learning.action(rule), expected, "{}", rule.as_str());
    }
    assert_eq!(learning.action(RuleName::Exec), Action::Log);
}

#[test]
fn pids_in_paths_are_normalised() {
    assert_eq!(normalise_path("/proc/4242/cmdline"), "/proc/*/cmdline");
    assert_eq!(
        normalise_path("/proc/1/task/17/status"),
        "/proc/*/task/*/status"
    );
    assert_eq!(normalise_path("/proc/self/status"), "/proc/self/status");
    assert_eq!(normalise_path("/proc/net/tcp6"), "/proc/net/tcp6");
}

#[test]
fn destinations_are_counted_and_named_by_dns() {
    let recorder = Recorder::default();
    let address: IpAddr = "192.0.2.7".parse().expect("address");
    let other: IpAddr = "2001:db8::1".parse().expect("address");
    // The socket-table poll saw it before the DNS name was known: merged by address.
    recorder.destination(address, 8080, None);
    recorder.destination(address, 8080, Some("API.Example.test"));
    recorder.destination(address, 8080, None);
    recorder.destination(other, 443, None);
    let learned = recorder.snapshot();
    let entries = learned.allow_entries();
    assert_eq!(
        entries.keys().collect::<Vec<_>>(),
        ["[2001:db8::1]:443", "api.example.test:8080"]
    );
    let seen = &entries["api.example.test:8080"];
    assert_eq!(seen.count, 3);
    assert!(seen.first <= seen.last);
}

#[test]
fn a_denylisted_exec_is_keyed_on_its_exact_argv_and_parent() {
    let recorder = Recorder::default();
    let shell = subject("/bin/sh", "/bin/sh", &["sh", "-c", "echo a.b"], None);
    for _ in 0..2 {
        recorder.act(Act {
            rule: RuleName::Exec,
            subject: &shell,
            denylisted: true,
        });
    }
    let drift = subject("/tmp/tool", "node", &["/tmp/tool", "--run", "7"], None);
    recorder.act(Act {
        rule: RuleName::Exec,
        subject: &drift,
        denylisted: false,
    });
    let read = subject("/bin/busybox", "sh", &["cat"], Some("/proc/17/cmdline"));
    recorder.act(Act {
        rule: RuleName::ProcOpen,
        subject: &read,
        denylisted: false,
    });
    let learned = recorder.snapshot();
    let list: Vec<(&LearnedException, u64)> = learned
        .exceptions
        .iter()
        .map(|(e, s)| (e, s.count))
        .collect();
    assert_eq!(list.len(), 3, "{list:#?}");
    let shell = list
        .iter()
        .find(|(e, _)| e.executable.as_deref() == Some("/bin/sh"))
        .expect("the shell");
    assert_eq!(shell.1, 2);
    assert_eq!(shell.0.rules, ["exec", "process"]);
    assert_eq!(shell.0.ancestor.as_deref(), Some("sh"));
    assert_eq!(shell.0.argv.as_deref(), Some(r"sh \-c echo a\.b"));
    let drift = list
        .iter()
        .find(|(e, _)| e.executable.as_deref() == Some("/tmp/tool"))
        .expect("the drifted program");
    assert_eq!(
        drift.0.argv, None,
        "only denylisted programs need their argv"
    );
    let read = list
        .iter()
        .find(|(e, _)| e.rules == ["proc_open"])
        .expect("the read");
    assert_eq!(read.0.path.as_deref(), Some("/proc/*/cmdline"));
}

#[test]
fn alerts_become_marked_info_and_are_recorded_once() {
    let recorder = Recorder::default();
    let critical = Alert::new(Severity::Critical, AlertSource::Processes, "shell")
        .rule("process_denylisted")
        .with("args", "sh -c id")
        .quarantine();
    let quiet = recorder.observe(critical);
    assert_eq!(quiet.severity, Severity::Info);
    assert!(!quiet.control.quarantine && quiet.control.no_pause);
    assert_eq!(quiet.details[LEARN_DETAIL], true);
    assert_eq!(quiet.details["would_be"], "CRITICAL");
    assert!(
        quiet
            .message
            .starts_with("learn mode (would be CRITICAL): shell")
    );
    // Already recorded (by the kernel-event loop): passed on, not counted again.
    let again = recorder.observe(quiet.clone());
    assert_eq!(again, quiet);
    let network = Alert::new(Severity::Warning, AlertSource::Network, "connection")
        .with("address", "192.0.2.9")
        .with("port", 443);
    recorder.observe(network);
    let logs = Alert::new(Severity::Warning, AlertSource::Logs, "prompt injection");
    recorder.observe(logs);
    // Posture findings are about the launch; INFO raises nothing: neither is learned.
    let posture = Alert::new(Severity::Critical, AlertSource::Posture, "privileged");
    assert_eq!(recorder.observe(posture.clone()), posture);
    recorder.observe(Alert::new(Severity::Info, AlertSource::Events, "die"));
    let learned = recorder.snapshot();
    assert_eq!(learned.exceptions.len(), 1);
    assert_eq!(
        learned.allow_entries().keys().collect::<Vec<_>>(),
        ["192.0.2.9:443"]
    );
    assert_eq!(learned.unlearnable.len(), 1);
}
