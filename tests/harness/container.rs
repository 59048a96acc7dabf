//! A uniquely named container from the test image, removed on drop.
use std::{os::unix::fs::MetadataExt as _, process::Command};

use crate::{test_image, unique_name};

pub struct TestContainer {
    pub name: String,
    /// An image built for this container alone, removed with it.
    own_image: Option<String>,
}

/// Run `docker` with `args`; its stdout, or a panic with its stderr.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"));
    if !out.status.success() {
        panic!(
            "docker {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Run `docker` with `args`, ignoring the outcome (commands expected to fail, clean-up).
pub fn docker_status(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

impl TestContainer {
    /// A container that is created but not started yet... or started, per `start`.
    pub fn named(prefix: &str) -> Self {
        TestContainer {
            name: unique_name(prefix),
            own_image: None,
        }
    }

    /// Remove `image` (built for this container alone) when the container goes.
    pub fn owning_image(mut self, image: String) -> Self {
        self.own_image = Some(image);
        self
    }

    /// Create and start a fresh container from the test image.
    pub fn start(prefix: &str) -> Self {
        let container = Self::named(prefix);
        container.run(&[]);
        container
    }

    /// `docker run -d` this container's name with extra run flags.
    pub fn run(&self, extra: &[&str]) {
        self.run_with(extra, &[]);
    }

    /// `docker run -d` with extra run flags and a command replacing the image's.
    pub fn run_with(&self, flags: &[&str], command: &[&str]) {
        self.run_image(&test_image(), flags, command);
    }

    /// `docker run -d` this container's name from `image`, with extra run flags and a
    /// command replacing the image's (none: the image's own).
    pub fn run_image(&self, image: &str, flags: &[&str], command: &[&str]) {
        let mut args = vec!["run", "-d", "--name", self.name.as_str()];
        args.extend_from_slice(flags);
        args.push(image);
        args.extend_from_slice(command);
        docker(&args);
    }

    /// Whether Docker reports the container paused.
    pub fn is_paused(&self) -> bool {
        self.inspect("{{.State.Paused}}") == "true"
    }

    /// Write `contents` into the container at `path` (with `docker cp`, no process inside).
    pub fn put_file(&self, path: &str, contents: &[u8]) {
        let local = std::env::temp_dir().join(crate::unique_name("file"));
        std::fs::write(&local, contents).expect("write temp file");
        let local_arg = local.to_string_lossy().into_owned();
        docker(&["cp", &local_arg, &format!("{}:{path}", self.name)]);
        let _ = std::fs::remove_file(local);
    }

    /// `docker exec` a command; its stdout (panics when it fails).
    pub fn exec(&self, command: &[&str]) -> String {
        let mut args = vec!["exec", self.name.as_str()];
        args.extend_from_slice(command);
        docker(&args)
    }

    /// `docker exec` a command that may fail: (exit code, stdout + stderr).
    pub fn exec_output(&self, command: &[&str]) -> (i32, String) {
        let out = std::process::Command::new("docker")
            .args(["exec", &self.name])
            .args(command)
            .output()
            .expect("docker exec");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    /// `docker exec` a command without waiting for it: a program the kernel stops at its
    /// exec (a denylisted shell) never returns. The client is ended when the guard drops.
    pub fn spawn_exec(&self, command: &[&str]) -> RunningExec {
        let child = Command::new("docker")
            .args(["exec", self.name.as_str()])
            .args(command)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run docker exec {command:?}: {e}"));
        RunningExec(child)
    }

    /// `docker exec` a command whose failure is expected or irrelevant.
    pub fn exec_status(&self, command: &[&str]) -> bool {
        let mut args = vec!["exec", self.name.as_str()];
        args.extend_from_slice(command);
        docker_status(&args)
    }

    pub fn inspect(&self, format: &str) -> String {
        docker(&["inspect", "--format", format, &self.name])
    }

    /// The host pid of the container's main process.
    pub fn pid(&self) -> u32 {
        self.inspect("{{.State.Pid}}")
            .parse()
            .expect("numeric State.Pid")
    }

    /// The docker bridge gateway address as the container sees it.
    pub fn gateway(&self) -> String {
        self.inspect("{{.NetworkSettings.Gateway}}")
    }

    /// The cgroup v2 id of the container, resolved independently of the agent: the inode of
    /// the directory named by the `0::` line of /proc/<pid>/cgroup under the cgroup2 mount.
    pub fn cgroup_id(&self) -> u64 {
        let pid = self.pid();
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("proc cgroup");
        let relative = cgroup
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .expect("cgroup v2 line");
        let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
        let mount = mounts
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&"cgroup2")).then(|| f[1].to_string())
            })
            .expect("cgroup2 mount");
        std::fs::metadata(format!("{mount}{relative}"))
            .expect("cgroup directory")
            .ino()
    }
}

/// A `docker exec` client left running; killed on drop.
pub struct RunningExec(std::process::Child);

impl Drop for RunningExec {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        docker_status(&["rm", "-f", &self.name]);
        if let Some(image) = &self.own_image {
            docker_status(&["rmi", "-f", image]);
        }
        if std::thread::panicking() {
            return;
        }
        // A test leaves no container behind.
        let left = docker(&["ps", "-aq", "--filter", &format!("name=^{}$", self.name)]);
        assert!(
            left.trim().is_empty(),
            "container {} remains after `docker rm -f`",
            self.name
        );
    }
}
