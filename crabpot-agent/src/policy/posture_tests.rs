use serde_json::json;

use super::*;

/// A `docker inspect` fixture: the settings of a hardened launch, with `host` and `config`
/// merged over them.
fn inspect(host: serde_json::Value, config: serde_json::Value) -> ContainerInspectResponse {
    let mut host_config = json!({
        "ReadonlyRootfs": true, "Memory": 1_610_612_736i64, "PidsLimit": 256,
        "CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges:true"],
        "PortBindings": {"18789/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18789"}]},
        "NetworkMode": "bridge",
    });
    let mut container_config = json!({"User": "1000:1000", "Image": "x"});
    for (base, extra) in [(&mut host_config, host), (&mut container_config, config)] {
        if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
            base.extend(extra.clone());
        }
    }
    let text = json!({
        "Id": "abc", "Name": "/guarded", "HostConfig": host_config, "Config": container_config,
        "NetworkSettings": {"Ports": {"18789/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18789"}]}},
    });
    serde_json::from_value(text).expect("inspect fixture")
}

fn names(report: &PostureReport) -> Vec<(&str, Severity)> {
    report
        .findings
        .iter()
        .map(|f| (f.finding.as_str(), f.severity))
        .collect()
}

#[test]
fn a_hardened_launch_is_clean() {
    let report = audit(&inspect(json!({}), json!({})));
    assert!(report.findings.is_empty(), "{report:?}");
    assert_eq!(report.score(), 100);
    assert_eq!(report.container, "guarded");
}

#[test]
fn privileged_and_the_socket_are_critical_and_never_pause() {
    let report = audit(&inspect(
        json!({"Privileged": true, "Binds": ["/var/run/docker.sock:/var/run/docker.sock:ro"]}),
        json!({}),
    ));
    assert_eq!(
        names(&report),
        [
            ("docker_socket", Severity::Critical),
            ("privileged", Severity::Critical)
        ]
    );
    assert_eq!(report.score(), 50);
    let alerts = report.alerts();
    assert_eq!(alerts.len(), 2);
    for alert in &alerts {
        assert!(alert.control.no_pause, "{alert:?}");
        assert_eq!(alert.source, AlertSource::Posture);
        assert_eq!(alert.container, "guarded");
    }
    assert_eq!(alerts[0].details["rule"], "posture_docker_socket");
    assert_eq!(
        alerts[0].details["detail"],
        "/var/run/docker.sock:/var/run/docker.sock"
    );
}

#[test]
fn the_socket_is_found_through_its_directory_and_the_mounts_api() {
    let run_dir = audit(&inspect(json!({"Binds": ["/run:/host-run"]}), json!({})));
    assert_eq!(names(&run_dir), [("docker_socket", Severity::Critical)]);
    let mounts = audit(&inspect(
        json!({"Mounts": [{"Type": "bind", "Source": "/run/docker.sock", "Target": "/d.sock"}]}),
        json!({}),
    ));
    assert_eq!(names(&mounts), [("docker_socket", Severity::Critical)]);
    let benign = audit(&inspect(json!({"Binds": ["/srv/data:/data"]}), json!({})));
    assert!(benign.findings.is_empty(), "{benign:?}");
}

#[test]
fn capabilities_namespaces_and_profiles() {
    let report = audit(&inspect(
        json!({
            "CapAdd": ["SYS_ADMIN", "CAP_NET_ADMIN", "CHOWN"],
            "NetworkMode": "host", "PidMode": "host", "IpcMode": "host",
            "SecurityOpt": ["seccomp=unconfined", "apparmor:unconfined"],
        }),
        json!({}),
    ));
    assert_eq!(
        names(&report),
        [
            ("cap_sys_admin", Severity::Critical),
            ("cap_net_admin", Severity::Warning),
            ("cap_chown", Severity::Info),
            ("host_network", Severity::Critical),
            ("host_pid", Severity::Critical),
            ("host_ipc", Severity::Warning),
            ("seccomp_unconfined", Severity::Warning),
            ("apparmor_unconfined", Severity::Warning),
        ]
    );
    assert_eq!(report.score(), 0);
}

#[test]
fn a_default_docker_run_lacks_limits_and_runs_as_root_on_every_interface() {
    let mut found = inspect(
        json!({"ReadonlyRootfs": false, "Memory": 0, "PidsLimit": null}),
        json!({"User": ""}),
    );
    found.network_settings = serde_json::from_value(json!({"Ports": {
        "18789/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}]
    }}))
    .ok();
    let report = audit(&found);
    assert_eq!(
        names(&report),
        [
            ("writable_rootfs", Severity::Info),
            ("no_memory_limit", Severity::Warning),
            ("no_pids_limit", Severity::Warning),
            ("public_port", Severity::Warning),
            ("root_user", Severity::Warning),
        ]
    );
    assert_eq!(
        report.findings[3].detail,
        "0.0.0.0:8080->18789/tcp, :::8080->18789/tcp"
    );
    assert!(is_root("0:0") && is_root("root") && !is_root("1000:1000"));
}
