//! Learn mode against the real parts: the demo container runs a small, benign workload as
//! its command (a DNS lookup of `learn.test` answered by a server the test runs, an HTTP
//! fetch from the address it names, a read of PID 1's cmdline, a shell started by the
//! shell); `--learn` for 20 s lets it all through and writes a proposed policy, which
//! `--check-config` accepts unchanged. A fresh agent under that file then raises nothing
//! for the same workload and does not freeze it, while a denylisted shell from outside is
//! still CRITICAL and frozen.
use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, TcpListener, UdpSocket},
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crabpot_integration_tests::{
    Agent, DEADLINE, TestContainer, agent_bin, container::docker, container::docker_status,
    enforced, unique_name, wait_until,
};
use serde_json::Value;

/// A private Docker network: only its gateway address is used, as a host address no other
/// test serves DNS on (the container itself stays on the default bridge).
struct Network(String);

impl Network {
    fn create() -> Self {
        let network = Network(unique_name("learnnet"));
        docker(&["network", "create", &network.0]);
        network
    }

    fn gateway(&self) -> Ipv4Addr {
        let text = docker(&[
            "network",
            "inspect",
            &self.0,
            "--format",
            "{{range .IPAM.Config}}{{.Gateway}} {{end}}",
        ]);
        text.split_whitespace()
            .find_map(|g| g.parse().ok())
            .unwrap_or_else(|| panic!("no IPv4 gateway on {}: {text}", self.0))
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        docker_status(&["network", "rm", &self.0]);
    }
}

/// Stops the test's servers when the test ends.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A reply to `query`: `learn.test` A → `address`, NXDOMAIN for other names, no records
/// for other types.
fn answer(query: &[u8], address: Ipv4Addr) -> Option<Vec<u8>> {
    crabpot_integration_tests::dns::reply(query, |name, qtype| {
        (name == "learn.test").then_some((qtype == 1).then_some(address))
    })
}

/// DNS on `gateway:53` and a tiny HTTP server on `gateway`; returns the HTTP port.
fn servers(gateway: Ipv4Addr, stop: Arc<AtomicBool>) -> u16 {
    let dns = UdpSocket::bind((gateway, 53))
        .unwrap_or_else(|e| panic!("cannot serve DNS on {gateway}:53: {e}"));
    dns.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let dns_stop = stop.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !dns_stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = dns.recv_from(&mut buf)
                && let Some(reply) = answer(&buf[..n], gateway)
            {
                let _ = dns.send_to(&reply, from);
            }
        }
    });
    let http = TcpListener::bind((gateway, 0)).expect("listener");
    let port = http.local_addr().expect("address").port();
    http.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match http.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut request = [0u8; 1024];
                    let _ = stream.read(&mut request);
                    let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    port
}

/// The workload: the gateway stand-in (httpd, for the image's health check) and, every
/// second, a lookup, a fetch from the address it named, a read of PID 1's cmdline (as `ps`
/// does) and a shell started by the shell.
fn workload(gateway: Ipv4Addr, port: u16) -> String {
    format!(
        "httpd -p 18789 -h /www; while :; do nslookup learn.test >/dev/null 2>&1; \
         wget -q -O /dev/null http://{gateway}:{port}/; cat /proc/1/cmdline >/dev/null; \
         sh -c 'echo tick' >/dev/null; sleep 1; done"
    )
}

/// Alerts that raise something: WARNING or CRITICAL, other than the posture findings
/// about the launch (a posture channel finding, or the "main process is a shell" note).
fn raised(agent: &Agent) -> Vec<Value> {
    agent
        .alerts()
        .into_iter()
        .filter(|a| a["severity"] != "INFO")
        .filter(|a| a["source"] != "posture" && a["details"]["posture"] != true)
        .collect()
}

fn check_config(path: &Path) -> (bool, String) {
    let out = Command::new(agent_bin())
        .arg("--check-config")
        .arg("--config")
        .arg(path)
        .output()
        .expect("check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Learn for 20 s: nothing raised or frozen, the agent exits 0 and the file is written.
fn learn(container: &TestContainer, output: &Path) -> String {
    let output_arg = output.to_string_lossy().into_owned();
    let mut agent = Agent::start(
        &container.name,
        &["--learn", "20s", "--learn-output", &output_arg],
    );
    agent.wait_for_log(&["LEARN MODE until", &output_arg], DEADLINE);
    agent.wait_guarding(&container.name, container.cgroup_id());
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        assert!(!container.is_paused(), "learn mode froze the container");
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = agent.wait_exit(Duration::from_secs(40));
    assert!(status.success(), "learn mode exited with {status}");
    agent.wait_for_log(&["proposed policy written to", &output_arg], DEADLINE);
    assert!(!container.is_paused(), "learn mode froze the container");
    let raised = raised(&agent);
    assert!(raised.is_empty(), "learn mode raised: {raised:#?}");
    // What would have been raised is there, as INFO marked learn mode.
    let learned: Vec<Value> = agent
        .alerts()
        .into_iter()
        .filter(|a| a["details"]["learn_mode"] == true)
        .collect();
    assert!(
        learned
            .iter()
            .any(|a| a["details"]["would_be"] == "CRITICAL"),
        "{learned:#?}"
    );
    std::fs::read_to_string(output).unwrap_or_else(|e| panic!("{}: {e}", output.display()))
}

#[test]
fn a_learned_policy_silences_the_workload_and_a_shell_is_still_frozen() {
    let network = Network::create();
    let gateway = network.gateway();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    let port = servers(gateway, stop);
    let dir = std::env::temp_dir().join(unique_name("learn"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let output = dir.join("monitor.learned.yml");
    let container = TestContainer::named("learn");
    let command = workload(gateway, port);
    container.run_with(&["--dns", &gateway.to_string()], &["sh", "-c", &command]);

    let text = learn(&container, &output);
    eprintln!("---- proposed policy ----\n{text}");
    assert!(text.contains(&format!("- 'learn.test:{port}'")), "{text}");
    assert!(text.contains("echo tick'"), "{text}");
    assert!(text.contains("path: '/proc/*/cmdline'"), "{text}");
    assert!(text.contains("# learned: seen "), "{text}");
    let (ok, checked) = check_config(&output);
    assert!(ok, "{checked}");
    assert!(checked.contains("exception learned-exec-"), "{checked}");

    // The same workload under the learned file: nothing raised, nothing frozen.
    let output_arg = output.to_string_lossy().into_owned();
    let (container, agent) = enforced(container, &["--config", &output_arg]);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        assert!(
            !container.is_paused(),
            "the learned policy froze the workload"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let quiet = raised(&agent);
    assert!(quiet.is_empty(), "the learned policy raised: {quiet:#?}");
    assert!(
        agent
            .logs()
            .iter()
            .any(|l| l.contains(&format!("DNS: {gateway}:{port} allowed for learn.test"))),
        "the learned host name was never allowed from a DNS reply"
    );

    // An attack is still one: a shell from outside is CRITICAL and the container frozen.
    let _shell = container.spawn_exec(&["sh", "-c", "echo intruder"]);
    let critical = agent.wait_for_alert("the intruder shell", |a| {
        a["severity"] == "CRITICAL"
            && a["details"]["argv"]
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x == "echo intruder"))
    });
    assert_eq!(
        critical["details"]["learn_mode"],
        Value::Null,
        "{critical:#}"
    );
    wait_until("the container frozen", DEADLINE, || {
        container.is_paused().then_some(())
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stop signal before the time is up: what was seen so far is written, marked cut short,
/// and the agent still exits 0.
#[test]
fn a_stop_signal_cuts_learning_short_and_still_writes_the_file() {
    let dir = std::env::temp_dir().join(unique_name("learn-cut"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let output = dir.join("proposed.yml");
    let output_arg = output.to_string_lossy().into_owned();
    let container = TestContainer::start("learncut");
    let mut agent = Agent::start(
        &container.name,
        &["--learn", "10m", "--learn-output", &output_arg],
    );
    agent.wait_guarding(&container.name, container.cgroup_id());
    // A shell from outside while learning: let through, not frozen, recorded.
    assert!(
        container
            .exec(&["sh", "-c", "echo learning"])
            .contains("learning")
    );
    agent.wait_for_alert("the shell recorded as learn mode", |a| {
        a["details"]["learn_mode"] == true && a["details"]["would_be"] == "CRITICAL"
    });
    assert!(!container.is_paused(), "learn mode froze the container");
    // SAFETY: sending SIGTERM to the agent this test started.
    unsafe { kill(agent.pid() as i32, 15) };
    let status = agent.wait_exit(DEADLINE);
    assert!(status.success(), "exited with {status}");
    let text = std::fs::read_to_string(&output).expect("the proposed file");
    assert!(text.contains("CUT SHORT"), "{text}");
    assert!(text.contains("argv: 'sh \\-c echo learning'"), "{text}");
    let (ok, checked) = check_config(&output);
    assert!(ok, "{checked}");
    let _ = std::fs::remove_dir_all(&dir);
}

unsafe extern "C" {
    fn kill(pid: i32, signal: i32) -> i32;
}
