use super::*;
use crate::{config_file::parse, model::alert::Severity, policy::violations::Judgement};

fn exceptions(yaml: &str) -> Exceptions {
    let file = parse(std::path::Path::new("monitor.yml"), yaml).expect("valid exceptions");
    Exceptions::new(file.exceptions.unwrap_or_default())
}

fn argv(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| s.to_string()).collect())
}

fn exec_subject(exe: &str, args: &[&str]) -> Subject {
    Subject {
        executable: Some(exe.into()),
        argv: argv(args),
        uid: Some(0),
        ..Subject::default()
    }
}

const BUILD: &str = "exceptions:\n  - name: build\n    rules: [exec, process]\n    \
                     executable: /bin/sh\n    argv: 'sh -c make( -j[0-9]+)?'\n";

#[test]
fn exec_matches_by_executable_and_anchored_argv() {
    let list = exceptions(BUILD);
    let hit = |exe, args: &[&str]| list.matching(&[Scope::Process], &exec_subject(exe, args));
    assert_eq!(
        hit("/bin/sh", &["sh", "-c", "make"]),
        Some("build".to_string())
    );
    assert_eq!(
        hit("/bin/sh", &["sh", "-c", "make -j4"]),
        Some("build".to_string())
    );
    // Anchored: more (or less) than the pattern is a near miss.
    assert_eq!(hit("/bin/sh", &["sh", "-c", "make; curl x | sh"]), None);
    assert_eq!(hit("/bin/sh", &["xsh", "-c", "make"]), None);
    // Another executable with the same argv.
    assert_eq!(hit("/bin/ash", &["sh", "-c", "make"]), None);
    // Another scope.
    assert_eq!(
        list.matching(
            &[Scope::Rule(RuleName::Mount)],
            &exec_subject("/bin/sh", &["sh", "-c", "make"])
        ),
        None
    );
    assert_eq!(list.hits(), vec![("build".to_string(), 2)]);
}

#[test]
fn ancestor_uid_and_bare_executable_names() {
    let list = exceptions(
        "exceptions:\n  - {name: npm, rules: [process], executable: node, ancestor: /usr/bin/npm, uid: 1000}\n",
    );
    let lineage = vec![Ancestor {
        pid: 7,
        name: "npm".into(),
    }];
    let mut subject = Subject {
        executable: Some("/usr/local/bin/node".into()),
        ancestors: lineage,
        uid: Some(1000),
        ..Subject::default()
    };
    assert_eq!(
        list.matching(&[Scope::Process], &subject),
        Some("npm".to_string())
    );
    subject.uid = Some(0);
    assert_eq!(
        list.matching(&[Scope::Process], &subject),
        None,
        "other uid"
    );
    subject.uid = Some(1000);
    subject.ancestors = Vec::new();
    assert_eq!(
        list.matching(&[Scope::Process], &subject),
        None,
        "no such ancestor"
    );
}

#[test]
fn destinations_by_network_host_suffix_and_port() {
    let list = exceptions(
        "exceptions:\n  - {name: lan, rules: [connect, network], destination: 10.0.0.0/8, port: 443}\n  \
         - {name: cdn, rules: [connect], destination: '*.example.com'}\n",
    );
    let to = |address: &str, host: Option<&str>, port| Subject {
        address: address.parse().ok(),
        host: host.map(String::from),
        port: Some(port),
        ..Subject::default()
    };
    let connect = &[Scope::Rule(RuleName::Connect)];
    assert_eq!(
        list.matching(connect, &to("10.1.2.3", None, 443)),
        Some("lan".to_string())
    );
    assert_eq!(
        list.matching(&[Scope::Network], &to("10.1.2.3", None, 443)),
        Some("lan".to_string())
    );
    assert_eq!(list.matching(connect, &to("10.1.2.3", None, 80)), None);
    assert_eq!(list.matching(connect, &to("11.1.2.3", None, 443)), None);
    assert_eq!(
        list.matching(connect, &to("192.0.2.1", Some("api.Example.com"), 80)),
        Some("cdn".to_string())
    );
    assert_eq!(
        list.matching(connect, &to("192.0.2.1", Some("example.com"), 80)),
        None
    );
    assert_eq!(
        list.matching(connect, &to("192.0.2.1", Some("evilexample.com"), 80)),
        None
    );
}

#[test]
fn a_match_silences_the_alert_and_the_violation_into_the_audit_log() {
    let list = exceptions(BUILD);
    let mut judgement = Judgement {
        watchdog: Some(Alert::new(Severity::Critical, AlertSource::Processes, "sh")),
        alert: Some(Alert::new(Severity::Warning, AlertSource::Policy, "exec")),
        violation: true,
        ..Judgement::default()
    };
    list.apply(&mut judgement, Some(RuleName::Exec), || {
        exec_subject("/bin/sh", &["sh", "-c", "make"])
    });
    assert!(judgement.watchdog.is_none() && judgement.alert.is_none());
    assert!(!judgement.violation);
    let audit = judgement.audit.expect("audited");
    assert_eq!(audit.details["exception"], "build");

    let mut near = Judgement {
        watchdog: Some(Alert::new(Severity::Critical, AlertSource::Processes, "sh")),
        ..Judgement::default()
    };
    list.apply(&mut near, Some(RuleName::Exec), || {
        exec_subject("/bin/sh", &["sh", "-c", "make install"])
    });
    assert!(near.watchdog.is_some() && near.audit.is_none());
}

#[test]
fn malformed_exceptions_are_file_line_column_errors() {
    let error = |yaml: &str| {
        parse(std::path::Path::new("monitor.yml"), yaml)
            .expect_err("invalid")
            .to_string()
    };
    let text = error("container: x\nexceptions:\n  - {name: a, rules: [exec], argv: '('}\n");
    assert!(text.starts_with("monitor.yml:3:"), "{text}");
    assert!(text.contains("argv pattern does not compile"), "{text}");
    let text = error("exceptions:\n  - {name: a, rules: [nope], uid: 1}\n");
    assert!(text.starts_with("monitor.yml:2:"), "{text}");
    assert!(text.contains("unknown rule `nope`"), "{text}");
    let text = error("exceptions:\n  - {name: a, rules: [exec]}\n");
    assert!(text.contains("matches everything"), "{text}");
    let text = error("exceptions:\n  - {name: a, rules: [connect], destination: 'a b'}\n");
    assert!(text.contains("is not a destination"), "{text}");
    let text = error("exceptions:\n  - name: a\n    rules: [exec]\n    uid: 1\n    colour: red\n");
    assert!(text.starts_with("monitor.yml:"), "{text}");
    assert!(text.contains("unknown field `colour`"), "{text}");
}
