//! `cargo xtask dist`: a Debian package with `crabpot-agent` (kernel object embedded), `crabpot`,
//! the systemd unit and a default `/etc/crabpot/monitor.yml` (a conffile), so a host needs no
//! Rust, nightly or LLVM. Built with `dpkg-deb` from a staging tree under target/dist/.
use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use crate::{cmd, setup};

const PACKAGE: &str = "crabpot";
const UNIT: &str = "crabpot-agent.service";
const TEMPLATE: &str = "crabpot-agent@.service";

fn write(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

fn copy(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", to.display()))
}

fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

fn control(installed_kib: u64) -> String {
    format!(
        "Package: {PACKAGE}\nVersion: {}\nArchitecture: amd64\nMaintainer: CrabPot developers \
         <crabpot@localhost>\nInstalled-Size: {installed_kib}\nDepends: libc6 (>= 2.34)\n\
         Recommends: docker.io | docker-ce\nSection: admin\nPriority: optional\n\
         Description: host agent that guards AI-agent containers with eBPF\n \
         crabpot-agent watches one Docker container (the OpenClaw gateway by default) with\n \
         syscall tracepoints and cgroup hooks filtered to its cgroup, enforces the ASF-42\n \
         policy and raises alerts; `crabpot` is its operator command line.\n",
        version()
    )
}

/// Stop and disable the service and every enabled `crabpot-agent@NAME` before their files
/// go (systemd hosts only).
const PRERM: &str = "#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then\n  \
    systemctl disable --now crabpot-agent.service >/dev/null 2>&1 || true\n  \
    for unit in $(systemctl list-units --all --plain --no-legend 'crabpot-agent@*.service' \
    | cut -d' ' -f1) $(systemctl list-unit-files --plain --no-legend 'crabpot-agent@*.service' \
    | cut -d' ' -f1 | grep -v '@\\.service$'); do\n    \
    systemctl disable --now \"$unit\" >/dev/null 2>&1 || true\n  done\nfi\n";
/// Tell systemd about the new or changed unit; enabling is the operator's choice (README).
/// conf.d holds the operator's drop-ins and `crabpot approve --always`'s managed file.
const POSTINST: &str = "#!/bin/sh\nset -e\nmkdir -p -m 0700 /etc/crabpot/conf.d\n\
    if [ -d /run/systemd/system ]; then\n  systemctl daemon-reload || true\nfi\n";
const POSTRM: &str = "#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then\n  \
    systemctl daemon-reload || true\nfi\nif [ \"$1\" = purge ]; then\n  \
    rm -f /etc/crabpot/conf.d/90-approved.yml\n  \
    rmdir /etc/crabpot/conf.d /etc/crabpot 2>/dev/null || true\n  \
    rm -rf /var/lib/crabpot /var/log/crabpot\nfi\n";

/// Build the release binaries and the package; returns the .deb's path.
pub(crate) fn dist() -> anyhow::Result<PathBuf> {
    let root = cmd::workspace_root();
    let agent = setup::build_release_agent()?;
    let bin_dir = agent.parent().context("release dir")?.to_path_buf();
    let out = root.join("target/dist");
    let stage = out.join(format!("{PACKAGE}_{}_amd64", version()));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("cleaning {}", stage.display()))?;
    }
    for name in ["crabpot-agent", "crabpot"] {
        copy(
            &bin_dir.join(name),
            &stage.join("usr/bin").join(name),
            0o755,
        )?;
    }
    // The units as shipped in deploy/, pointed at the packaged binary.
    for name in [UNIT, TEMPLATE] {
        let unit = crabpot_unit(name)?;
        write(&stage.join("lib/systemd/system").join(name), &unit, 0o644)?;
    }
    copy(
        &root.join("deploy/monitor.example.yml"),
        &stage.join("etc/crabpot/monitor.yml"),
        0o600,
    )?;
    copy(
        &root.join("deploy/monitor.example.yml"),
        &stage.join("usr/share/doc/crabpot/monitor.example.yml"),
        0o644,
    )?;
    let kib = dir_size(&stage)?.div_ceil(1024);
    write(&stage.join("DEBIAN/control"), &control(kib), 0o644)?;
    write(
        &stage.join("DEBIAN/conffiles"),
        "/etc/crabpot/monitor.yml\n",
        0o644,
    )?;
    write(&stage.join("DEBIAN/prerm"), PRERM, 0o755)?;
    write(&stage.join("DEBIAN/postinst"), POSTINST, 0o755)?;
    write(&stage.join("DEBIAN/postrm"), POSTRM, 0o755)?;
    fs::set_permissions(stage.join("etc/crabpot"), fs::Permissions::from_mode(0o700))?;
    let deb = out.join(format!("{PACKAGE}_{}_amd64.deb", version()));
    cmd::run_command(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&stage)
            .arg(&deb),
    )
    .context("dpkg-deb (Debian's dpkg) failed to build the package")?;
    eprintln!("xtask: package {}", deb.display());
    Ok(deb)
}

fn crabpot_unit(name: &str) -> anyhow::Result<String> {
    let path = cmd::workspace_root().join("deploy").join(name);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        text.contains("/usr/local/bin/crabpot-agent"),
        "{} no longer starts /usr/local/bin/crabpot-agent: update xtask/src/dist.rs",
        path.display()
    );
    Ok(text.replace("/usr/local/bin/crabpot-agent", "/usr/bin/crabpot-agent"))
}

fn dir_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
