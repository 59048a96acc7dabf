//! `cargo xtask vm-test`: run the BPF LSM test (`crabpot-agent/tests/lsm_vm.rs`) inside a
//! throwaway QEMU VM booting a stock Debian kernel, for hosts that refuse LSM programs.
//!
//! Cached under target/vm/: the kernel (`kernels/<package>/vmlinux`, extracted from the
//! package's vmlinuz, never installed into /boot), the last initramfs and console log. The VM
//! runs under TCG (`-accel tcg -cpu max`) from the uncompressed kernel (PVH entry point).
use std::{
    collections::BTreeSet,
    fs::{self, File},
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{cmd, setup};

/// QEMU, a static busybox for /init, strip (binutils), decompressors for the kernel image.
const PACKAGES: &str = "qemu-system-x86 busybox-static binutils xz-utils zstd";
const MARKER: &str = "VM-EXIT-CODE=";
const BOOTED: &str = "VM-BOOTED";
const TIMEOUT: Duration = Duration::from_secs(120);
const KERNEL_ARGS: &str =
    "console=ttyS0 quiet panic=-1 oops=panic lsm=lockdown,capability,landlock,yama,bpf";
/// Fixed argument lists (split on whitespace; no shell involved).
const QEMU_ARGS: &str = "-nodefaults -no-user-config -accel tcg -cpu max -m 256M -smp 1 \
    -display none -serial stdio -monitor none -no-reboot";
const BUILD_ARGS: &str = "test -p crabpot-agent --test lsm_vm --no-run --message-format=json";
/// The VM's /init: mount what the agent needs, run the test, print the marker, power off.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin CRABPOT_IN_VM=1 HOME=/root TMPDIR=/tmp
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
mount -t securityfs securityfs /sys/kernel/security; mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing; mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /tmp
echo "VM-BOOTED kernel=$(uname -r) uptime=$(cut -d' ' -f1 /proc/uptime)s lsm=$(cat /sys/kernel/security/lsm)"
/crabpot/lsm_vm --ignored --nocapture --test-threads=1
echo "VM-EXIT-CODE=$?"
poweroff -f
"#;

/// Boot one VM with `kernel` ("6.1", "6.12" or a linux-image package name) and run the LSM
/// test in it; fails when the test fails or the VM never reports.
pub(crate) fn vm_test(kernel: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let root = cmd::workspace_root();
    let work = root.join("target/vm");
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let missing: Vec<&str> = PACKAGES
        .split_whitespace()
        .filter(|p| !installed(p))
        .collect();
    if !missing.is_empty() {
        cmd::require_root()?;
        eprintln!("xtask: installing Debian packages {missing:?} for the VM test");
        let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
        args.extend(&missing);
        apt_get(&args, None)?;
    }
    let (package, vmlinux) = kernel_image(&work, kernel)?;
    eprintln!(
        "xtask: VM kernel: Debian package {package} (for {kernel:?}: the newest build behind \
         the meta-package, as older builds leave the archive; stock, with BTF and CONFIG_BPF_LSM)"
    );
    let test_binary = build_test_binary(&root)?;
    let initramfs = build_initramfs(&work, &test_binary)?;
    eprintln!(
        "xtask: booting {package} (TCG) with {}",
        initramfs.display()
    );
    let (rc, console) = boot(&work, &vmlinux, &initramfs)?;
    if rc != 0 {
        bail!("the BPF LSM test failed inside the VM (exit code {rc}, {package}); see above");
    }
    // The test is #[ignore]d outside the VM: make sure it really ran in here.
    let passed = passed_tests(&console);
    if passed == 0 {
        bail!("the VM exited 0 but ran no LSM test (no `test result: ok. N passed`, N > 0)");
    }
    eprintln!("xtask: {passed} BPF LSM test(s) passed inside the VM on {package}");
    let total = started.elapsed().as_secs_f64();
    eprintln!("xtask: BPF LSM VM test passed on {package} in {total:.1} s total");
    Ok(())
}

fn installed(package: &str) -> bool {
    cmd::output("dpkg-query", &["-W", "-f=${Status}", package])
        .is_ok_and(|status| status.contains("install ok installed"))
}

/// apt-get with `args` (in `dir`); after a failure, once more after `apt-get update`.
fn apt_get(args: &[&str], dir: Option<&Path>) -> anyhow::Result<()> {
    let attempt = || {
        let mut command = Command::new("apt-get");
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        cmd::run_command(&mut command)
    };
    if attempt().is_err() {
        cmd::run("apt-get", &["update", "-qq"])?;
        attempt().with_context(|| format!("apt-get {args:?} failed: check apt's sources"))?;
    }
    Ok(())
}

/// The linux-image package for a kernel choice: "6.1" and "6.12" follow Debian's meta-packages,
/// i.e. the newest `linux-image-6.1.0-*-amd64` (bookworm) or 6.12 build apt knows today. A fixed
/// ABI number would break the day Debian drops that package from the archive (old builds
/// vanish); the package chosen is printed, and `--kernel linux-image-…` pins one by name.
fn kernel_package(choice: &str) -> anyhow::Result<String> {
    let meta = match choice {
        "6.1" => "linux-image-amd64",
        "6.12" => "linux-image-6.12-amd64",
        package => return Ok(package.to_string()),
    };
    let resolve = || -> Option<String> {
        let depends = cmd::output("apt-cache", &["depends", "--important", meta]).ok()?;
        depends.lines().find_map(|line| {
            let name = line.trim().strip_prefix("Depends: ")?;
            name.starts_with("linux-image-").then(|| name.to_string())
        })
    };
    if let Some(package) = resolve() {
        return Ok(package);
    }
    cmd::run("apt-get", &["update", "-qq"])?;
    resolve().with_context(|| format!("apt knows no package behind {meta}: check its sources"))
}

/// The first file in `dir` whose name satisfies `wanted`.
fn find_file(dir: &Path, wanted: impl Fn(&str) -> bool) -> anyhow::Result<PathBuf> {
    fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| {
            path.file_name()
                .is_some_and(|name| wanted(&name.to_string_lossy()))
        })
        .with_context(|| format!("expected file not found in {}", dir.display()))
}

/// Download and unpack the kernel once; the cached uncompressed vmlinux afterwards.
fn kernel_image(work: &Path, choice: &str) -> anyhow::Result<(String, PathBuf)> {
    let package = kernel_package(choice)?;
    let dir = work.join("kernels").join(&package);
    let vmlinux = dir.join("vmlinux");
    if vmlinux.exists() {
        return Ok((package, vmlinux));
    }
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    eprintln!("xtask: downloading {package} into {}", dir.display());
    apt_get(&["download", &package], Some(&dir))?;
    let deb = find_file(&dir, |name| name.ends_with(".deb"))?;
    let unpacked = dir.join("root");
    let (deb_arg, unpacked_arg) = (deb.to_string_lossy(), unpacked.to_string_lossy());
    cmd::run("dpkg-deb", &["-x", &deb_arg, &unpacked_arg])?;
    let vmlinuz = find_file(&unpacked.join("boot"), |name| name.starts_with("vmlinuz-"))?;
    extract_vmlinux(&vmlinuz, &vmlinux)?;
    // Only vmlinux is needed: drop the package and its modules (hundreds of MB).
    fs::remove_dir_all(&unpacked).ok();
    fs::remove_file(&deb).ok();
    Ok((package, vmlinux))
}

/// Find the compressed payload inside a bzImage and decompress it (scripts/extract-vmlinux).
fn extract_vmlinux(vmlinuz: &Path, vmlinux: &Path) -> anyhow::Result<()> {
    let data = fs::read(vmlinuz).with_context(|| format!("cannot read {}", vmlinuz.display()))?;
    let part = vmlinux.with_extension("part");
    let formats: [(&[u8], &str); 3] = [
        (b"\xfd7zXZ\0", "xz"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"\x1f\x8b\x08", "gzip"),
    ];
    for (magic, tool) in formats {
        for offset in (0..data.len()).filter(|&at| data[at..].starts_with(magic)) {
            fs::write(&part, &data[offset..])?;
            // Trailing data after the stream makes the tool fail after writing it all.
            let out = Command::new(tool)
                .arg("-dc")
                .stdin(File::open(&part)?)
                .stderr(Stdio::null())
                .output()
                .with_context(|| format!("cannot run {tool} (packages xz-utils, zstd)"))?;
            if out.stdout.starts_with(b"\x7fELF") {
                fs::remove_file(&part).ok();
                let temporary = vmlinux.with_extension("tmp");
                fs::write(&temporary, &out.stdout)?;
                return fs::rename(&temporary, vmlinux).context("cannot store vmlinux");
            }
        }
    }
    fs::remove_file(&part).ok();
    bail!(
        "no xz, zstd or gzip stream in {} is a kernel",
        vmlinuz.display()
    )
}

/// Build the in-VM test and return its executable (from cargo's JSON messages).
fn build_test_binary(root: &Path) -> anyhow::Result<PathBuf> {
    let out = Command::new(setup::cargo())
        .args(BUILD_ARGS.split_whitespace())
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !out.status.success() {
        bail!("building the VM test failed (cargo {BUILD_ARGS})");
    }
    const EXECUTABLE: &str = r#""executable":""#;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.contains(r#""reason":"compiler-artifact""#))
        .filter(|line| line.contains(r#""name":"lsm_vm""#))
        .find_map(|line| {
            let start = line.find(EXECUTABLE)? + EXECUTABLE.len();
            let end = start + line[start..].find('"')?;
            Some(PathBuf::from(&line[start..end]))
        })
        .context("cargo reported no executable for the lsm_vm test")
}

/// busybox + /init + the test binary (debug info stripped) and the libraries `ldd` lists, as
/// one uncompressed newc cpio archive.
fn build_initramfs(work: &Path, test_binary: &Path) -> anyhow::Result<PathBuf> {
    let stripped = work.join("lsm_vm");
    let (stripped_arg, binary_arg) = (stripped.to_string_lossy(), test_binary.to_string_lossy());
    let strip = ["--strip-debug", "-o", &stripped_arg, &binary_arg];
    cmd::run("strip", &strip)?;
    let ldd = cmd::output("ldd", &[&stripped_arg])?;
    let libs = ldd.lines().filter_map(|line| {
        let path = line.split("=>").last()?.split_whitespace().next()?;
        path.starts_with('/').then(|| PathBuf::from(path))
    });
    let mut files: Vec<(PathBuf, PathBuf)> = libs.map(|lib| (lib.clone(), lib)).collect();
    files.push(("/bin/busybox".into(), "/bin/busybox".into()));
    files.push((stripped.clone(), "/crabpot/lsm_vm".into()));
    let mut dirs: BTreeSet<PathBuf> = ["dev", "proc", "sys", "tmp", "root"]
        .map(PathBuf::from)
        .into();
    for (_, inside) in &files {
        let relative = inside.strip_prefix("/").unwrap_or(inside);
        dirs.extend(
            relative
                .ancestors()
                .skip(1)
                .filter(|p| !p.as_os_str().is_empty())
                .map(PathBuf::from),
        );
    }
    let mut cpio = Vec::new();
    for dir in &dirs {
        cpio_entry(&mut cpio, &dir.to_string_lossy(), 0o040755, &[], (0, 0));
    }
    cpio_entry(&mut cpio, "dev/console", 0o020600, &[], (5, 1));
    cpio_entry(&mut cpio, "init", 0o100755, INIT.as_bytes(), (0, 0));
    for (source, inside) in &files {
        let data = fs::read(source).with_context(|| format!("cannot read {}", source.display()))?;
        let name = inside.to_string_lossy();
        cpio_entry(
            &mut cpio,
            name.trim_start_matches('/'),
            0o100755,
            &data,
            (0, 0),
        );
    }
    cpio_entry(&mut cpio, "TRAILER!!!", 0, &[], (0, 0));
    let path = work.join("initramfs.cpio");
    fs::write(&path, cpio).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Append one entry to an uncompressed newc cpio archive (the format the kernel unpacks);
/// every header and file starts on a 4-byte boundary.
fn cpio_entry(cpio: &mut Vec<u8>, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
    let inode = cpio.len() as u32 + 1; // unique: the offset of the entry
    let nlink = if mode & 0o040000 != 0 { 2 } else { 1 };
    let (size, name_size) = (data.len() as u32, name.len() as u32 + 1);
    let fields = [
        inode, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, name_size, 0,
    ];
    cpio.extend_from_slice(b"070701");
    for field in fields {
        cpio.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    cpio.extend_from_slice(name.as_bytes());
    cpio.push(0);
    cpio.resize(cpio.len().next_multiple_of(4), 0);
    cpio.extend_from_slice(data);
    cpio.resize(cpio.len().next_multiple_of(4), 0);
}

/// The number of passed tests in libtest's summary lines of `console`.
fn passed_tests(console: &str) -> u32 {
    console
        .lines()
        .filter_map(|line| line.split("test result: ok. ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<u32>().ok())
        .sum()
}

/// Boot the VM, stream its console; the test's exit code from the marker line, and the log.
fn boot(work: &Path, vmlinux: &Path, initramfs: &Path) -> anyhow::Result<(i32, String)> {
    let started = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(QEMU_ARGS.split_whitespace())
        .arg("-kernel")
        .arg(vmlinux)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", KERNEL_ARGS])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start qemu-system-x86_64 (package qemu-system-x86)")?;
    let stdout = qemu.stdout.take().context("no qemu stdout")?;
    let (sender, console) = mpsc::channel::<String>();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender
                .send(line.trim_end_matches('\r').to_string())
                .is_err()
            {
                break;
            }
        }
    });
    let (mut log, mut rc) = (String::new(), None);
    // Ends on the marker, at the timeout, or when qemu exits (the console closes).
    while rc.is_none() {
        let left = TIMEOUT.saturating_sub(started.elapsed());
        let Ok(line) = console.recv_timeout(left) else {
            break;
        };
        println!("vm| {line}");
        if line.starts_with(BOOTED) {
            eprintln!(
                "xtask: VM reached /init after {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        rc = line
            .strip_prefix(MARKER)
            .and_then(|code| code.trim().parse::<i32>().ok());
        log.push_str(&line);
        log.push('\n');
    }
    let waited = Instant::now();
    while qemu.try_wait()?.is_none() && waited.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(50));
    }
    if qemu.try_wait()?.is_none() {
        qemu.kill().ok();
        qemu.wait().ok();
    }
    let saved = work.join("console.log");
    fs::write(&saved, &log).with_context(|| format!("cannot write {}", saved.display()))?;
    let ran = started.elapsed().as_secs_f64();
    eprintln!(
        "xtask: VM ran {ran:.1} s (console log: {})",
        saved.display()
    );
    let rc = rc.with_context(|| {
        let timeout = TIMEOUT.as_secs();
        format!("the VM never printed {MARKER}<rc> (kernel panic, hang or {timeout} s timeout); console:\n{log}")
    })?;
    Ok((rc, log))
}
