//! In-kernel enforcement: writes the policy into the kernel's maps and keeps the cgroup
//! hooks attached to the guarded container's cgroup2 directory across restarts.
use std::{fs::File, path::PathBuf, sync::Arc};

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr,
        links::{FdLink, PinnedLink},
    },
};
use crabpot_common::{DENY_NAME_LEN, control, exec_action};
use tokio::sync::watch;

use crate::model::container::{Feeds, Guarded, GuardedContainer};
use crate::{
    actions::{
        kernel_allow::{KernelAllow, SharedAllow},
        pins, resolvers,
    },
    model::event::RuleName,
    policy::rules::{Action, Policy},
    sources::bpf::loader::PolicyMaps,
};

const SOCK_ADDR_PROGRAMS: [&str; 4] = ["connect4", "connect6", "sendmsg4", "sendmsg6"];
const SOCK_PROGRAMS: [&str; 1] = ["sock_create"];
/// Copies the DNS replies the container receives (observes only; never drops).
const SKB_INGRESS_PROGRAMS: [&str; 1] = ["dns_ingress"];
/// Checks every packet leaving the container against the allowlist.
const SKB_EGRESS_PROGRAMS: [&str; 1] = ["packet_egress"];
/// On the cgroup2 root: no new socket for a process that left the container's cgroup.
const ROOT_SOCK_PROGRAMS: [&str; 1] = ["escape_sock_create"];

#[derive(Debug, thiserror::Error)]
pub(crate) enum EnforceError {
    #[error("the eBPF object has no cgroup program `{0}` (build mismatch: rebuild the agent)")]
    MissingProgram(&'static str),
    #[error("cgroup program `{program}`: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("policy map: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("cgroup program `{program}`: cannot own its link: {message}")]
    Link {
        program: &'static str,
        message: String,
    },
    #[error("cannot open the container's cgroup {path}: {source}")]
    Cgroup {
        path: String,
        source: std::io::Error,
    },
}

/// The cgroup2 root: `cgroup`'s directory without its path from the root.
fn cgroup2_root(cgroup: &crate::model::container::ProcessCgroup) -> PathBuf {
    let mut root = cgroup.directory.clone();
    for _ in 0..crate::sources::guard::level(&cgroup.relative) {
        root.pop();
    }
    root
}

/// Which layer enforces a rule, for the start-up line and status.
pub(crate) fn layer(rule: RuleName, action: Action, lsm: bool) -> &'static str {
    match (rule, action) {
        (_, Action::Off) => "off",
        (RuleName::Connect, _) => "cgroup",
        (RuleName::Socket, Action::Block) => "cgroup+tracepoint-kill",
        (RuleName::Socket, _) => "cgroup+tracepoint",
        (RuleName::Mount | RuleName::Ptrace | RuleName::Exec, Action::Block) if lsm => "lsm",
        (RuleName::Mount | RuleName::Ptrace, Action::Block) => "tracepoint-kill",
        // Denylisted programs are killed at sched_process_exec, before they run.
        (RuleName::Exec, Action::Block) => "tracepoint-kill",
        _ => "observe",
    }
}

/// Why `policy` asks for something no loaded layer can do, naming the rule and the layer
/// it would need; `None` when every rule is enforceable.
pub(crate) fn unenforceable(policy: &Policy, lsm_rules: &[RuleName]) -> Option<String> {
    policy.rules().find_map(|(rule, action)| {
        let lsm = lsm_rules.contains(&rule);
        (action == Action::Block && layer(rule, action, lsm) == "observe").then(|| {
            format!(
                "rule {}=block cannot be enforced on this host: blocking it needs BPF LSM \
                 (the kernel refuses LSM programs here), and no tracepoint can stop the \
                 call; use {}=audit or {}=log",
                rule.as_str(),
                rule.as_str(),
                rule.as_str()
            )
        })
    })
}

/// What the exec tracepoint does to a denylisted program under `action`: killed when the
/// rule blocks, stopped for the agent's judgement when a CRITICAL would freeze the container
/// anyway (auto-pause on), else nothing ("audit" lets it through by definition).
pub(crate) fn exec_stop(action: Action, auto_pause: bool) -> u32 {
    match action {
        Action::Block => exec_action::KILLED,
        Action::Audit => exec_action::NONE,
        _ if auto_pause => exec_action::STOPPED,
        _ => exec_action::NONE,
    }
}

/// The kernel's fixed key for a denylisted name: its first 15 bytes and a NUL.
pub(crate) fn deny_key(name: &str) -> [u8; DENY_NAME_LEN] {
    let mut key = [0u8; DENY_NAME_LEN];
    for (slot, byte) in key.iter_mut().zip(name.bytes().take(DENY_NAME_LEN - 1)) {
        *slot = byte;
    }
    key
}

/// Switches that come from the command line rather than the policy.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KernelSwitches {
    /// Auto-pause is on: a denylisted exec is stopped in the kernel until judged.
    pub auto_pause: bool,
    /// `--events`: every open and connect reaches the ring buffer, not only those the
    /// policy needs.
    pub all_records: bool,
}

/// A cgroup hook's link: pinned in bpffs (outlives the agent), or held by this process
/// only when pinning is impossible.
enum Held {
    Pinned(PinnedLink),
    /// Kept only to hold the link: dropping it detaches the hook.
    Unpinned(#[allow(dead_code)] FdLink),
}

pub(crate) struct Enforcer {
    ebpf: Ebpf,
    rule_modes: Array<MapData, u32>,
    lsm_enforced: Array<MapData, u32>,
    deny_names: HashMap<MapData, [u8; DENY_NAME_LEN], u32>,
    control: Array<MapData, u32>,
    switches: KernelSwitches,
    /// The connect allowlist, shared with the DNS learner of the kernel-event loop.
    allow: SharedAllow,
    /// Each guarded container's hooks, by name: the cgroup they are on and the links.
    attached: std::collections::HashMap<String, (u64, Vec<Held>)>,
    /// The escape guard on the cgroup2 root: once, for every container.
    root: Vec<Held>,
    lsm_rules: Vec<RuleName>,
    /// False once pinning failed: hooks then end with the agent (said loudly).
    pinning: bool,
}

fn link_error(program: &'static str) -> impl Fn(aya::programs::links::LinkError) -> EnforceError {
    move |error| EnforceError::Link {
        program,
        message: error.to_string(),
    }
}

fn program_error(program: &'static str) -> impl Fn(aya::programs::ProgramError) -> EnforceError {
    move |source| EnforceError::Program {
        program,
        source: Box::new(source),
    }
}

/// The program `name` of the object, as its type `T`.
fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, EnforceError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(EnforceError::MissingProgram(name))?
        .try_into()
        .map_err(program_error(name))
}

impl Enforcer {
    /// Load the cgroup programs (attached later, per container).
    pub(crate) fn new(
        mut ebpf: Ebpf,
        maps: PolicyMaps,
        switches: KernelSwitches,
    ) -> Result<Self, EnforceError> {
        for name in SOCK_ADDR_PROGRAMS {
            let loaded = program::<CgroupSockAddr>(&mut ebpf, name)?.load();
            loaded.map_err(program_error(name))?;
        }
        for name in SOCK_PROGRAMS.into_iter().chain(ROOT_SOCK_PROGRAMS) {
            let loaded = program::<CgroupSock>(&mut ebpf, name)?.load();
            loaded.map_err(program_error(name))?;
        }
        for name in SKB_INGRESS_PROGRAMS.into_iter().chain(SKB_EGRESS_PROGRAMS) {
            let loaded = program::<CgroupSkb>(&mut ebpf, name)?.load();
            loaded.map_err(program_error(name))?;
        }
        let PolicyMaps {
            rule_modes,
            lsm_enforced,
            allow_v4,
            allow_v6,
            deny_names,
            control,
        } = maps;
        Ok(Enforcer {
            ebpf,
            rule_modes,
            lsm_enforced,
            deny_names,
            control,
            switches,
            allow: KernelAllow::new(allow_v4, allow_v6).shared(),
            attached: std::collections::HashMap::new(),
            root: Vec::new(),
            lsm_rules: Vec::new(),
            pinning: true,
        })
    }

    pub(crate) fn lsm_rules(&self) -> &[RuleName] {
        &self.lsm_rules
    }

    /// Record that BPF LSM programs enforce `rules`: the tracepoints stop killing for them.
    pub(crate) fn set_lsm_rules(&mut self, rules: &[RuleName]) -> Result<(), EnforceError> {
        for rule in rules {
            self.lsm_enforced.set(rule.id(), 1, 0)?;
        }
        self.lsm_rules = rules.to_vec();
        Ok(())
    }

    /// The connect allowlist, for the DNS learner.
    pub(crate) fn allow(&self) -> SharedAllow {
        self.allow.clone()
    }

    /// The names the exec tracepoint stops (or kills) a new program for.
    pub(crate) fn set_denylist(&mut self, names: &[String]) -> Result<(), EnforceError> {
        for name in names {
            self.deny_names.insert(deny_key(name), 1, 0)?;
        }
        Ok(())
    }

    /// Write rule modes, the kernel switches and the connect allowlist into the kernel.
    pub(crate) fn apply(&mut self, policy: &Policy) -> Result<(), EnforceError> {
        for (rule, action) in policy.rules() {
            self.rule_modes.set(rule.id(), action.kernel_mode(), 0)?;
        }
        let stop = exec_stop(policy.action(RuleName::Exec), self.switches.auto_pause);
        self.control.set(control::EXEC_STOP, stop, 0)?;
        let filter = u32::from(!self.switches.all_records);
        self.control.set(control::OPEN_FILTER, filter, 0)?;
        self.control.set(control::CONNECT_FILTER, filter, 0)?;
        let devices = u32::from(policy.watch_devices);
        self.control.set(control::WATCH_DEVICES, devices, 0)?;
        self.lock_allow()
            .set_configured(&policy.allow, &policy.allow_hosts)?;
        Ok(())
    }

    fn lock_allow(&self) -> std::sync::MutexGuard<'_, KernelAllow> {
        // A panic while holding the lock cannot leave the table half-written in a way that
        // matters more than stopping enforcement would: keep using it.
        self.allow
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Allow the container's resolvers on port 53 (read from its /etc/resolv.conf).
    fn allow_resolvers(&mut self, container: &GuardedContainer) {
        let found = resolvers::of_container(container.pid);
        let entries = resolvers::allow_entries(&found);
        let listed: Vec<String> = entries.iter().map(ToString::to_string).collect();
        match self.lock_allow().set_resolvers(found, entries) {
            Ok(()) if listed.is_empty() => tracing::info!(
                "DNS: no resolver outside loopback in the container's /etc/resolv.conf \
                 (loopback, e.g. Docker's 127.0.0.11, is always allowed)"
            ),
            Ok(()) => tracing::info!(
                "DNS: the container's resolvers are allowed on port 53: {}",
                listed.join(", ")
            ),
            Err(error) => tracing::error!("cannot allow the container's resolvers: {error}"),
        }
    }

    /// Attach the cgroup hooks to `container`'s cgroup and pin them; then let go of the
    /// previous ones (ours on an old cgroup, or a previous agent's pins).
    pub(crate) fn follow(&mut self, container: &GuardedContainer) -> Result<(), EnforceError> {
        if self.attached.get(&container.name).map(|(id, _)| *id) == Some(container.cgroup.id) {
            return Ok(());
        }
        let dir =
            File::open(&container.cgroup.directory).map_err(|source| EnforceError::Cgroup {
                path: container.cgroup.directory.display().to_string(),
                source,
            })?;
        let root_path = cgroup2_root(&container.cgroup);
        let root = File::open(&root_path).map_err(|source| EnforceError::Cgroup {
            path: root_path.display().to_string(),
            source,
        })?;
        // Cgroup links run side by side with any already attached (the previous agent's):
        // the new hooks are in force before the old ones go.
        let mut fresh = self.attach_all(&dir)?;
        if self.root.is_empty() {
            fresh.extend(self.attach_root(&root)?);
        }
        let pin_dir = self.pin_dir(&container.name);
        let mut held = Vec::new();
        let mut kept: Vec<PathBuf> = Vec::new();
        for (name, link) in fresh {
            // The escape guard lives with the agent: its process table is kept by tracepoints
            // that end with the agent, and stale entries must not outlive them.
            if ROOT_SOCK_PROGRAMS.contains(&name) {
                self.root.push(Held::Unpinned(link));
                continue;
            }
            let path = pin_dir
                .as_ref()
                .and_then(|dir| pins::pin_path(dir, container.cgroup.id, name).ok());
            match path {
                Some(path) => match link.pin(&path) {
                    Ok(pinned) => {
                        kept.push(path);
                        held.push(Held::Pinned(pinned));
                    }
                    Err(error) => {
                        // The link went with the failed pin: attach again, unpinned.
                        tracing::error!(
                            "cannot pin `{name}` at {} ({error}): enforcement will end with \
                             the agent",
                            path.display()
                        );
                        self.pinning = false;
                        // Kept until the unpinned ones replace them.
                        let entry = self.attached.entry(container.name.clone()).or_default();
                        entry.0 = 0;
                        entry.1.extend(held);
                        return self.follow(container);
                    }
                },
                None => held.push(Held::Unpinned(link)),
            }
        }
        self.unpin(&container.name);
        self.attached
            .insert(container.name.clone(), (container.cgroup.id, held));
        if let Some(dir) = &pin_dir {
            match pins::remove_pins(dir, &kept) {
                Ok(0) => {}
                Ok(n) => tracing::info!("replaced {n} hooks pinned by a previous agent"),
                Err(error) => tracing::warn!("cannot remove old pins: {error}"),
            }
        }
        self.allow_resolvers(container);
        tracing::info!(
            "enforcing on cgroup {} (connect, sendmsg, socket, egress, DNS-reply hooks attached, \
             and the escape guard on the cgroup2 root{})",
            container.cgroup.directory.display(),
            match &pin_dir {
                Some(dir) => format!("; pinned in {}, they outlive the agent", dir.display()),
                None => "; not pinned: they end with the agent".into(),
            }
        );
        Ok(())
    }

    /// Attach every cgroup program to the cgroup `dir`, each as a link this process owns.
    fn attach_all(&mut self, dir: &File) -> Result<Vec<(&'static str, FdLink)>, EnforceError> {
        let mut fresh = Vec::new();
        for name in SOCK_ADDR_PROGRAMS {
            let program = program::<CgroupSockAddr>(&mut self.ebpf, name)?;
            let id = program
                .attach(dir, CgroupAttachMode::Single)
                .map_err(program_error(name))?;
            let link = program.take_link(id).map_err(program_error(name))?;
            fresh.push((name, FdLink::try_from(link).map_err(link_error(name))?));
        }
        for name in SOCK_PROGRAMS {
            let program = program::<CgroupSock>(&mut self.ebpf, name)?;
            let id = program
                .attach(dir, CgroupAttachMode::Single)
                .map_err(program_error(name))?;
            let link = program.take_link(id).map_err(program_error(name))?;
            fresh.push((name, FdLink::try_from(link).map_err(link_error(name))?));
        }
        let skb = SKB_INGRESS_PROGRAMS
            .map(|name| (name, CgroupSkbAttachType::Ingress))
            .into_iter()
            .chain(SKB_EGRESS_PROGRAMS.map(|name| (name, CgroupSkbAttachType::Egress)));
        for (name, direction) in skb {
            let program = program::<CgroupSkb>(&mut self.ebpf, name)?;
            let id = program
                .attach(dir, direction, CgroupAttachMode::Single)
                .map_err(program_error(name))?;
            let link = program.take_link(id).map_err(program_error(name))?;
            fresh.push((name, FdLink::try_from(link).map_err(link_error(name))?));
        }
        Ok(fresh)
    }

    /// Attach the escape guard to the cgroup2 root (`root`), inherited by every cgroup.
    fn attach_root(&mut self, root: &File) -> Result<Vec<(&'static str, FdLink)>, EnforceError> {
        let mut fresh = Vec::new();
        for name in ROOT_SOCK_PROGRAMS {
            let program = program::<CgroupSock>(&mut self.ebpf, name)?;
            // A cgroup bpf_link always runs beside others (the kernel refuses flags on it).
            let id = program
                .attach(root, CgroupAttachMode::Single)
                .map_err(program_error(name))?;
            let link = program.take_link(id).map_err(program_error(name))?;
            fresh.push((name, FdLink::try_from(link).map_err(link_error(name))?));
        }
        Ok(fresh)
    }

    /// Where this container's hooks are pinned, or `None` when pinning is off or impossible.
    fn pin_dir(&mut self, container: &str) -> Option<PathBuf> {
        if !self.pinning {
            return None;
        }
        match pins::ensure_bpffs().and_then(|()| pins::container_dir(container)) {
            Ok(dir) => Some(dir),
            Err(error) => {
                tracing::error!("{error}: enforcement will end with the agent");
                self.pinning = false;
                None
            }
        }
    }

    /// Let go of container `name`'s hooks (the pins removed: they detach).
    fn unpin(&mut self, name: &str) {
        let Some((_, links)) = self.attached.remove(name) else {
            return;
        };
        for held in links {
            // Dropping the last reference to a link detaches it.
            if let Held::Pinned(pinned) = held
                && let Err(error) = pinned.unpin()
            {
                // The old cgroup is usually gone with its container: nothing to detach.
                tracing::debug!("unpinning a cgroup hook: {error}");
            }
        }
    }

    /// Container `name` is no longer guarded: its hooks detached, its pin directory gone.
    fn detach(&mut self, name: &str) {
        self.unpin(name);
        if self.pinning
            && let Ok(dir) = pins::container_dir(name)
            && let Err(error) = pins::remove_pins(&dir, &[])
        {
            tracing::warn!("cannot remove the pins of `{name}`: {error}");
        }
        tracing::info!("hooks of container `{name}` detached");
    }

    /// Hooks on every guarded container that runs; none left on one no longer guarded.
    fn follow_all(&mut self, guarded: &Guarded) {
        let gone: Vec<String> = self
            .attached
            .keys()
            .filter(|name| !guarded.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            self.detach(&name);
        }
        for unit in guarded.values() {
            let current = unit.container.borrow().clone();
            if let Some(current) = current
                && let Err(error) = self.follow(&current)
            {
                tracing::error!("cannot enforce on container `{}`: {error}", current.name);
            }
        }
    }

    /// Keep the hooks on the current container, and the kernel's policy current, until the
    /// agent stops. A new policy replaces the old one in place: no program is reloaded, no
    /// event lost.
    pub(crate) async fn run(
        mut self,
        mut guarded: watch::Receiver<Guarded>,
        mut policy: watch::Receiver<Arc<Policy>>,
    ) {
        let mut feeds = Feeds::default();
        loop {
            let set = guarded.borrow_and_update().clone();
            feeds.sync(&set);
            self.follow_all(&set);
            tokio::select! {
                changed = guarded.changed() => if changed.is_err() { return },
                _ = feeds.changed() => {}
                changed = policy.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let next = policy.borrow_and_update().clone();
                    match self.apply(&next) {
                        Ok(()) => tracing::info!("new policy applied in the kernel"),
                        Err(error) => tracing::error!("cannot apply the new policy: {error}"),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_stops_follow_the_rule_and_auto_pause() {
        assert_eq!(exec_stop(Action::Block, false), exec_action::KILLED);
        assert_eq!(exec_stop(Action::Log, true), exec_action::STOPPED);
        assert_eq!(exec_stop(Action::Log, false), exec_action::NONE);
        assert_eq!(exec_stop(Action::Audit, true), exec_action::NONE);
    }

    #[test]
    fn a_block_no_layer_can_do_is_refused_by_name() {
        let mut policy = Policy::default();
        assert_eq!(unenforceable(&policy, &[]), None);
        policy.set(RuleName::Exec, Action::Block);
        assert_eq!(unenforceable(&policy, &[]), None, "exec=block kills");
        policy.set(RuleName::ProcOpen, Action::Block);
        let why = unenforceable(&policy, &[]).expect("refused");
        assert!(
            why.contains("proc_open=block") && why.contains("BPF LSM"),
            "{why}"
        );
    }

    #[test]
    fn deny_keys_are_cut_like_comm() {
        assert_eq!(&deny_key("sh")[..3], b"sh\0");
        let long = deny_key("a-very-long-program-name");
        assert_eq!(long[15], 0);
        assert_eq!(&long[..15], b"a-very-long-pro");
    }
}
