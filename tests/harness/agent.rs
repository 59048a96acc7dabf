//! A `crabpot-agent` process under test, with its JSON event stream and logs collected.
use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use std::path::PathBuf;

use serde_json::Value;

use crate::{agent_bin, wait_until};

type Shared<T> = Arc<Mutex<Vec<T>>>;

pub struct Agent {
    child: Child,
    events: Shared<Value>,
    logs: Shared<String>,
    /// The agent's own alerts log, in a directory removed on drop.
    pub alerts_log: PathBuf,
    /// The guarded container, whose pinned hooks are removed on drop unless `keep_pins`.
    container: Option<String>,
    unload_on_drop: bool,
    /// Holds the private configuration; removed on drop.
    config_dir: PathBuf,
}

/// A fresh, private directory for one agent's files.
fn private_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(crate::unique_name("agent"));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

fn collect<R: std::io::Read + Send + 'static, T: Send + 'static>(
    reader: R,
    into: Shared<T>,
    parse: fn(String) -> Option<T>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if let Some(item) = parse(line)
                && let Ok(mut items) = into.lock()
            {
                items.push(item);
            }
        }
    });
}

impl Agent {
    /// Start the agent guarding `container`, printing JSON events, with its own alerts log,
    /// plus `extra` flags.
    pub fn start(container: &str, extra: &[&str]) -> Self {
        let dir = private_dir();
        let alerts_log = dir.join("alerts.log");
        let mut command = Command::new(agent_bin());
        command
            .args(["--container", container, "--events", "json", "--alerts-log"])
            .arg(&alerts_log)
            .arg("--token-file")
            .arg(dir.join("token"))
            .args(extra);
        if !extra.contains(&"--listen") {
            // Each agent its own port, so agents of parallel tests never collide.
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let mut agent = Self::spawn(&mut command);
        agent.alerts_log = alerts_log;
        agent
    }

    /// Start an arbitrary agent command line (for start-up error tests). Unless the command
    /// names `--config`, the agent reads a private empty configuration (through
    /// `CRABPOT_CONFIG`), never a machine-wide /etc/crabpot/monitor.yml another test or an
    /// operator left; unless it sets `STATE_DIRECTORY`, its state is private too. A `--container NAME` in the command is the container whose pins are
    /// removed on drop.
    pub fn spawn(command: &mut Command) -> Self {
        let config_dir = private_dir();
        let config = config_dir.join("monitor.yml");
        std::fs::write(
            &config,
            "# the private configuration of one test agent: no settings\n{}\n",
        )
        .unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let container = args
            .iter()
            .position(|a| a == "--container")
            .and_then(|at| args.get(at + 1).cloned());
        // Its own state (pending decisions, default token), as systemd would give it: never
        // the decisions of another test's agent or of an earlier run.
        if !command.get_envs().any(|(key, _)| key == "STATE_DIRECTORY") {
            command.env("STATE_DIRECTORY", &config_dir);
        }
        let mut child = command
            .env("CRABPOT_CONFIG", &config)
            .env("CRABPOT_LOG", "info,crabpot_agent=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the agent {}: {e}", agent_bin().display()));
        let events: Shared<Value> = Arc::default();
        let logs: Shared<String> = Arc::default();
        if let Some(stdout) = child.stdout.take() {
            collect(stdout, events.clone(), |line| {
                Some(serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("agent printed a line that is not JSON ({e}): {line}")
                }))
            });
        }
        if let Some(stderr) = child.stderr.take() {
            collect(stderr, logs.clone(), Some);
        }
        Agent {
            child,
            events,
            logs,
            alerts_log: PathBuf::new(),
            container,
            unload_on_drop: true,
            config_dir,
        }
    }

    /// Every alert in the agent's JSON-lines log; each line must be a whole JSON object.
    pub fn alerts(&self) -> Vec<Value> {
        let Ok(text) = std::fs::read_to_string(&self.alerts_log) else {
            return Vec::new();
        };
        // A line still being appended (read mid-write) is not judged yet: only lines that
        // end in a newline count.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("torn or invalid alerts log line ({e}): {line}"))
            })
            .collect()
    }

    /// Wait for an alert in the log matching `matches`.
    pub fn wait_for_alert(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        wait_until(what, crate::DEADLINE, || {
            self.alerts().into_iter().find(|a| matches(a))
        })
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn events(&self) -> Vec<Value> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Wait for a log line containing every one of `needles`.
    pub fn wait_for_log(&self, needles: &[&str], deadline: Duration) -> String {
        wait_until(
            &format!("agent log line with {needles:?}"),
            deadline,
            || {
                self.logs()
                    .into_iter()
                    .find(|line| needles.iter().all(|n| line.contains(n)))
            },
        )
    }

    /// Wait until the agent reports guarding `container` with cgroup id `cgroup_id`.
    pub fn wait_guarding(&self, container: &str, cgroup_id: u64) {
        self.wait_for_log(
            &[
                &format!("guarding container `{container}`"),
                &format!("(id {cgroup_id})"),
            ],
            crate::DEADLINE,
        );
    }

    /// Wait for an event matching `matches`.
    pub fn wait_for_event(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        wait_until(what, crate::DEADLINE, || {
            self.events
                .lock()
                .ok()?
                .iter()
                .find(|e| matches(e))
                .cloned()
        })
    }

    /// Wait for the process to exit on its own.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        wait_until("the agent to exit", deadline, || {
            self.child.try_wait().ok().flatten()
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Leave the agent's pinned in-kernel hooks in place when it is dropped (they outlive
    /// the agent by design; by default each test's agent removes its own).
    pub fn keep_pins(mut self) -> Self {
        self.unload_on_drop = false;
        self
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: sending SIGTERM to our own child.
        unsafe { libc_kill(self.child.id() as i32, 15) };
        let exited = (0..40).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let panicking = std::thread::panicking();
        if let Some(container) = self.container.as_deref().filter(|_| self.unload_on_drop) {
            let _ = std::process::Command::new(agent_bin().with_file_name("crabpot"))
                .args(["unload", "--container", container])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let pins = crate::pin_dir(container);
            // A test leaves no pinned hooks behind (they would outlive the run).
            assert!(
                panicking || !pins.exists(),
                "the agent's pinned hooks remain in {} after `crabpot unload`",
                pins.display()
            );
        }
        let _ = std::fs::remove_dir_all(&self.config_dir);
        if panicking {
            eprintln!("---- alerts log {} ----", self.alerts_log.display());
            eprintln!(
                "{}",
                std::fs::read_to_string(&self.alerts_log).unwrap_or_default()
            );
            eprintln!("---- agent log ----");
            for line in self.logs() {
                eprintln!("{line}");
            }
            let events = self.events();
            eprintln!("---- last agent events ({} in all) ----", events.len());
            for event in events.iter().rev().take(30).rev() {
                eprintln!("{event}");
            }
        }
        if let Some(dir) = self.alerts_log.parent().filter(|_| !panicking) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}
