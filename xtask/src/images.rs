//! Container images, built locally (no registry here): `FROM scratch` with Debian's static
//! busybox and one symlink per applet, the gateway stand-in serving /health on :18789.
use std::{fs, os::unix::fs::symlink, path::Path};

use anyhow::Context as _;

use crate::cmd;

pub(crate) const DEMO_IMAGE: &str = "crabpot/openclaw-demo:latest";
const BUSYBOX: &str = "/bin/busybox";

const DOCKERFILE: &str = r#"FROM scratch
COPY rootfs/ /
EXPOSE 18789
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=1 \
  CMD ["/bin/wget", "-q", "-O", "/dev/null", "http://127.0.0.1:18789/health"]
CMD ["/bin/httpd", "-f", "-p", "18789", "-h", "/www"]
"#;

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// Build the demo/test image and return its tag.
pub(crate) fn build_demo_image() -> anyhow::Result<String> {
    build_demo_image_as(DEMO_IMAGE)
}

/// Build the demo/test image under `tag` (a private tag leaves the shared image alone).
pub(crate) fn build_demo_image_as(tag: &str) -> anyhow::Result<String> {
    let context = cmd::workspace_root().join("target/images/openclaw-demo");
    let rootfs = context.join("rootfs");
    if rootfs.exists() {
        fs::remove_dir_all(&rootfs).with_context(|| format!("cleaning {}", rootfs.display()))?;
    }
    for dir in ["bin", "www", "etc", "tmp", "proc", "sys", "dev", "mnt"] {
        fs::create_dir_all(rootfs.join(dir))
            .with_context(|| format!("creating {}", rootfs.join(dir).display()))?;
    }
    install_busybox(rootfs.as_path())?;
    build_ptrace_helper(&rootfs.join("bin/crabpot-ptrace-attach"))?;
    build_helper("evade.c", &rootfs.join("bin/crabpot-evade"))?;
    build_helper("escape.c", &rootfs.join("bin/crabpot-escape"))?;
    write(&rootfs.join("www/health"), "ok\n")?;
    write(
        &rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
    )?;
    write(&rootfs.join("etc/group"), "root:x:0:\n")?;
    write(&context.join("Dockerfile"), DOCKERFILE)?;
    let context_arg = context.to_string_lossy().into_owned();
    cmd::run("docker", &["build", "--quiet", "-t", tag, &context_arg])
        .context("building the demo image")?;
    Ok(tag.to_string())
}

/// Debian's static busybox at `rootfs`/bin/busybox with one symlink per applet in /bin.
pub(crate) fn install_busybox(rootfs: &Path) -> anyhow::Result<()> {
    fs::copy(BUSYBOX, rootfs.join("bin/busybox"))
        .with_context(|| format!("copying {BUSYBOX} (Debian package busybox-static)"))?;
    for applet in cmd::output(BUSYBOX, &["--list"])?.lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        symlink("busybox", rootfs.join("bin").join(applet))
            .with_context(|| format!("linking applet {applet}"))?;
    }
    Ok(())
}

/// Compile one static C test helper from images/helpers/ to `output`.
fn build_helper(source: &str, output: &Path) -> anyhow::Result<()> {
    let path = cmd::workspace_root().join("images/helpers").join(source);
    let path = path.to_string_lossy().into_owned();
    let output_arg = output.to_string_lossy().into_owned();
    cmd::run(
        "gcc",
        &["-static", "-O2", "-Wall", "-o", &output_arg, &path],
    )
    .with_context(|| format!("building the static helper {source} (needs gcc and libc6-dev)"))
}

/// The static ptrace test helper (busybox has no strace), also usable on the host.
fn build_ptrace_helper(output: &Path) -> anyhow::Result<()> {
    build_helper("ptrace_attach.c", output)?;
    let host_copy = cmd::workspace_root().join("target/images/crabpot-ptrace-attach");
    fs::copy(output, &host_copy)
        .with_context(|| format!("copying the ptrace helper to {}", host_copy.display()))?;
    Ok(())
}
