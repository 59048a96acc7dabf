//! DNS-aware egress against real parts: a DNS server the test runs on the Docker bridge
//! gateway is the container's only resolver (`--dns`); the agent allows it on port 53,
//! learns `allowed.test`'s address from the reply the container receives and lets a connect
//! to it through, while a connect to `blocked.test`'s address is blocked with an alert that
//! names `blocked.test`. The DNS queries themselves never alert.
use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, TcpListener, UdpSocket},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crabpot_integration_tests::{Agent, TestContainer, container::docker, enforced};
use serde_json::Value;

/// Where `blocked.test` points: TEST-NET-1, never reachable; the hook refuses it first.
const BLOCKED_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 44);

/// The default bridge's gateway: the first address of its subnet (Docker's choice).
fn bridge_gateway() -> Ipv4Addr {
    let subnet = docker(&[
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
    ]);
    let v4 = subnet
        .split_whitespace()
        .find_map(|s| {
            s.split_once('/')
                .and_then(|(a, _)| a.parse::<Ipv4Addr>().ok())
        })
        .unwrap_or_else(|| panic!("no IPv4 subnet on the default bridge: {subnet}"));
    Ipv4Addr::from(u32::from(v4) + 1)
}

/// The reply: A records for the two test names, NXDOMAIN for other names, no records for
/// other types.
fn answer(query: &[u8], allowed: Ipv4Addr) -> Option<Vec<u8>> {
    crabpot_integration_tests::dns::reply(query, |name, qtype| {
        let address = match name {
            "allowed.test" => allowed,
            "blocked.test" => BLOCKED_ADDRESS,
            _ => return None,
        };
        Some((qtype == 1).then_some(address))
    })
}

/// Serve DNS on `gateway:53` for the rest of the test process; started once, shared by the
/// tests of this file (they run in parallel and there is one port 53).
fn dns_server(gateway: Ipv4Addr) {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let socket = UdpSocket::bind((gateway, 53)).unwrap_or_else(|e| {
            panic!("cannot serve DNS on {gateway}:53 ({e}); is port 53 taken?")
        });
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = answer(&buf[..n], gateway) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
    });
}

/// A TCP listener on the gateway that answers any request with a tiny HTTP response.
fn http_listener(gateway: Ipv4Addr, stop: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind((gateway, 0)).expect("listener");
    let port = listener.local_addr().expect("address").port();
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut request = [0u8; 1024];
                    let _ = stream.read(&mut request);
                    let _ =
                        stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nreachable");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    port
}

fn connect_alerts(alerts: &[Value]) -> Vec<&Value> {
    alerts
        .iter()
        .filter(|a| a["details"]["rule"] == "connect")
        .collect()
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn answers_for_allowed_names_open_the_way_and_blocked_names_are_named() {
    let gateway = bridge_gateway();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    dns_server(gateway);
    let port = http_listener(gateway, stop.clone());
    let container = TestContainer::named("dns");
    container.run(&["--dns", &gateway.to_string()]);
    let (container, agent) = enforced(container, &["--no-auto-pause", "--allow", "allowed.test"]);
    agent.wait_for_log(
        &[
            "the container's resolvers are allowed on port 53",
            &format!("{gateway}:53"),
        ],
        Duration::from_secs(5),
    );

    // The lookup goes to the resolver (allowed) and its answer is learned.
    let (lookup, fetched) = learn_and_reach(&container, &agent, gateway, port);
    assert!(lookup.contains(&gateway.to_string()), "{lookup}");
    assert!(fetched.contains("reachable"), "{fetched}");

    // blocked.test resolves (DNS is allowed) but its address is not allowed: blocked, and
    // the alert names the host name it came from.
    let (code, out) = container.exec_output(&["nslookup", "blocked.test"]);
    assert_eq!(code, 0, "{out}");
    let url = format!("http://{BLOCKED_ADDRESS}:{port}/");
    let (code, out) = container.exec_output(&["wget", "-q", "-O", "-", &url]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    let alert = agent.wait_for_alert("the named block", |a| {
        a["details"]["rule"] == "connect" && a["details"]["dns_name"] == "blocked.test"
    });
    assert_eq!(alert["details"]["verdict"], "blocked");
    assert_eq!(alert["details"]["address"], BLOCKED_ADDRESS.to_string());
    let message = alert["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("{BLOCKED_ADDRESS}:{port} (blocked.test) blocked")),
        "{message}"
    );

    // A name the server does not know: the lookup fails with NXDOMAIN, not EPERM.
    let (code, out) = container.exec_output(&["nslookup", "unknown.test"]);
    assert_ne!(code, 0);
    assert!(!out.contains("Operation not permitted"), "{out}");

    // Exactly one connect alert: the block. No DNS query and no allowed connect alerted.
    std::thread::sleep(Duration::from_millis(500));
    let alerts = agent.alerts();
    let connects = connect_alerts(&alerts);
    assert_eq!(connects.len(), 1, "{connects:#?}");
    assert!(
        !alerts
            .iter()
            .any(|a| a["details"]["port"] == 53 || a["details"]["address"] == gateway.to_string()),
        "{alerts:#?}"
    );
}

/// A user-defined network, removed on drop (after the containers on it).
struct Network(String);

impl Drop for Network {
    fn drop(&mut self) {
        crabpot_integration_tests::container::docker_status(&["network", "rm", &self.0]);
    }
}

/// On a user network the container's resolver is Docker's 127.0.0.11 (loopback, always
/// allowed), which forwards to the `--dns` server: the replies still reach the container
/// from port 53 and are learned from.
#[test]
fn replies_through_dockers_embedded_resolver_are_learned_too() {
    let gateway = bridge_gateway();
    dns_server(gateway);
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    let port = http_listener(gateway, stop.clone());
    let network = Network(crabpot_integration_tests::unique_name("dnsnet"));
    docker(&["network", "create", &network.0]);
    let container = TestContainer::named("dnsuser");
    container.run(&["--network", &network.0, "--dns", &gateway.to_string()]);
    let (container, agent) = enforced(container, &["--no-auto-pause", "--allow", "allowed.test"]);
    agent.wait_for_log(
        &["DNS: no resolver outside loopback"],
        Duration::from_secs(5),
    );
    learn_and_reach(&container, &agent, gateway, port);
    assert!(connect_alerts(&agent.alerts()).is_empty());
}

/// Where a forged reply points `allowed.test`.
const FORGED_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 45);

/// The static helper that forges replies, built for this test and copied into `container`.
fn install_forger(container: &TestContainer) {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("helpers/dns_forge.c");
    let binary = std::env::temp_dir().join(crabpot_integration_tests::unique_name("forge"));
    let built = std::process::Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .expect("cc (gcc and libc6-dev are installed by `cargo xtask setup`)");
    assert!(built.success(), "building {}", source.display());
    let bytes = std::fs::read(&binary).expect("the built helper");
    let _ = std::fs::remove_file(&binary);
    container.put_file("/tmp/dns_forge", &bytes);
    container.exec(&["chmod", "755", "/tmp/dns_forge"]);
}

/// A process in the container sends itself "replies" for an allowed name: from a DNS
/// server of its own on loopback, and through a raw socket with the resolver's address as
/// the source. Neither teaches the agent anything; the real resolver's answer still does.
#[test]
fn replies_the_container_forges_to_itself_allow_nothing() {
    let gateway = bridge_gateway();
    dns_server(gateway);
    let container = TestContainer::named("dnsforge");
    container.run(&["--dns", &gateway.to_string()]);
    let (container, agent) = enforced(container, &["--no-auto-pause", "--allow", "allowed.test"]);
    install_forger(&container);
    let own = container.inspect("{{.NetworkSettings.IPAddress}}");
    for mode in ["udp", "raw"] {
        let forged = FORGED_ADDRESS.to_string();
        let args = ["/tmp/dns_forge", mode, &gateway.to_string(), &own, &forged];
        let (code, out) = container.exec_output(&args);
        assert_eq!(code, 0, "{mode}: {out}");
        assert!(
            out.contains("received"),
            "{mode}: the forged reply was delivered: {out}"
        );
    }
    // The real resolver's answer is learned (so the hook was live all along)...
    let (code, out) = container.exec_output(&["nslookup", "allowed.test"]);
    assert_eq!(code, 0, "{out}");
    agent.wait_for_log(
        &[&format!("DNS: {gateway}/32 allowed for allowed.test")],
        Duration::from_secs(5),
    );
    // ...the forged ones were not.
    assert!(
        !agent
            .logs()
            .iter()
            .any(|l| l.contains("DNS:") && l.contains(&FORGED_ADDRESS.to_string())),
        "{:#?}",
        agent.logs()
    );
    let (code, out) = container.exec_output(&[
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://{FORGED_ADDRESS}/"),
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    let alert = agent.wait_for_alert("the block of the forged address", |a| {
        a["details"]["rule"] == "connect" && a["details"]["address"] == FORGED_ADDRESS.to_string()
    });
    assert!(alert["details"].get("dns_name").is_none(), "{alert}");
}

/// Look `allowed.test` up in the container, wait until the agent learned its address, and
/// fetch from it: the lookup's output and what the server answered.
fn learn_and_reach(
    container: &TestContainer,
    agent: &Agent,
    gateway: std::net::Ipv4Addr,
    port: u16,
) -> (String, String) {
    let (code, lookup) = container.exec_output(&["nslookup", "allowed.test"]);
    assert_eq!(code, 0, "{lookup}");
    agent.wait_for_log(
        &[&format!("DNS: {gateway}/32 allowed for allowed.test")],
        Duration::from_secs(5),
    );
    let url = format!("http://{gateway}:{port}/");
    let (code, out) = container.exec_output(&["wget", "-q", "-O", "-", &url]);
    assert_eq!(code, 0, "the learned address is reachable: {out}");
    (lookup, out)
}
