//! The kernel side of the agent: programs loaded and attached, the policy applied, BPF LSM
//! used where the kernel allows it. Absent in poll-only mode.
use aya::maps::{MapData, PerCpuArray, RingBuf};

use crate::{
    actions::enforcer::{self, Enforcer, KernelSwitches},
    cli::AgentArgs,
    model::event::RuleName,
    policy::rules::Policy,
    sources::bpf::{self, BpfOptions, lsm::LsmOutcome},
};

pub(crate) struct KernelSide {
    pub events: RingBuf<MapData>,
    pub dropped: PerCpuArray<MapData, u64>,
    pub guard: crate::sources::guard::GuardMaps,
    pub filtered: PerCpuArray<MapData, u64>,
    pub enforcer: Enforcer,
}

pub(crate) fn start(
    args: &AgentArgs,
    policy: &Policy,
    config: &crate::config::MonitorConfig,
) -> anyhow::Result<KernelSide> {
    let bpf::KernelPipeline {
        mut ebpf,
        events,
        guard,
        dropped,
        filtered,
        policy: policy_maps,
        offsets_valid,
    } = bpf::load(&BpfOptions {
        ring_buffer_bytes: args.ring_buffer_bytes,
    })?;
    let lsm = bpf::lsm::attach_lsm(&mut ebpf);
    let switches = KernelSwitches {
        auto_pause: config.auto_pause,
        all_records: args.events.is_some(),
    };
    let mut enforcer = Enforcer::new(ebpf, policy_maps, switches)?;
    enforcer.set_denylist(&config.process_denylist)?;
    if offsets_valid {
        tracing::info!(
            "kernel struct offsets read from BTF: execs carry the executed file's identity, \
             relative opens their base directory"
        );
    }
    match &lsm {
        LsmOutcome::Attached(programs) => {
            tracing::info!(
                "BPF LSM attached ({}): mount and ptrace are refused in the kernel",
                programs.join(", ")
            );
            enforcer.set_lsm_rules(&[RuleName::Mount, RuleName::Ptrace, RuleName::Exec])?;
        }
        LsmOutcome::Unavailable { reason } => tracing::info!(
            "BPF LSM unavailable: {reason}. Blocking mount and ptrace falls back to killing the \
             caller and freezing the container"
        ),
    }
    enforcer.apply(policy)?;
    Ok(KernelSide {
        events,
        dropped,
        guard,
        filtered,
        enforcer,
    })
}

/// Which layer enforces each rule; `poll-only` for all without the kernel side.
pub(crate) fn layers(policy: &Policy, kernel: Option<&KernelSide>) -> Vec<(String, String)> {
    policy
        .rules()
        .map(|(rule, action)| {
            let layer = match kernel {
                Some(k) => enforcer::layer(rule, action, k.enforcer.lsm_rules().contains(&rule)),
                None => "poll-only",
            };
            (rule.as_str().to_string(), layer.to_string())
        })
        .collect()
}
