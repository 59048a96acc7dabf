//! Where the agent's files live, in one place: the alerts and audit logs, the control token,
//! the state directory and the configuration file.
//!
//! Under systemd the unit's `LogsDirectory=`, `StateDirectory=` and
//! `ConfigurationDirectory=` are passed as `$LOGS_DIRECTORY`, `$STATE_DIRECTORY` and
//! `$CONFIGURATION_DIRECTORY` (`/var/log/crabpot`, `/var/lib/crabpot`, `/etc/crabpot`, or
//! `…/crabpot/NAME` for an instance of `crabpot-agent@NAME`); otherwise everything is under
//! `~/.crabpot` of the effective user. Explicit flags and file keys still win (callers apply
//! them). The operator's command, which runs outside the unit, looks in both places
//! ([`Layout::alerts_log_candidates`], [`Layout::token_candidates`]).
//!
//! Names nothing else of the crate, so every stage may use it.
use std::path::{Path, PathBuf};

/// The systemd unit's directories (`crabpot-agent.service`).
pub const SYSTEM_LOGS: &str = "/var/log/crabpot";
pub const SYSTEM_STATE: &str = "/var/lib/crabpot";
pub const SYSTEM_CONFIG: &str = "/etc/crabpot";

const ALERTS_LOG: &str = "alerts.log";
const AUDIT_LOG: &str = "audit.log";
const TOKEN: &str = "dashboard.token";
const CONFIG: &str = "monitor.yml";

/// The directories in effect: systemd's when it passed them, and the user's home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub logs: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub home: PathBuf,
}

/// The first directory of a systemd directory variable (it is colon-separated when the
/// unit lists several); only an absolute path counts.
fn systemd_dir(value: Option<std::ffi::OsString>) -> Option<PathBuf> {
    let value = value?;
    let first = value.to_str()?.split(':').next()?.trim();
    let path = PathBuf::from(first);
    path.is_absolute().then_some(path)
}

impl Layout {
    /// This process's layout (its environment and effective user).
    pub fn current() -> Self {
        Layout {
            logs: systemd_dir(std::env::var_os("LOGS_DIRECTORY")),
            state: systemd_dir(std::env::var_os("STATE_DIRECTORY")),
            config: systemd_dir(std::env::var_os("CONFIGURATION_DIRECTORY")),
            home: effective_home(),
        }
    }

    fn dot_crabpot(&self) -> PathBuf {
        self.home.join(".crabpot")
    }

    /// The agent's state (control token, pending decisions): `$STATE_DIRECTORY`, else
    /// `~/.crabpot`.
    pub fn state_dir(&self) -> PathBuf {
        self.state.clone().unwrap_or_else(|| self.dot_crabpot())
    }

    /// `$LOGS_DIRECTORY/alerts.log`, else `~/.crabpot/data/alerts.log`.
    pub fn alerts_log(&self) -> PathBuf {
        match &self.logs {
            Some(dir) => dir.join(ALERTS_LOG),
            None => self.dot_crabpot().join("data").join(ALERTS_LOG),
        }
    }

    /// `$STATE_DIRECTORY/dashboard.token`, else `~/.crabpot/dashboard.token`.
    pub fn token_file(&self) -> PathBuf {
        self.state_dir().join(TOKEN)
    }

    /// Where the configuration file is looked for when none is named, in order.
    pub fn config_locations(&self) -> Vec<PathBuf> {
        let mut list = Vec::new();
        if let Some(dir) = &self.config {
            list.push(dir.join(CONFIG));
        }
        list.push(Path::new(SYSTEM_CONFIG).join(CONFIG));
        list.push(self.dot_crabpot().join("config").join(CONFIG));
        list.dedup();
        list
    }

    /// Where the operator's command looks for an agent's alerts log, in order: the
    /// instance's (`crabpot-agent@NAME`), or the system unit's, this process's unit's and
    /// the home directory's.
    pub fn alerts_log_candidates(&self, instance: Option<&str>) -> Vec<PathBuf> {
        if let Some(name) = instance {
            return vec![instance_dir(SYSTEM_LOGS, name).join(ALERTS_LOG)];
        }
        let mut list = vec![Path::new(SYSTEM_LOGS).join(ALERTS_LOG), self.alerts_log()];
        list.dedup();
        list
    }

    /// Where the operator's command looks for an agent's control token, in order.
    pub fn token_candidates(&self, instance: Option<&str>) -> Vec<PathBuf> {
        if let Some(name) = instance {
            return vec![instance_dir(SYSTEM_STATE, name).join(TOKEN)];
        }
        let mut list = vec![Path::new(SYSTEM_STATE).join(TOKEN), self.token_file()];
        list.dedup();
        list
    }
}

/// `/var/log/crabpot/NAME` and the like: an instance's own directory.
fn instance_dir(root: &str, name: &str) -> PathBuf {
    Path::new(root).join(name)
}

/// The configuration file of instance `NAME` (`crabpot-agent@NAME`): `/etc/crabpot/NAME.yml`.
pub fn instance_config(name: &str) -> PathBuf {
    Path::new(SYSTEM_CONFIG).join(format!("{name}.yml"))
}

/// The first of `candidates` that exists, or an error naming every path tried.
pub fn first_existing(what: &str, candidates: &[PathBuf]) -> Result<PathBuf, String> {
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .ok_or_else(|| {
            let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            format!("no {what} found (tried {})", tried.join(", "))
        })
}

/// The agent's state directory in this process (see [`Layout::state_dir`]).
pub fn state_dir() -> PathBuf {
    Layout::current().state_dir()
}

/// The default alerts log in this process (see [`Layout::alerts_log`]).
pub fn alerts_log() -> PathBuf {
    Layout::current().alerts_log()
}

/// The audit log: beside the alerts log, wherever that is.
pub fn audit_log(alerts_log: &Path) -> PathBuf {
    alerts_log.with_file_name(AUDIT_LOG)
}

/// The default control token file in this process (see [`Layout::token_file`]).
pub fn token_file() -> PathBuf {
    Layout::current().token_file()
}

/// Where the configuration file is looked for in this process.
pub fn config_locations() -> Vec<PathBuf> {
    Layout::current().config_locations()
}

/// Home directory of the effective uid from the password database; `/root` for root when
/// the database has no entry. Uses `getpwuid_r` (the agent calls this from its
/// multi-threaded runtime; `getpwuid`'s static buffer is not thread-safe).
pub fn effective_home() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if let Some(dir) = home_of(uid) {
        return dir;
    }
    if uid == 0 {
        return PathBuf::from("/root");
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// `pw_dir` of `uid`, read with `getpwuid_r` into a buffer of our own.
fn home_of(uid: libc::uid_t) -> Option<PathBuf> {
    let mut buffer = vec![libc::c_char::default(); 16 * 1024];
    // SAFETY: passwd is plain old data; getpwuid_r fills it.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, the buffer's length is passed with it, and
    // the strings it writes point into `buffer`, which outlives their use below.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || entry.pw_dir.is_null() {
        return None;
    }
    // SAFETY: pw_dir is a NUL-terminated string inside `buffer`.
    let dir = unsafe { std::ffi::CStr::from_ptr(entry.pw_dir) };
    Some(PathBuf::from(dir.to_string_lossy().into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home_only() -> Layout {
        Layout {
            logs: None,
            state: None,
            config: None,
            home: PathBuf::from("/root"),
        }
    }

    fn under_systemd(instance: &str) -> Layout {
        Layout {
            logs: Some(Path::new(SYSTEM_LOGS).join(instance)),
            state: Some(Path::new(SYSTEM_STATE).join(instance)),
            config: Some(PathBuf::from(SYSTEM_CONFIG)),
            home: PathBuf::from("/root"),
        }
    }

    #[test]
    fn without_systemd_everything_is_under_the_home_directory() {
        let layout = home_only();
        assert_eq!(
            layout.alerts_log(),
            Path::new("/root/.crabpot/data/alerts.log")
        );
        assert_eq!(
            audit_log(&layout.alerts_log()),
            Path::new("/root/.crabpot/data/audit.log")
        );
        assert_eq!(
            layout.token_file(),
            Path::new("/root/.crabpot/dashboard.token")
        );
        assert_eq!(layout.state_dir(), Path::new("/root/.crabpot"));
        assert_eq!(
            layout.config_locations(),
            vec![
                PathBuf::from("/etc/crabpot/monitor.yml"),
                PathBuf::from("/root/.crabpot/config/monitor.yml")
            ]
        );
    }

    #[test]
    fn under_systemd_the_units_directories_are_used() {
        let layout = under_systemd("web");
        assert_eq!(
            layout.alerts_log(),
            Path::new("/var/log/crabpot/web/alerts.log")
        );
        assert_eq!(
            audit_log(&layout.alerts_log()),
            Path::new("/var/log/crabpot/web/audit.log")
        );
        assert_eq!(
            layout.token_file(),
            Path::new("/var/lib/crabpot/web/dashboard.token")
        );
        assert_eq!(layout.state_dir(), Path::new("/var/lib/crabpot/web"));
        assert_eq!(
            layout.config_locations()[0],
            Path::new("/etc/crabpot/monitor.yml")
        );
        assert_eq!(layout.config_locations().len(), 2, "no duplicate");
    }

    #[test]
    fn the_operator_looks_in_both_places_or_in_the_instance() {
        let layout = home_only();
        assert_eq!(
            layout.alerts_log_candidates(None),
            vec![
                PathBuf::from("/var/log/crabpot/alerts.log"),
                PathBuf::from("/root/.crabpot/data/alerts.log")
            ]
        );
        assert_eq!(
            layout.token_candidates(Some("b")),
            vec![PathBuf::from("/var/lib/crabpot/b/dashboard.token")]
        );
        assert_eq!(instance_config("b"), Path::new("/etc/crabpot/b.yml"));
        let err = first_existing("alerts log", &[PathBuf::from("/nonexistent/a.log")])
            .expect_err("absent");
        assert!(err.contains("tried /nonexistent/a.log"), "{err}");
    }

    #[test]
    fn root_home_comes_from_the_password_database() {
        assert_eq!(home_of(0), Some(PathBuf::from("/root")));
    }

    #[test]
    fn systemd_variables_take_the_first_absolute_directory() {
        let dir = |v: &str| systemd_dir(Some(v.into()));
        assert_eq!(
            dir("/var/log/crabpot"),
            Some(PathBuf::from("/var/log/crabpot"))
        );
        assert_eq!(
            dir("/var/log/a:/var/log/b"),
            Some(PathBuf::from("/var/log/a"))
        );
        assert_eq!(dir("relative"), None);
        assert_eq!(dir(""), None);
        assert_eq!(systemd_dir(None), None);
    }
}
