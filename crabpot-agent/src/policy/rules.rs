//! The ASF-42 table as the default policy, per-rule actions and the agent profiles.
use std::{fmt, str::FromStr};

use crate::{
    model::event::RuleName,
    policy::allow::{AllowEntry, AllowSpec, HostEntry},
};
use crabpot_common::mode;

/// What to do when a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Off,
    Log,
    Alert,
    /// Would block; let through and alert "audit".
    Audit,
    Block,
}

impl Action {
    pub fn kernel_mode(self) -> u32 {
        match self {
            Action::Off => mode::OFF,
            Action::Log => mode::LOG,
            Action::Alert => mode::ALERT,
            Action::Audit => mode::AUDIT,
            Action::Block => mode::BLOCK,
        }
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "off" => Ok(Action::Off),
            "log" => Ok(Action::Log),
            "alert" => Ok(Action::Alert),
            "audit" => Ok(Action::Audit),
            "block" => Ok(Action::Block),
            _ => Err(format!(
                "unknown action `{text}`: use block, audit, alert, log or off"
            )),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Off => "off",
            Action::Log => "log",
            Action::Alert => "alert",
            Action::Audit => "audit",
            Action::Block => "block",
        })
    }
}

/// A rule by its name, or an error that lists the names.
pub(crate) fn parse_rule(text: &str) -> Result<RuleName, String> {
    RuleName::ALL
        .into_iter()
        .find(|r| r.as_str() == text)
        .ok_or_else(|| {
            format!("unknown rule `{text}`: use mount, exec, ptrace, proc_open, socket or connect")
        })
}

/// `RULE=ACTION` as given on the command line.
pub(crate) fn parse_override(text: &str) -> Result<(RuleName, Action), String> {
    let (rule, action) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not RULE=ACTION (e.g. connect=audit)"))?;
    Ok((parse_rule(rule.trim())?, action.trim().parse()?))
}

/// What the OpenClaw gateway itself talks to (its skill catalog, telemetry and ClawHub),
/// allowed on HTTPS by the openclaw profile unless the configuration file gives its own
/// `allow:` list. Without them the gateway's first seconds are three blocked connects and
/// a quarantine. Model providers are not here: the example configuration lists them,
/// commented, for the user to choose.
pub(crate) const OPENCLAW_DEFAULT_ALLOW: [&str; 3] = [
    "catalog.openclaw.ai:443",
    "telemetry.openclaw.ai:443",
    "clawhub.ai:443",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    actions: [(RuleName, Action); 6],
    /// Destinations the connect rule allows besides loopback (always allowed).
    pub allow: Vec<AllowEntry>,
    /// Host names to allow; their addresses join `allow` once resolved.
    pub allow_hosts: Vec<HostEntry>,
    /// Alert on opens of input, sound, video and display devices (moltbot).
    pub watch_devices: bool,
}

impl Default for Policy {
    /// The ASF-42 table.
    fn default() -> Self {
        Policy {
            actions: [
                (RuleName::Mount, Action::Block),
                (RuleName::Exec, Action::Log),
                (RuleName::Ptrace, Action::Block),
                (RuleName::ProcOpen, Action::Log),
                (RuleName::Socket, Action::Alert),
                (RuleName::Connect, Action::Block),
            ],
            allow: Vec::new(),
            allow_hosts: Vec::new(),
            watch_devices: false,
        }
    }
}

impl Policy {
    pub fn action(&self, rule: RuleName) -> Action {
        self.actions
            .iter()
            .find(|(r, _)| *r == rule)
            .map(|(_, a)| *a)
            .unwrap_or(Action::Off)
    }

    /// Whether a destination is in the allowlist (ports aside: the per-port entries are
    /// enforced by the kernel's hooks): always-allowed nets, then the configured ones.
    pub(crate) fn allows(&self, address: std::net::IpAddr) -> bool {
        let nets: Vec<ipnet::IpNet> = crate::policy::network_allow::always_allowed()
            .into_iter()
            .chain(self.allow.iter().map(|entry| entry.net))
            .collect();
        crate::policy::network_allow::is_allowed(address, &nets)
    }

    pub fn set(&mut self, rule: RuleName, action: Action) {
        for entry in &mut self.actions {
            if entry.0 == rule {
                entry.1 = action;
            }
        }
    }

    /// Add allowlist lines.
    pub fn allow_specs(&mut self, specs: impl IntoIterator<Item = AllowSpec>) {
        for spec in specs {
            match spec {
                AllowSpec::Address(entry) => self.allow.push(entry),
                AllowSpec::Host(host) => self.allow_hosts.push(host),
            }
        }
    }

    pub fn rules(&self) -> impl Iterator<Item = (RuleName, Action)> + '_ {
        self.actions.iter().copied()
    }

    /// The openclaw profile's default allowlist ([`OPENCLAW_DEFAULT_ALLOW`]).
    pub fn allow_openclaw_hosts(&mut self) {
        for text in OPENCLAW_DEFAULT_ALLOW {
            if let Ok(spec) = text.parse::<AllowSpec>() {
                self.allow_specs([spec]);
            }
        }
    }

    /// Apply the presets: openclaw is the table itself; clawbot limits the network to
    /// loopback (the allowlist is emptied, connects blocked); moltbot adds device watching.
    pub fn with_profiles(mut self, profiles: &[&str]) -> Self {
        if profiles.contains(&"clawbot") {
            self.allow.clear();
            self.allow_hosts.clear();
            self.set(RuleName::Connect, Action::Block);
        }
        if profiles.contains(&"moltbot") {
            self.watch_devices = true;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_asf42_table() {
        let policy = Policy::default();
        assert_eq!(policy.action(RuleName::Mount), Action::Block);
        assert_eq!(policy.action(RuleName::Ptrace), Action::Block);
        assert_eq!(policy.action(RuleName::Exec), Action::Log);
        assert_eq!(policy.action(RuleName::ProcOpen), Action::Log);
        assert_eq!(policy.action(RuleName::Socket), Action::Alert);
        assert_eq!(policy.action(RuleName::Connect), Action::Block);
    }

    #[test]
    fn overrides_and_profiles() {
        assert_eq!(
            parse_override("connect=audit"),
            Ok((RuleName::Connect, Action::Audit))
        );
        assert!(parse_override("connect").is_err());
        assert!(parse_override("bogus=block").is_err());
        assert!(parse_override("mount=maybe").is_err());
        let mut policy = Policy::default();
        policy.allow.push("10.0.0.0/8".parse().expect("entry"));
        let clawbot = policy.clone().with_profiles(&["clawbot"]);
        assert!(clawbot.allow.is_empty());
        assert!(policy.with_profiles(&["moltbot"]).watch_devices);
    }

    #[test]
    fn openclaw_hosts_are_valid_https_host_entries() {
        let mut policy = Policy::default();
        policy.allow_openclaw_hosts();
        assert_eq!(policy.allow_hosts.len(), OPENCLAW_DEFAULT_ALLOW.len());
        assert!(policy.allow_hosts.iter().all(|h| h.port == Some(443)));
        assert!(policy.with_profiles(&["clawbot"]).allow_hosts.is_empty());
    }
}
