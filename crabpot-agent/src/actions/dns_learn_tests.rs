use super::*;
use crate::{
    model::alert::{Alert, AlertSource},
    model::event::Header,
};

fn hosts(list: &[&str]) -> Vec<HostEntry> {
    list.iter()
        .map(|text| match text.parse() {
            Ok(crate::policy::allow::AllowSpec::Host(host)) => host,
            other => panic!("{text}: {other:?}"),
        })
        .collect()
}

/// A reply to `question` with one A record (compressed owner name).
fn reply(question: &str, address: [u8; 4], ttl: u32) -> Vec<u8> {
    let mut msg = vec![0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    for label in question.split('.') {
        msg.push(label.len() as u8);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.extend_from_slice(&[0, 0, 1, 0, 1, 0xc0, 12, 0, 1, 0, 1]);
    msg.extend_from_slice(&ttl.to_be_bytes());
    msg.extend_from_slice(&[0, 4]);
    msg.extend_from_slice(&address);
    msg
}

fn from_resolver(ts_ns: u64) -> ReplySource {
    ReplySource {
        resolver: Some("10.255.255.53".parse().expect("ip")),
        via_loopback: false,
        ts_ns,
    }
}

fn blocked_connect(address: &str, port: u16, ts_ns: u64) -> KernelEvent {
    KernelEvent {
        header: Header {
            ts_ns,
            pid: 7,
            tgid: 7,
            ppid: 1,
            uid: 0,
            cgroup_id: 1,
            comm: "wget".into(),
        },
        body: EventBody::NetPolicy {
            rule: RuleName::Connect,
            verdict: Verdict::Blocked,
            op: "connect",
            family: 2,
            sock_type: 1,
            protocol: 6,
            address: Some(address.parse().expect("ip")),
            port,
        },
    }
}

#[test]
fn ports_come_from_the_matching_entries() {
    let list = hosts(&["api.example.com:443", "*.example.com:8443", "other.net"]);
    assert_eq!(
        allowed_ports("api.example.com", &list),
        vec![Some(443), Some(8443)]
    );
    assert_eq!(allowed_ports("x.example.com", &list), vec![Some(8443)]);
    assert_eq!(allowed_ports("other.net", &list), vec![None]);
    assert!(allowed_ports("example.com", &list).is_empty());
    let any = hosts(&["a.test:443", "a.test"]);
    assert_eq!(allowed_ports("a.test", &any), vec![None]);
}

#[test]
fn blocked_connects_name_the_host_their_address_came_from() {
    let mut learner = DnsLearner::new(None);
    let now = Instant::now();
    learner.on_reply(
        &from_resolver(1_000),
        &reply("blocked.test", [192, 0, 2, 9], 60),
        &[],
        now,
    );
    assert_eq!(
        learner.name_of("::ffff:192.0.2.9".parse().expect("ip")),
        Some("blocked.test")
    );
    let event = blocked_connect("192.0.2.9", 443, 2_000);
    let mut judgement = blocked_judgement();
    learner.annotate(&event, &mut judgement);
    let alert = judgement.alert.expect("alert");
    assert_eq!(
        alert.message,
        "connect to 192.0.2.9:443 (blocked.test) blocked (not in the allowlist)"
    );
    assert_eq!(alert.details["dns_name"], "blocked.test");
    // Not allowlisted: no race, still a violation.
    assert!(judgement.violation);
    // Names expire with their TTL (clamped to at least 30 s).
    learner.expire(now + Duration::from_secs(29));
    assert!(learner.name_of("192.0.2.9".parse().expect("ip")).is_some());
    learner.expire(now + Duration::from_secs(61));
    assert!(learner.name_of("192.0.2.9".parse().expect("ip")).is_none());
}

#[test]
fn garbage_replies_teach_nothing() {
    let mut learner = DnsLearner::new(None);
    let now = Instant::now();
    learner.on_reply(&from_resolver(1), &[0xff; 40], &hosts(&["a.test"]), now);
    learner.on_reply(&from_resolver(1), &[], &hosts(&["a.test"]), now);
    assert!(learner.names.is_empty());
}

fn blocked_judgement() -> Judgement {
    Judgement {
        alert: Some(Alert::new(Severity::Warning, AlertSource::Network, "x")),
        violation: true,
        ..Judgement::default()
    }
}

#[test]
fn a_block_right_after_the_allowing_reply_is_a_race_not_a_violation() {
    let mut learner = DnsLearner::new(None);
    let now = Instant::now();
    let reply_ts = 5_000_000_000;
    let allowed = hosts(&["allowed.test:443"]);
    learner.on_reply(
        &from_resolver(reply_ts),
        &reply("allowed.test", [192, 0, 2, 10], 60),
        &allowed,
        now,
    );

    // 200 µs after the reply, on the allowed port: the race.
    let mut judgement = blocked_judgement();
    learner.annotate(
        &blocked_connect("192.0.2.10", 443, reply_ts + 200_000),
        &mut judgement,
    );
    let alert = judgement.alert.expect("alert");
    assert!(!judgement.violation);
    assert_eq!(alert.severity, Severity::Info);
    assert_eq!(alert.details["race"], true);
    assert!(
        alert.message.contains("(allowed.test)"),
        "{}",
        alert.message
    );

    // Another port, or more than a second later, or before the reply: a real block.
    for (port, ts) in [
        (80, reply_ts + 200_000),
        (443, reply_ts + 1_500_000_000),
        (443, reply_ts - 1),
    ] {
        let mut judgement = blocked_judgement();
        learner.annotate(&blocked_connect("192.0.2.10", port, ts), &mut judgement);
        assert!(judgement.violation, "port {port} at {ts}");
        assert_eq!(judgement.alert.expect("alert").severity, Severity::Warning);
    }
}

#[test]
fn only_the_containers_resolvers_teach_and_not_over_loopback() {
    let resolvers: Vec<IpAddr> = vec![
        "10.255.255.53".parse().expect("ip"),
        "127.0.0.11".parse().expect("ip"),
    ];
    let source = |resolver: &str, via_loopback| ReplySource {
        resolver: Some(resolver.parse().expect("ip")),
        via_loopback,
        ts_ns: 0,
    };
    assert!(trusted(&source("10.255.255.53", false), &resolvers));
    assert!(trusted(&source("::ffff:10.255.255.53", false), &resolvers));
    // Sent by the container to itself, with the resolver's address forged.
    assert!(!trusted(&source("10.255.255.53", true), &resolvers));
    // Docker's embedded resolver answers over loopback.
    assert!(trusted(&source("127.0.0.11", true), &resolvers));
    // Any other server.
    assert!(!trusted(&source("8.8.8.8", false), &resolvers));
    let unknown = ReplySource {
        resolver: None,
        via_loopback: false,
        ts_ns: 0,
    };
    assert!(!trusted(&unknown, &resolvers));
}
