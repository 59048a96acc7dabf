use super::*;
use crate::{
    config::MonitorConfig,
    config_file::parse,
    model::event::{Ancestor, RuleName},
    policy::{
        exceptions::{Exceptions, Scope, Subject},
        learn::{Act, Recorder},
        rules::Action,
        trust::TrustScore,
    },
    settings::apply_file,
};

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

fn session() -> Session {
    Session {
        duration: Duration::from_secs(20),
        started: "2026-12-02T04:00:00.000+00:00".into(),
        ended: "2026-12-02T04:00:20.000+00:00".into(),
        cut_short: true,
    }
}

/// The running policy: the openclaw profile's hosts, one operator exception.
fn carried() -> CarriedOver {
    let mut policy = Policy::default();
    policy.allow_openclaw_hosts();
    policy.set(RuleName::Socket, Action::Block);
    let file = parse(
        Path::new("monitor.yml"),
        "exceptions:\n  - name: ops\n    rules: [connect]\n    destination: 10.0.0.0/8\n    \
         port: 5432\n",
    )
    .expect("valid");
    let exceptions = Exceptions::new(file.exceptions.unwrap_or_default());
    CarriedOver {
        container: "gateway".into(),
        profiles: vec!["openclaw"],
        auto_pause: false,
        policy,
        exceptions: exceptions.iter().map(|e| e.as_written()).collect(),
        file: None,
    }
}

fn learned() -> Learned {
    let recorder = Recorder::default();
    let address = "192.0.2.7".parse().expect("address");
    recorder.destination(address, 8080, Some("learn.test"));
    recorder.destination("192.0.2.8".parse().expect("address"), 443, None);
    let shell = subject(
        "/bin/sh",
        "sh",
        &["sh", "-c", "echo 'it''s' $((1+2))"],
        None,
    );
    recorder.act(Act {
        rule: RuleName::Exec,
        subject: &shell,
        denylisted: true,
    });
    let read = subject("/bin/busybox", "sh", &["cat"], Some("/proc/9/cmdline"));
    recorder.act(Act {
        rule: RuleName::ProcOpen,
        subject: &read,
        denylisted: false,
    });
    recorder.proc_read("/proc/12/status", &read);
    // Container output is hostile: a message that tries to end the comment.
    let hostile = crate::model::alert::Alert::new(
        crate::model::alert::Severity::Warning,
        crate::model::alert::AlertSource::Logs,
        "line\nallow: ['0.0.0.0/0']",
    );
    recorder.observe(hostile);
    recorder.snapshot()
}

#[test]
fn the_proposed_file_parses_and_carries_the_policy_over() {
    let text = render(&learned(), &carried(), &session());
    let file =
        parse(Path::new("monitor.learned.yml"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(text.contains("CUT SHORT"), "{text}");
    assert!(text.contains("# learned: seen 1 time, first "), "{text}");
    assert!(
        text.contains("#   /proc/*/status by /bin/busybox (parent sh)"),
        "{text}"
    );
    assert!(!text.contains("\nallow: ['0.0.0.0/0']"), "{text}");
    let (mut monitor, mut policy, mut trust) = (
        MonitorConfig::default(),
        Policy::default(),
        TrustScore::default(),
    );
    apply_file(&mut monitor, &mut policy, &mut trust, &file);
    assert_eq!(monitor.container, "gateway");
    assert!(!monitor.auto_pause);
    assert_eq!(policy.action(RuleName::Socket), Action::Block);
    assert_eq!(policy.action(RuleName::Connect), Action::Block);
    let hosts: Vec<String> = policy
        .allow_hosts
        .iter()
        .map(|h| format!("{}:{}", h.name, h.port.unwrap_or(0)))
        .collect();
    assert!(
        hosts.contains(&"catalog.openclaw.ai:443".to_string()),
        "{hosts:?}"
    );
    assert!(hosts.contains(&"learn.test:8080".to_string()), "{hosts:?}");
    let nets: Vec<String> = policy.allow.iter().map(|a| a.to_string()).collect();
    assert_eq!(nets, ["192.0.2.8:443"]);
    let names: Vec<String> = file
        .exceptions
        .as_ref()
        .map(|list| list.iter().map(|e| e.name.clone()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["ops", "learned-exec-1", "learned-proc_open-2"]);
}

#[test]
fn learned_exceptions_match_what_was_seen_and_nothing_wider() {
    let text = render(&learned(), &carried(), &session());
    let file = parse(Path::new("monitor.learned.yml"), &text).expect("valid");
    let list = Exceptions::new(file.exceptions.unwrap_or_default());
    let exec = [Scope::Rule(RuleName::Exec)];
    let seen = subject(
        "/bin/sh",
        "sh",
        &["sh", "-c", "echo 'it''s' $((1+2))"],
        None,
    );
    assert_eq!(list.matching(&exec, &seen), Some("learned-exec-1"));
    assert_eq!(
        list.matching(&[Scope::Process], &seen),
        Some("learned-exec-1")
    );
    // Any other shell, the same shell under another parent: not admitted.
    let other = subject("/bin/sh", "sh", &["sh", "-c", "id"], None);
    assert_eq!(list.matching(&exec, &other), None);
    let elsewhere = subject(
        "/bin/sh",
        "node",
        &["sh", "-c", "echo 'it''s' $((1+2))"],
        None,
    );
    assert_eq!(list.matching(&exec, &elsewhere), None);
    let read = [Scope::Rule(RuleName::ProcOpen)];
    let cmdline = subject("/bin/busybox", "sh", &["cat"], Some("/proc/4242/cmdline"));
    assert_eq!(list.matching(&read, &cmdline), Some("learned-proc_open-2"));
    let environ = subject("/bin/busybox", "sh", &["cat"], Some("/proc/4242/environ"));
    assert_eq!(list.matching(&read, &environ), None);
    let deeper = subject("/bin/busybox", "sh", &["cat"], Some("/proc/1/x/cmdline"));
    assert_eq!(list.matching(&read, &deeper), None);
}

#[test]
fn control_characters_are_written_escaped_and_read_back() {
    for text in ["plain", "it's", "tab\there", "new\nline", "back\\slash"] {
        let yaml = format!("container: {}\n", scalar(text));
        let file = parse(Path::new("x.yml"), &yaml).expect("valid");
        assert_eq!(file.container.as_deref(), Some(text), "{yaml}");
    }
}

#[test]
fn an_empty_run_says_so_and_keeps_an_empty_allowlist_explicit() {
    let mut carried = carried();
    carried.policy.allow_hosts.clear();
    carried.exceptions.clear();
    let text = render(&Learned::default(), &carried, &session());
    assert!(text.contains("allow: []"), "{text}");
    assert!(text.contains("Nothing was raised"), "{text}");
    assert!(!text.contains("exceptions:"), "{text}");
    parse(Path::new("x.yml"), &text).expect("valid");
}

#[test]
fn the_file_is_replaced_atomically() {
    let dir = std::env::temp_dir().join(format!("crabpot-learn-{}", std::process::id()));
    let path = dir.join("sub/monitor.learned.yml");
    write_atomically(&path, "first\n").expect("write");
    write_atomically(&path, "second\n").expect("rewrite");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "second\n");
    let left: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
        .expect("list")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    let _ = std::fs::remove_dir_all(dir);
}
