//! The posture audit: how a container was launched (its `docker inspect`), judged before it
//! does anything. Each risky setting is one finding with a severity; the score is 100 minus a
//! penalty per finding. Findings are about the launch, not behaviour: their alerts cost no
//! trust and never freeze the container (`no_pause`).
//!
//! Severities (README "Posture audit"): CRITICAL where the setting alone hands the container
//! the host (the Docker socket, `--privileged`, the host's PID or network namespace, the
//! capabilities with a known escape: SYS_ADMIN, SYS_MODULE, DAC_READ_SEARCH, BPF, SYS_RAWIO,
//! ALL); WARNING where it widens what a compromised agent can reach or exhaust (other
//! notable capabilities, host IPC, no seccomp or AppArmor, no memory or pids limit, a port
//! on every interface, root); INFO for a writable root filesystem and harmless capabilities.
use bollard::models::{ContainerInspectResponse, HostConfig, PortMap};
use serde::Serialize;

use crate::model::alert::{Alert, AlertSource, Severity};

/// One risky launch setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable name: the alert's rule is `posture_<finding>`.
    pub finding: String,
    pub severity: Severity,
    pub message: String,
    /// What was seen (mounts, capabilities, bindings).
    pub detail: String,
}

/// Every finding of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PostureReport {
    pub container: String,
    pub container_id: String,
    pub findings: Vec<Finding>,
}

/// Paths whose bind mount hands the container the Docker socket (the socket itself, or a
/// directory that holds it).
const SOCKET_PATHS: [&str; 6] = [
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/var/run",
    "/run",
    "/var",
    "/",
];

/// Capabilities with a known container escape on their own.
const CRITICAL_CAPS: [&str; 6] = [
    "ALL",
    "SYS_ADMIN",
    "SYS_MODULE",
    "DAC_READ_SEARCH",
    "BPF",
    "SYS_RAWIO",
];
/// Capabilities that widen reach (tracing, the network stack, kernel logs, the clock).
const WARNING_CAPS: [&str; 5] = ["NET_ADMIN", "SYS_PTRACE", "PERFMON", "SYSLOG", "SYS_TIME"];

impl Finding {
    fn new(finding: &str, severity: Severity, message: &str, detail: String) -> Self {
        Finding {
            finding: finding.to_string(),
            severity,
            message: message.to_string(),
            detail,
        }
    }
}

impl PostureReport {
    /// 100 minus 25 per CRITICAL, 10 per WARNING and 3 per INFO finding, at least 0.
    pub fn score(&self) -> u8 {
        let lost: u32 = self
            .findings
            .iter()
            .map(|f| match f.severity {
                Severity::Critical => 25,
                Severity::Warning => 10,
                Severity::Info => 3,
            })
            .sum();
        100u32.saturating_sub(lost) as u8
    }

    /// One alert per finding, never pausing.
    pub fn alerts(&self) -> Vec<Alert> {
        let score = self.score();
        self.findings
            .iter()
            .map(|f| {
                Alert::new(
                    f.severity,
                    AlertSource::Posture,
                    format!("Posture: {}", f.message),
                )
                .with("rule", format!("posture_{}", f.finding))
                .with("finding", f.finding.clone())
                .with("detail", f.detail.clone())
                .with("posture_score", score)
                .no_pause()
                .for_container(&self.container, &self.container_id)
            })
            .collect()
    }
}

/// Audit one container's launch settings.
pub(crate) fn audit(found: &ContainerInspectResponse) -> PostureReport {
    let host = found.host_config.clone().unwrap_or_default();
    let mut findings = Vec::new();
    findings.extend(docker_socket(found, &host));
    if host.privileged == Some(true) {
        findings.push(Finding::new(
            "privileged",
            Severity::Critical,
            "runs --privileged: every capability, every device, no seccomp or AppArmor",
            "HostConfig.Privileged=true".into(),
        ));
    }
    findings.extend(capabilities(&host));
    findings.extend(namespaces(&host));
    findings.extend(security_opts(&host));
    findings.extend(limits(&host));
    findings.extend(public_ports(found, &host));
    let user = found
        .config
        .as_ref()
        .and_then(|c| c.user.clone())
        .unwrap_or_default();
    if is_root(&user) {
        findings.push(Finding::new(
            "root_user",
            Severity::Warning,
            "runs as root inside the container (no USER, or user 0)",
            format!("Config.User={user:?}"),
        ));
    }
    PostureReport {
        container: found
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        container_id: found.id.clone().unwrap_or_default(),
        findings,
    }
}

/// Whether a `Config.User` value means uid 0.
pub(crate) fn is_root(user: &str) -> bool {
    let name = user.split(':').next().unwrap_or_default();
    name.is_empty() || name == "0" || name == "root"
}

/// Binds of the Docker socket (from every place Docker reports mounts).
fn docker_socket(found: &ContainerInspectResponse, host: &HostConfig) -> Option<Finding> {
    let mut seen: Vec<String> = Vec::new();
    let mut note = |source: &str, target: &str| {
        let clean = source.trim_end_matches('/');
        let clean = if clean.is_empty() { "/" } else { clean };
        let entry = format!("{source}:{target}");
        if SOCKET_PATHS.contains(&clean) && !seen.contains(&entry) {
            seen.push(entry);
        }
    };
    for bind in host.binds.iter().flatten() {
        let mut parts = bind.split(':');
        note(
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
    }
    for mount in host.mounts.iter().flatten() {
        note(
            mount.source.as_deref().unwrap_or_default(),
            mount.target.as_deref().unwrap_or_default(),
        );
    }
    for mount in found.mounts.iter().flatten() {
        let bind = mount
            .typ
            .is_some_and(|t| t == bollard::models::MountPointTypeEnum::BIND);
        if bind {
            note(
                mount.source.as_deref().unwrap_or_default(),
                mount.destination.as_deref().unwrap_or_default(),
            );
        }
    }
    (!seen.is_empty()).then(|| {
        Finding::new(
            "docker_socket",
            Severity::Critical,
            "the Docker socket is mounted: the container controls the Docker engine, i.e. the host",
            seen.join(", "),
        )
    })
}

/// One finding per added capability.
fn capabilities(host: &HostConfig) -> Vec<Finding> {
    host.cap_add
        .iter()
        .flatten()
        .map(|cap| {
            let name = cap.to_ascii_uppercase();
            let name = name.trim_start_matches("CAP_").to_string();
            let severity = if CRITICAL_CAPS.contains(&name.as_str()) {
                Severity::Critical
            } else if WARNING_CAPS.contains(&name.as_str()) {
                Severity::Warning
            } else {
                Severity::Info
            };
            Finding {
                finding: format!("cap_{}", name.to_ascii_lowercase()),
                severity,
                message: format!("capability {name} added (--cap-add)"),
                detail: format!("HostConfig.CapAdd contains {cap}"),
            }
        })
        .collect()
}

/// The host's network, PID and IPC namespaces.
fn namespaces(host: &HostConfig) -> Vec<Finding> {
    let modes = [
        (
            &host.network_mode,
            "host_network",
            Severity::Critical,
            "shares the host's network namespace: reaches every loopback-only service of the host",
        ),
        (
            &host.pid_mode,
            "host_pid",
            Severity::Critical,
            "shares the host's PID namespace: sees (and with ptrace rights, enters) host processes",
        ),
        (
            &host.ipc_mode,
            "host_ipc",
            Severity::Warning,
            "shares the host's IPC namespace: host shared memory and semaphores",
        ),
    ];
    modes
        .into_iter()
        .filter(|(mode, ..)| mode.as_deref() == Some("host"))
        .map(|(_, finding, severity, message)| {
            Finding::new(finding, severity, message, "mode=host".into())
        })
        .collect()
}

/// `seccomp=unconfined` and `apparmor=unconfined`.
fn security_opts(host: &HostConfig) -> Vec<Finding> {
    let opts = host.security_opt.clone().unwrap_or_default();
    let unconfined = |what: &str| {
        opts.iter().any(|opt| {
            opt.replace(':', "=")
                .eq_ignore_ascii_case(&format!("{what}=unconfined"))
        })
    };
    let mut findings = Vec::new();
    if unconfined("seccomp") {
        findings.push(Finding::new(
            "seccomp_unconfined",
            Severity::Warning,
            "no seccomp filter (seccomp=unconfined): every system call reaches the kernel",
            "HostConfig.SecurityOpt contains seccomp=unconfined".into(),
        ));
    }
    if unconfined("apparmor") {
        findings.push(Finding::new(
            "apparmor_unconfined",
            Severity::Warning,
            "no AppArmor profile (apparmor=unconfined)",
            "HostConfig.SecurityOpt contains apparmor=unconfined".into(),
        ));
    }
    findings
}

/// Writable root filesystem, no memory limit, no pids limit.
fn limits(host: &HostConfig) -> Vec<Finding> {
    let mut findings = Vec::new();
    if host.readonly_rootfs != Some(true) {
        findings.push(Finding::new(
            "writable_rootfs",
            Severity::Info,
            "writable root filesystem: a compromise can change the image's programs",
            "HostConfig.ReadonlyRootfs=false".into(),
        ));
    }
    if host.memory.unwrap_or(0) <= 0 {
        findings.push(Finding::new(
            "no_memory_limit",
            Severity::Warning,
            "no memory limit: it can take all of the host's memory",
            "HostConfig.Memory=0".into(),
        ));
    }
    if host.pids_limit.unwrap_or(0) <= 0 {
        findings.push(Finding::new(
            "no_pids_limit",
            Severity::Warning,
            "no pids limit: a fork bomb can exhaust the host's process table",
            "HostConfig.PidsLimit unset".into(),
        ));
    }
    findings
}

/// Ports published on every interface (0.0.0.0, ::, or no address given).
fn public_ports(found: &ContainerInspectResponse, host: &HostConfig) -> Option<Finding> {
    // What Docker bound (running), else what was asked for.
    let live: Option<&PortMap> = found
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.as_ref());
    let map = live
        .filter(|m| m.values().any(Option::is_some))
        .or(host.port_bindings.as_ref())?;
    let mut public: Vec<String> = map
        .iter()
        .flat_map(|(port, bindings)| {
            bindings.iter().flatten().filter_map(move |b| {
                let ip = b.host_ip.as_deref().unwrap_or_default();
                matches!(ip, "" | "0.0.0.0" | "::" | "[::]").then(|| {
                    let ip = if ip.is_empty() { "0.0.0.0" } else { ip };
                    format!(
                        "{ip}:{}->{port}",
                        b.host_port.as_deref().unwrap_or_default()
                    )
                })
            })
        })
        .collect();
    public.sort();
    public.dedup();
    (!public.is_empty()).then(|| {
        Finding::new(
            "public_port",
            Severity::Warning,
            "a port is published on every interface: reachable from the network, not only this host",
            public.join(", "),
        )
    })
}

#[cfg(test)]
#[path = "posture_tests.rs"]
mod tests;
