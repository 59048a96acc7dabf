//! The hardened launch (`crabpot up|down|logs|restart`): create and start the guarded
//! container through the Docker API with a preset's settings, wait until it is healthy, and
//! the matching stop, logs and restart. The presets and why each setting: README "Hardened
//! launch".
use std::{collections::HashMap, io::Write as _, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use bollard::{
    Docker,
    models::{
        ContainerCreateBody, ContainerInspectResponse, HostConfig, ImageInspect, PortBinding,
        RestartPolicy, RestartPolicyNameEnum,
    },
    query_parameters::{
        CreateContainerOptionsBuilder, CreateImageOptionsBuilder, InspectContainerOptions,
        LogsOptionsBuilder, RemoveContainerOptionsBuilder, RestartContainerOptionsBuilder,
        StopContainerOptionsBuilder,
    },
};
use futures_util::StreamExt as _;

use crate::{
    policy::posture::{self, PostureReport},
    sources::docker::{self, is_not_found},
};

/// How tightly the container is launched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// Resource limits and a loopback-only port.
    Minimal,
    /// Also: every capability dropped but the few a root start-up needs, no-new-privileges.
    Standard,
    /// Also: read-only root, no capability, tmpfs /tmp and home, a non-root user.
    Paranoid,
}

impl Preset {
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Minimal => "minimal",
            Preset::Standard => "standard",
            Preset::Paranoid => "paranoid",
        }
    }
}

/// What `crabpot up` was asked for.
#[derive(Debug, Clone)]
pub struct UpRequest {
    pub preset: Preset,
    pub image: String,
    pub name: String,
    /// The host port on 127.0.0.1; 0 lets Docker pick a free one.
    pub port: u16,
    /// `KEY=VALUE`, or `KEY` to pass the caller's value.
    pub env: Vec<String>,
    /// The user to run as, instead of the preset's choice.
    pub user: Option<String>,
    /// How long to wait for healthy (or running, without a health check).
    pub wait: Duration,
}

/// A started container: where to reach it.
#[derive(Debug, Clone)]
pub struct Started {
    pub url: String,
    /// Generated for the OpenClaw gateway when the caller had none.
    pub generated_token: Option<String>,
    pub healthy: bool,
}

const GIB: i64 = 1 << 30;
/// The port the OpenClaw gateway listens on, when the image declares none.
const DEFAULT_PORT: &str = "18789/tcp";
/// The non-root user for images that would run as root (`nobody`).
const NOBODY: &str = "65534:65534";
/// Capabilities the standard preset keeps: what an image that starts as root and then drops
/// to its own user needs (chown its files, switch user).
const STANDARD_CAPS: [&str; 5] = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID"];
const TOKEN_ENV: &str = "OPENCLAW_GATEWAY_TOKEN";

/// The host settings of a preset for an image that runs as `user` with home `home`.
pub(crate) fn host_config(preset: Preset, user: &str, home: Option<&str>) -> HostConfig {
    let (memory, cpus, pids) = match preset {
        // The real gateway takes ~800 MiB: 1.5 GiB leaves it room.
        Preset::Paranoid => (3 * GIB / 2, 1.5, 256),
        Preset::Standard => (2 * GIB, 2.0, 512),
        Preset::Minimal => (2 * GIB, 2.0, 1024),
    };
    let mut host = HostConfig {
        memory: Some(memory),
        // Equal to the memory limit: no swap on top.
        memory_swap: Some(memory),
        nano_cpus: Some((cpus * 1e9) as i64),
        pids_limit: Some(pids),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    if preset == Preset::Minimal {
        return host;
    }
    host.security_opt = Some(vec!["no-new-privileges:true".into()]);
    host.cap_drop = Some(vec!["ALL".into()]);
    if preset == Preset::Standard {
        host.cap_add = Some(STANDARD_CAPS.iter().map(|c| c.to_string()).collect());
        return host;
    }
    host.readonly_rootfs = Some(true);
    let mut tmpfs = HashMap::from([(
        "/tmp".to_string(),
        tmpfs_options(user, "nosuid,nodev,noexec,size=64m", "1777"),
    )]);
    if let Some(home) = home.filter(|h| *h != "/" && *h != "/tmp") {
        tmpfs.insert(
            home.to_string(),
            tmpfs_options(user, "nosuid,nodev,size=256m", "0700"),
        );
    }
    host.tmpfs = Some(tmpfs);
    host
}

/// A tmpfs the user can write: owned by a numeric user (with `owned_mode`), else
/// world-writable with the sticky bit. Owned, because Docker copies the image directory's mode over `mode=` (seen on
/// Docker 20.10: `--tmpfs /tmp:mode=1777` over a 0755 /tmp stays 0755).
fn tmpfs_options(user: &str, base: &str, owned_mode: &str) -> String {
    let mut ids = user.split(':');
    let uid = ids.next().unwrap_or_default();
    let gid = ids.next().unwrap_or(uid);
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if numeric(uid) && numeric(gid) {
        format!("rw,{base},uid={uid},gid={gid},mode={owned_mode}")
    } else {
        format!("rw,{base},mode=1777")
    }
}

/// The user to run as: asked for, else the image's when it is not root; the paranoid preset
/// replaces root with `nobody`.
pub(crate) fn choose_user(preset: Preset, asked: Option<&str>, image_user: &str) -> String {
    match asked {
        Some(user) => user.to_string(),
        None if preset == Preset::Paranoid && posture::is_root(image_user) => NOBODY.into(),
        None => image_user.to_string(),
    }
}

/// The image's own HOME (its `Env`), else its working directory.
fn image_home(image: &ImageInspect) -> Option<String> {
    let config = image.config.as_ref()?;
    config
        .env
        .iter()
        .flatten()
        .find_map(|e| e.strip_prefix("HOME=").map(str::to_string))
        .or_else(|| config.working_dir.clone().filter(|d| !d.is_empty()))
}

/// The image's first exposed TCP port, else the gateway's.
fn image_port(image: &ImageInspect) -> String {
    let mut ports: Vec<String> = image
        .config
        .as_ref()
        .and_then(|c| c.exposed_ports.as_ref())
        .map(|p| p.keys().filter(|k| k.ends_with("/tcp")).cloned().collect())
        .unwrap_or_default();
    ports.sort();
    ports
        .into_iter()
        .next()
        .unwrap_or_else(|| DEFAULT_PORT.into())
}

/// The environment: `KEY=VALUE` as given, `KEY` from the caller; the gateway token from the
/// caller's environment or a fresh random one (returned, to be shown once).
fn environment(asked: &[String]) -> anyhow::Result<(Vec<String>, Option<String>)> {
    let mut env = Vec::new();
    for item in asked {
        if item.contains('=') {
            env.push(item.clone());
        } else if let Ok(value) = std::env::var(item) {
            env.push(format!("{item}={value}"));
        }
    }
    if env.iter().any(|e| e.starts_with(&format!("{TOKEN_ENV}="))) {
        return Ok((env, None));
    }
    if let Ok(token) = std::env::var(TOKEN_ENV) {
        env.push(format!("{TOKEN_ENV}={token}"));
        return Ok((env, None));
    }
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("reading /dev/urandom for a gateway token")?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    env.push(format!("{TOKEN_ENV}={token}"));
    Ok((env, Some(token)))
}

/// The image, pulled when it is not here.
async fn ensure_image(docker: &Docker, image: &str) -> anyhow::Result<ImageInspect> {
    match docker.inspect_image(image).await {
        Ok(found) => return Ok(found),
        Err(error) if is_not_found(&error) => {}
        Err(error) => return Err(error).context(format!("inspecting image `{image}`")),
    }
    eprintln!("crabpot: pulling `{image}`…");
    let options = CreateImageOptionsBuilder::new().from_image(image).build();
    let mut pull = docker.create_image(Some(options), None, None);
    while let Some(step) = pull.next().await {
        step.with_context(|| format!("pulling image `{image}`"))?;
    }
    docker
        .inspect_image(image)
        .await
        .with_context(|| format!("inspecting image `{image}` after the pull"))
}

/// The container's create request for a preset.
fn create_body(request: &UpRequest, image: &ImageInspect, env: Vec<String>) -> ContainerCreateBody {
    let image_user = image
        .config
        .as_ref()
        .and_then(|c| c.user.clone())
        .unwrap_or_default();
    let user = choose_user(request.preset, request.user.as_deref(), &image_user);
    let port = image_port(image);
    let mut host = host_config(request.preset, &user, image_home(image).as_deref());
    let host_port = match request.port {
        0 => String::new(),
        port => port.to_string(),
    };
    host.port_bindings = Some(HashMap::from([(
        port.clone(),
        Some(vec![PortBinding {
            host_ip: Some("127.0.0.1".into()),
            host_port: Some(host_port),
        }]),
    )]));
    ContainerCreateBody {
        image: Some(request.image.clone()),
        user: Some(user),
        env: Some(env),
        exposed_ports: Some(HashMap::from([(port, HashMap::new())])),
        labels: Some(HashMap::from([(
            "crabpot.preset".to_string(),
            request.preset.as_str().to_string(),
        )])),
        host_config: Some(host),
        ..Default::default()
    }
}

/// Create and start the container with the preset, wait until it is ready.
pub async fn up(request: &UpRequest) -> anyhow::Result<Started> {
    let docker = docker::connect().await?;
    let name = request.name.as_str();
    match docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
    {
        Ok(_) => {
            bail!("a container named `{name}` exists already; `crabpot down --name {name}` first")
        }
        Err(error) if is_not_found(&error) => {}
        Err(error) => return Err(error).context(format!("inspecting `{name}`")),
    }
    let image = ensure_image(&docker, &request.image).await?;
    let (env, generated_token) = environment(&request.env)?;
    let options = CreateContainerOptionsBuilder::new().name(name).build();
    docker
        .create_container(Some(options), create_body(request, &image, env))
        .await
        .with_context(|| format!("creating `{name}`"))?;
    docker
        .start_container(
            name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .with_context(|| format!("starting `{name}` (`crabpot logs --name {name}` may say why)"))?;
    let (found, healthy) = wait_ready(&docker, name, request.wait).await?;
    Ok(Started {
        url: reach(&found).unwrap_or_else(|| "(no published port)".into()),
        generated_token,
        healthy,
    })
}

/// `http://127.0.0.1:PORT/` of the container's published port.
fn reach(found: &ContainerInspectResponse) -> Option<String> {
    let ports = found.network_settings.as_ref()?.ports.as_ref()?;
    let binding = ports.values().flatten().flatten().next()?;
    Some(format!(
        "http://{}:{}/",
        binding.host_ip.as_deref().unwrap_or("127.0.0.1"),
        binding.host_port.as_deref().unwrap_or_default()
    ))
}

/// Poll until healthy (true), or running when the image has no health check (false).
async fn wait_ready(
    docker: &Docker,
    name: &str,
    deadline: Duration,
) -> anyhow::Result<(ContainerInspectResponse, bool)> {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let found = docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .with_context(|| format!("inspecting `{name}`"))?;
        let state = found.state.clone().unwrap_or_default();
        let health = state
            .health
            .as_ref()
            .and_then(|h| h.status)
            .map(|s| s.to_string());
        if state.running != Some(true) && !state.restarting.unwrap_or(false) {
            bail!(
                "`{name}` stopped (exit code {}); see `crabpot logs --name {name}`",
                state.exit_code.unwrap_or(-1)
            );
        }
        match health.as_deref() {
            Some("healthy") => return Ok((found, true)),
            Some("unhealthy") => bail!("`{name}` is unhealthy; see `crabpot logs --name {name}`"),
            None | Some("none") | Some("") if state.running == Some(true) => {
                return Ok((found, false));
            }
            _ => {}
        }
        if tokio::time::Instant::now() >= until {
            return Err(anyhow!(
                "`{name}` is not ready after {} s (health: {}); see `crabpot logs --name {name}`",
                deadline.as_secs(),
                health.unwrap_or_else(|| "none".into())
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Stop and remove the container; false when there was none.
pub async fn down(name: &str) -> anyhow::Result<bool> {
    let docker = docker::connect().await?;
    let stop = StopContainerOptionsBuilder::new().t(10).build();
    match docker.stop_container(name, Some(stop)).await {
        Ok(()) => {}
        Err(error) if is_not_found(&error) => return Ok(false),
        // 304: already stopped; anything else the forced remove settles.
        Err(error) => tracing::debug!("stopping `{name}`: {error}"),
    }
    let remove = RemoveContainerOptionsBuilder::new().force(true).build();
    match docker.remove_container(name, Some(remove)).await {
        Ok(()) => Ok(true),
        Err(error) if is_not_found(&error) => Ok(true),
        Err(error) => Err(error).context(format!("removing `{name}`")),
    }
}

/// Restart the container and wait until it is ready again.
pub async fn restart(name: &str, wait: Duration) -> anyhow::Result<bool> {
    let docker = docker::connect().await?;
    let options = RestartContainerOptionsBuilder::new().t(10).build();
    docker
        .restart_container(name, Some(options))
        .await
        .with_context(|| format!("restarting `{name}`"))?;
    Ok(wait_ready(&docker, name, wait).await?.1)
}

/// Copy the container's output to ours; with `follow`, until it stops.
pub async fn logs(name: &str, follow: bool, tail: &str) -> anyhow::Result<()> {
    let docker = docker::connect().await?;
    let options = LogsOptionsBuilder::new()
        .follow(follow)
        .stdout(true)
        .stderr(true)
        .tail(tail)
        .build();
    let mut stream = docker.logs(name, Some(options));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("reading the logs of `{name}`"))?;
        let result = match chunk {
            bollard::container::LogOutput::StdErr { message } => {
                std::io::stderr().write_all(&message)
            }
            other => std::io::stdout().write_all(&other.into_bytes()),
        };
        // The reader went away (`| head`): done.
        if result.is_err() {
            break;
        }
    }
    Ok(())
}

/// The posture audit of one container, straight from Docker (no agent needed).
pub async fn audit(name: &str) -> anyhow::Result<PostureReport> {
    let docker = docker::connect().await?;
    let found = docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
        .map_err(|error| match is_not_found(&error) {
            true => anyhow!("container `{name}` not found (use --container NAME)"),
            false => anyhow!("inspecting `{name}`: {error}"),
        })?;
    Ok(posture::audit(&found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_tighten_step_by_step() {
        let minimal = host_config(Preset::Minimal, "", None);
        assert_eq!(minimal.memory, Some(2 * GIB));
        assert_eq!(minimal.memory_swap, minimal.memory);
        assert!(minimal.cap_drop.is_none() && minimal.readonly_rootfs.is_none());
        let standard = host_config(Preset::Standard, "", None);
        assert_eq!(standard.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(standard.cap_add.as_ref().map(Vec::len), Some(5));
        let paranoid = host_config(Preset::Paranoid, "1000:1000", Some("/home/node"));
        assert!(paranoid.memory.is_some_and(|m| m >= 3 * GIB / 2));
        assert_eq!(paranoid.readonly_rootfs, Some(true));
        assert!(paranoid.cap_add.is_none());
        let tmpfs = paranoid.tmpfs.unwrap_or_default();
        assert!(
            tmpfs["/home/node"].contains("uid=1000,gid=1000"),
            "{tmpfs:?}"
        );
        assert!(tmpfs["/tmp"].contains("noexec"));
        assert!(tmpfs["/home/node"].ends_with("mode=0700"), "{tmpfs:?}");
        assert_eq!(
            tmpfs_options("node", "size=1m", "0700"),
            "rw,size=1m,mode=1777"
        );
    }

    #[test]
    fn paranoid_replaces_root_only() {
        assert_eq!(choose_user(Preset::Paranoid, None, ""), NOBODY);
        assert_eq!(choose_user(Preset::Paranoid, None, "0:0"), NOBODY);
        assert_eq!(
            choose_user(Preset::Paranoid, None, "1000:1000"),
            "1000:1000"
        );
        assert_eq!(choose_user(Preset::Paranoid, Some("0"), ""), "0");
        assert_eq!(choose_user(Preset::Standard, None, ""), "");
    }
}
