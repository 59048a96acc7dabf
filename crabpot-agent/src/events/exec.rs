//! `execve`/`execveat` (crabpot-ebpf/src/exec.rs): judged when the exec returns, so the
//! program it names is the one that runs.
use crabpot_common::{EXEC_VIA_EXECVEAT, ExecEvent, exe_flag, exec_action};
use serde_json::json;

use crate::{
    model::event::{Ancestor, EventBody, ExeFile, KernelAction, KernelEvent, RuleName, Verdict},
    policy::{
        kernel_rules::KernelRules,
        rules::Policy,
        violations::{Judgement, record, route, verdict_for_action},
    },
    sources::bpf::record::text,
};

pub(super) fn decode(e: &ExecEvent) -> EventBody {
    let argc = (e.argc as usize).min(e.argv.len());
    EventBody::Exec {
        syscall: if e.via == EXEC_VIA_EXECVEAT {
            "execveat"
        } else {
            "execve"
        },
        dirfd: e.dirfd,
        flags: e.flags,
        filename: text(&e.filename, e.filename_len),
        argv: (0..argc).map(|i| text(&e.argv[i], e.argv_len[i])).collect(),
        ret: e.ret,
        kernel_action: match e.kernel_action {
            exec_action::STOPPED => KernelAction::Stopped,
            exec_action::KILLED => KernelAction::Killed,
            _ => KernelAction::None,
        },
        action_ts_ns: e.action_ts_ns,
        exe: exe_file(e),
    }
}

fn exe_file(e: &ExecEvent) -> Option<ExeFile> {
    (e.exe_flags & exe_flag::KNOWN != 0).then(|| ExeFile {
        ino: e.exe_ino,
        dev: e.exe_dev,
        nlink: e.exe_nlink,
        name: text(&e.exe_name, e.exe_name.len() as u32),
        memfd: e.exe_flags & exe_flag::MEMFD != 0,
        unlinked: e.exe_flags & exe_flag::UNLINKED != 0,
    })
}

pub(super) fn describe(
    syscall: &str,
    filename: &str,
    argv: &[String],
    ret: i32,
    kernel_action: KernelAction,
) -> String {
    if ret < 0 {
        format!("{syscall} {filename} argv={argv:?} failed ({ret})")
    } else if kernel_action == KernelAction::None {
        format!("{syscall} {filename} argv={argv:?}")
    } else {
        format!(
            "{syscall} {filename} argv={argv:?} {}",
            kernel_action.as_text()
        )
    }
}

/// The watchdog's verdict on the program (denylisted, the health probe, the main process)
/// and the exec rule's record of it.
pub(super) fn judge(
    rules: &mut KernelRules,
    event: &KernelEvent,
    lineage: &[Ancestor],
    policy: &Policy,
) -> Judgement {
    let watchdog = rules.exec_alert(event, lineage);
    let EventBody::Exec {
        filename,
        argv,
        ret,
        kernel_action,
        ..
    } = &event.body
    else {
        return Judgement::default();
    };
    let mut judgement = if *ret < 0 {
        Judgement::default()
    } else if *kernel_action == KernelAction::Killed {
        // exec=block killed a denylisted program before it ran: a violation. The watchdog
        // raises its CRITICAL alert; this is its audit record.
        let mut judgement = route(
            Verdict::Killed,
            record(
                crate::model::alert::Severity::Info,
                RuleName::Exec,
                Verdict::Killed.as_str(),
                format!("exec of {filename} killed in kernel"),
            )
            .with("filename", filename.as_str())
            .with("argv", json!(argv)),
        );
        judgement.audit = judgement.alert.take();
        judgement
    } else {
        let verdict = verdict_for_action(policy.action(RuleName::Exec));
        let alert = record(
            crate::model::alert::Severity::Info,
            RuleName::Exec,
            verdict.as_str(),
            format!("exec of {filename}"),
        )
        .with("filename", filename.as_str())
        .with("argv", json!(argv));
        route(verdict, alert)
    };
    if let Some(uid) = watchdog
        .as_ref()
        .and_then(|w| w.details.get("operator_uid"))
        .cloned()
    {
        operators(&mut judgement, uid);
    }
    judgement.watchdog = watchdog;
    judgement
}

/// An announced break-glass shell is the operator's: audited with their uid, never a
/// violation.
fn operators(judgement: &mut Judgement, uid: serde_json::Value) {
    judgement.violation = false;
    if let Some(alert) = judgement.alert.take() {
        judgement.audit.get_or_insert(alert);
    }
    if let Some(audit) = judgement.audit.as_mut() {
        audit.details.insert("break_glass".into(), true.into());
        audit.details.insert("operator_uid".into(), uid);
    }
}
