//! `cargo xtask <command>`: the project's own set-up, run and test entry points.
mod bench;
mod cmd;
mod dist;
mod fuzz;
mod images;
mod openclaw_image;
mod run;
mod setup;
mod test;
mod toolchain;
mod vm;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "CrabPot developer tasks (run as root)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what running the agent needs when missing (Docker, the pinned BPF nightly with
    /// rust-src, bpf-linker on the same LLVM), start dockerd, build the demo image.
    /// `--test` adds what only the test command needs (Chromium, Prometheus, cargo-fuzz,
    /// playwright-core).
    Setup {
        #[arg(long)]
        test: bool,
    },
    /// Only build the demo/test image (with its static helpers), under `--tag`; the
    /// standard tag by default. `--openclaw`: the real OpenClaw gateway image instead
    /// (`crabpot/openclaw-real`, npm install cached in target/images/openclaw). Needs a
    /// running dockerd.
    Image {
        #[arg(long)]
        tag: Option<String>,
        #[arg(long)]
        openclaw: bool,
    },
    /// Set up, build the agent, create the demo `crabpot` container if there is none and run
    /// `crabpot-agent --openclaw` (extra arguments after `--` go to the agent).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        agent_args: Vec<String>,
    },
    /// Set up, then run every test: formatting, clippy, unit tests, and the integration tests
    /// against a real dockerd and the real kernel.
    Test {
        /// Only run integration tests whose name contains this filter.
        filter: Option<String>,
    },
    /// Build a Debian package (target/dist/crabpot_<version>_amd64.deb): both binaries with
    /// the kernel object embedded, the systemd unit and /etc/crabpot/monitor.yml as a conffile.
    Dist,
    /// Measure detection latency, syscall overhead, event throughput and footprint beside
    /// their baselines (poll-only mode, no agent, bpftrace, auditd); table in target/bench/.
    Bench(bench::BenchArgs),
    /// Build the libFuzzer targets in fuzz/ (the pinned nightly, cargo-fuzz) and run each for a while
    /// from a scratch copy of its seed corpus.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Run the BPF LSM test (crabpot-agent/tests/lsm_vm.rs) inside a throwaway QEMU VM with a
    /// stock Debian kernel; installs QEMU and downloads the kernel (cached in target/vm/).
    VmTest {
        /// Kernel: "6.1" (bookworm), "6.12" (bookworm-security/backports) or a linux-image
        /// package name.
        #[arg(long, default_value = "6.1")]
        kernel: String,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Setup { test: false } => setup::setup().map(|_| ()),
        Command::Setup { test: true } => setup::setup_for_tests().map(|_| ()),
        Command::Image {
            tag,
            openclaw: false,
        } => images::build_demo_image_as(tag.as_deref().unwrap_or(images::DEMO_IMAGE)).map(|_| ()),
        Command::Image {
            tag,
            openclaw: true,
        } => openclaw_image::build_openclaw_image_as(
            tag.as_deref().unwrap_or(openclaw_image::OPENCLAW_IMAGE),
        )
        .map(|_| ()),
        Command::Run { agent_args } => run::run(&agent_args),
        Command::Test { filter } => test::test(filter.as_deref()),
        Command::Fuzz { seconds } => fuzz::fuzz(seconds, None),
        Command::VmTest { kernel } => vm::vm_test(&kernel),
        Command::Bench(args) => bench::bench(&args),
        Command::Dist => dist::dist().map(|_| ()),
    }
}
