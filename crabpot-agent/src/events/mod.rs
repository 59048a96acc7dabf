//! One file per kernel event kind, mirroring crabpot-ebpf/src: each decodes its record,
//! judges it by the policy's rule for it, and describes it for `--events`. A new kind is a
//! file here (and its probe file in the kernel crate); the three dispatches below name it.
//!
//! This stage comes after the policy (it applies the rules) and before the actions (which
//! carry out what the judgement says).
mod connect;
mod dns_reply;
mod escape;
mod exec;
mod link;
mod mount;
mod net_policy;
mod open;
mod packet;
mod ptrace;
mod refused;

use crabpot_common::{EventHeader, EventKind};

use crate::{
    model::event::{Ancestor, EventBody, KernelEvent},
    policy::{
        kernel_rules::KernelRules,
        rules::Policy,
        violations::{EntryVerdicts, Judgement, with_process},
    },
    sources::bpf::record::{DecodeError, checked, header, read_record},
};

/// Decode one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<KernelEvent, DecodeError> {
    let raw: EventHeader = read_record(bytes, "event header")?;
    let kind = EventKind::from_u32(raw.kind).ok_or(DecodeError::UnknownKind(raw.kind))?;
    let body = match kind {
        EventKind::Exec => exec::decode(&checked(bytes, &raw, kind)?),
        EventKind::Open => open::decode(&checked(bytes, &raw, kind)?),
        EventKind::Connect => connect::decode(&checked(bytes, &raw, kind)?),
        EventKind::Ptrace => ptrace::decode(&checked(bytes, &raw, kind)?),
        EventKind::Mount => mount::decode(&checked(bytes, &raw, kind)?),
        EventKind::NetPolicy => net_policy::decode(&checked(bytes, &raw, kind)?)?,
        EventKind::Refused => refused::decode(&checked(bytes, &raw, kind)?)?,
        EventKind::DnsReply => dns_reply::decode(&checked(bytes, &raw, kind)?),
        EventKind::Escape => escape::decode(&checked(bytes, &raw, kind)?),
        EventKind::Packet => packet::decode(&checked(bytes, &raw, kind)?),
        EventKind::Link => link::decode(&checked(bytes, &raw, kind)?),
    };
    Ok(KernelEvent {
        header: header(&raw),
        body,
    })
}

/// The event in one line of text (`--events text`).
pub(crate) fn describe(body: &EventBody) -> String {
    match body {
        EventBody::Exec {
            syscall,
            filename,
            argv,
            ret,
            kernel_action,
            ..
        } => exec::describe(syscall, filename, argv, *ret, *kernel_action),
        EventBody::Open { path, flags, .. } => open::describe(path, *flags),
        EventBody::Connect {
            family,
            address,
            port,
            ..
        } => connect::describe(*family, *address, *port),
        EventBody::Ptrace {
            request,
            target_pid,
            verdict,
            ..
        } => ptrace::describe(*request, *target_pid, *verdict),
        EventBody::Mount { .. } => {
            mount_call(body).map_or_else(String::new, |m| mount::describe(&m))
        }
        EventBody::NetPolicy { .. } => {
            net_policy(body).map_or_else(String::new, |n| net_policy::describe(&n))
        }
        EventBody::Refused { rule, ret } => refused::describe(*rule, *ret),
        EventBody::DnsReply {
            resolver, payload, ..
        } => dns_reply::describe(*resolver, payload),
        EventBody::Escape {
            how,
            moved_pid,
            dst_path,
            verdict,
            ..
        } => escape::describe(how, *moved_pid, dst_path, *verdict),
        EventBody::Packet {
            verdict,
            protocol,
            address,
            port,
            ..
        } => packet::describe(*protocol, *address, *port, *verdict),
        EventBody::Link { link, target, .. } => link::describe(link, target),
    }
}

fn mount_call(body: &EventBody) -> Option<mount::MountCall<'_>> {
    let EventBody::Mount {
        source,
        target,
        fstype,
        flags,
        attr_flags,
        from_fd,
        to_fd,
        verdict,
    } = body
    else {
        return None;
    };
    Some(mount::MountCall {
        source,
        target,
        fstype,
        flags: *flags,
        attr_flags: *attr_flags,
        from_fd: *from_fd,
        to_fd: *to_fd,
        verdict: *verdict,
    })
}

fn net_policy(body: &EventBody) -> Option<net_policy::NetPolicy<'_>> {
    let EventBody::NetPolicy {
        rule,
        verdict,
        op,
        family,
        sock_type,
        address,
        port,
        ..
    } = body
    else {
        return None;
    };
    Some(net_policy::NetPolicy {
        rule: *rule,
        verdict: *verdict,
        op,
        family: *family,
        sock_type: *sock_type,
        address: *address,
        port: *port,
    })
}

/// Judges kernel events: the watchdog's rules (what an exec runs, where a connect goes)
/// and the entry verdicts that pair a refusal at exit with what its entry hook decided.
pub(crate) struct Judges {
    pub(crate) rules: KernelRules,
    entries: EntryVerdicts,
}

impl Judges {
    pub(crate) fn new(rules: KernelRules) -> Self {
        Self {
            rules,
            entries: EntryVerdicts::default(),
        }
    }

    /// Everything an event deserves, one function per kind.
    pub(crate) fn judge(
        &mut self,
        event: &KernelEvent,
        lineage: &[Ancestor],
        policy: &Policy,
    ) -> Judgement {
        let tid = event.header.pid;
        let caller = (event.header.tgid, self.rules.container_pid());
        let mut judgement = match &event.body {
            EventBody::Exec { .. } => exec::judge(&mut self.rules, event, lineage, policy),
            EventBody::Open {
                path,
                flags,
                dirfd,
                base,
                ..
            } => open::judge(caller, path, (*flags, *dirfd), base.as_deref(), policy),
            EventBody::Connect { .. } => connect::judge(&mut self.rules, event, lineage, policy),
            EventBody::Ptrace {
                request,
                target_pid,
                verdict,
                ..
            } => ptrace::judge(&mut self.entries, tid, *request, *target_pid, *verdict),
            EventBody::Mount { .. } => mount_call(&event.body)
                .map_or_else(Judgement::default, |m| {
                    mount::judge(&mut self.entries, tid, &m)
                }),
            EventBody::NetPolicy { .. } => {
                net_policy(&event.body).map_or_else(Judgement::default, |n| net_policy::judge(&n))
            }
            EventBody::Refused { rule, ret } => refused::judge(&mut self.entries, tid, *rule, *ret),
            EventBody::Escape { .. } => escape::judge(&event.body),
            EventBody::Packet { .. } => packet::judge(&event.body),
            EventBody::Link {
                dirfd,
                target,
                link,
            } => link::judge(caller, (link, *dirfd), target, policy),
            EventBody::DnsReply { .. } => Judgement::default(),
        };
        self.entries.bound();
        judgement.alert = judgement.alert.map(|a| with_process(a, event, lineage));
        judgement.audit = judgement.audit.map(|a| with_process(a, event, lineage));
        judgement
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod decode_tests;

#[cfg(test)]
#[path = "judge_tests.rs"]
mod judge_tests;
