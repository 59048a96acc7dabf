//! One `crabpot-agent` (release build) under benchmark: its own port, token, alerts log,
//! stderr collected; asked over its HTTP API for status and metrics.
use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::sys;

pub(super) struct BenchAgent {
    child: Child,
    port: u16,
    token: String,
    pub alerts_log: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
    /// `crabpot unload --container <name>` for the hooks it pinned (they outlive it).
    unload: Command,
}

impl BenchAgent {
    /// Start the agent guarding `container` with `extra` flags; returns once it guards it.
    pub(super) fn start(
        bin: &Path,
        dir: &Path,
        container: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let alerts_log = dir.join("alerts.log");
        let _ = std::fs::remove_file(&alerts_log);
        let token_file = dir.join("token");
        let port = sys::free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let mut child = Command::new(bin)
            .args([
                "--container",
                container,
                "--listen",
                &listen,
                "--toasts",
                "off",
                // Every trial's alert is measured as it is written: none may be folded
                // into a repeat record at the end of a de-duplication window.
                "--dedup-window",
                "0",
            ])
            .arg("--alerts-log")
            .arg(&alerts_log)
            .arg("--token-file")
            .arg(&token_file)
            .args(extra)
            .env("CRABPOT_LOG", "info")
            // Its pending decisions (one per freeze) stay in the bench's directory.
            .env("STATE_DIRECTORY", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        if let Some(stderr) = child.stderr.take() {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(mut logs) = logs.lock() {
                        logs.push(line);
                    }
                }
            });
        }
        let mut unload = Command::new(bin.with_file_name("crabpot"));
        unload
            .args(["unload", "--container", container])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut agent = BenchAgent {
            child,
            port,
            token: String::new(),
            alerts_log,
            logs,
            unload,
        };
        let needle = format!("guarding container `{container}`");
        agent.wait_for(
            "the agent to guard the container",
            Duration::from_secs(60),
            |a| a.logs().iter().any(|l| l.contains(&needle)) && a.get("/api/status").is_ok(),
        )?;
        agent.token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("reading {}", token_file.display()))?
            .trim()
            .to_string();
        Ok(agent)
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(super) fn logs(&self) -> Vec<String> {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn wait_for(
        &mut self,
        what: &str,
        deadline: Duration,
        ready: impl Fn(&Self) -> bool,
    ) -> anyhow::Result<()> {
        let until = Instant::now() + deadline;
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "the agent exited ({status}) while waiting for {what}:\n{}",
                    self.logs().join("\n")
                );
            }
            if ready(self) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "timed out after {deadline:?} waiting for {what}:\n{}",
            self.logs().join("\n")
        )
    }

    /// One HTTP/1.1 request to the agent's loopback listener; the body of a 2xx answer.
    fn request(&self, method: &str, path: &str) -> anyhow::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))
            .with_context(|| format!("connecting to the agent on port {}", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.token
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head.split_whitespace().nth(1).unwrap_or("?");
        if !status.starts_with('2') {
            bail!("{method} {path} answered {status}: {body}");
        }
        Ok(body.to_string())
    }

    pub(super) fn get(&self, path: &str) -> anyhow::Result<String> {
        self.request("GET", path)
    }

    /// Resume the container through the agent, as an operator would.
    pub(super) fn resume(&self) -> anyhow::Result<()> {
        self.request("POST", "/api/resume").map(|_| ())
    }

    /// The agent's view of the container: running, paused, quarantined, absent.
    pub(super) fn container_state(&self) -> anyhow::Result<String> {
        let status: serde_json::Value = serde_json::from_str(&self.get("/api/status")?)?;
        Ok(status["state"].as_str().unwrap_or("?").to_string())
    }

    /// Sum of every sample of a metric family whose labels contain `label` (e.g. `kind="open"`).
    pub(super) fn metric(&self, name: &str, label: &str) -> anyhow::Result<f64> {
        let text = self.get("/metrics")?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
                    && l.contains(label)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Wait until the agent sees the container in `state` (e.g. after a resume).
    pub(super) fn wait_state(&mut self, state: &str, deadline: Duration) -> anyhow::Result<()> {
        self.wait_for(&format!("container state {state}"), deadline, |a| {
            a.container_state().is_ok_and(|s| s == state)
        })
    }

    pub(super) fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        bail!("the agent did not exit within 10 s of SIGTERM")
    }
}

impl Drop for BenchAgent {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = self.unload.status();
    }
}
