//! `crabpot install`: put the binaries, the systemd unit and a default configuration in
//! place. An existing configuration is never overwritten.
use std::{
    fs,
    os::unix::fs::{DirBuilderExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

pub(crate) const UNIT: &str = include_str!("../../deploy/crabpot-agent.service");
/// The template unit `crabpot-agent@NAME`: one agent per container, /etc/crabpot/NAME.yml.
pub(crate) const TEMPLATE: &str = include_str!("../../deploy/crabpot-agent@.service");
pub(crate) const EXAMPLE_CONFIG: &str = include_str!("../../deploy/monitor.example.yml");

#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct InstallError {
    what: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

fn at(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.to_path_buf();
    move |source| InstallError { what, path, source }
}

/// Where things go.
pub struct Layout {
    pub bin_dir: PathBuf,
    pub unit_dir: PathBuf,
    pub config_dir: PathBuf,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            bin_dir: "/usr/local/bin".into(),
            unit_dir: "/etc/systemd/system".into(),
            config_dir: "/etc/crabpot".into(),
        }
    }
}

/// Install the binaries found beside `from` (the running `crabpot`), the unit and the
/// configuration; returns what was written.
pub fn install(from: &Path, layout: &Layout) -> Result<Vec<String>, InstallError> {
    let mut done = Vec::new();
    for dir in [&layout.bin_dir, &layout.unit_dir] {
        fs::create_dir_all(dir).map_err(at("creating", dir))?;
    }
    // conf.d: the operator's drop-ins and `crabpot approve --always`'s managed file.
    let dropins = layout.config_dir.join("conf.d");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dropins)
        .map_err(at("creating", &dropins))?;
    for name in ["crabpot-agent", "crabpot"] {
        let source = from.join(name);
        let target = layout.bin_dir.join(name);
        // Copy beside, then rename: a running copy is never half-written.
        let staging = layout.bin_dir.join(format!(".{name}.new"));
        fs::copy(&source, &staging).map_err(at("copying", &source))?;
        fs::set_permissions(&staging, fs::Permissions::from_mode(0o755))
            .map_err(at("setting permissions of", &staging))?;
        fs::rename(&staging, &target).map_err(at("installing", &target))?;
        done.push(format!("installed {}", target.display()));
    }
    for (name, text) in [
        ("crabpot-agent.service", UNIT),
        ("crabpot-agent@.service", TEMPLATE),
    ] {
        let unit = layout.unit_dir.join(name);
        fs::write(&unit, text).map_err(at("writing", &unit))?;
        done.push(format!("installed {}", unit.display()));
    }
    let config = layout.config_dir.join("monitor.yml");
    if config.exists() {
        done.push(format!("kept the existing {}", config.display()));
    } else {
        fs::write(&config, EXAMPLE_CONFIG).map_err(at("writing", &config))?;
        fs::set_permissions(&config, fs::Permissions::from_mode(0o600))
            .map_err(at("setting permissions of", &config))?;
        done.push(format!("installed {}", config.display()));
    }
    Ok(done)
}
