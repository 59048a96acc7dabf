//! A process of the container outside the guarded cgroup subtree
//! (crabpot-ebpf/src/escape.rs): it moved itself (or was moved) to a cgroup the kernel filter
//! does not watch. Always CRITICAL and a violation; the kernel killed the process when it
//! could, otherwise the agent does.
use crabpot_common::{EscapeEvent, escape_how};

use crate::{
    model::{
        alert::{Alert, AlertSource, Severity},
        event::{EventBody, Verdict},
    },
    policy::violations::Judgement,
    sources::bpf::record::text,
};

pub(super) fn decode(e: &EscapeEvent) -> EventBody {
    EventBody::Escape {
        how: match e.how {
            escape_how::ATTACH => "attach",
            escape_how::SOCKET => "socket",
            _ => "syscall",
        },
        moved_pid: e.moved_pid,
        guard_id: e.guard_id,
        dst_id: e.dst_id,
        dst_level: e.dst_level,
        dst_path: text(&e.dst_path, e.path_len),
        verdict: Verdict::from_raw(e.verdict),
    }
}

pub(super) fn describe(how: &str, moved_pid: u32, dst_path: &str, verdict: Verdict) -> String {
    format!(
        "cgroup escape ({how}) of pid {moved_pid} to `{dst_path}` {}",
        verdict.as_str()
    )
}

/// The alert's `rule` detail.
pub(crate) const RULE: &str = "cgroup_escape";

pub(super) fn judge(body: &EventBody) -> Judgement {
    let EventBody::Escape {
        how,
        moved_pid,
        guard_id,
        dst_id,
        dst_level,
        dst_path,
        verdict,
    } = body
    else {
        return Judgement::default();
    };
    let whither = if dst_path.is_empty() {
        "another cgroup".to_string()
    } else {
        format!("cgroup `{dst_path}`")
    };
    let what = match *how {
        "attach" => format!("moved to {whither}"),
        "socket" => "asked for a socket from outside it (refused)".to_string(),
        _ => "made a watched call from outside it".to_string(),
    };
    let outcome = match verdict {
        Verdict::Killed => "killed",
        Verdict::Blocked => "refused",
        _ => "killed by the agent",
    };
    let message = format!("Process {moved_pid} left the container's cgroup: {what}; {outcome}");
    let alert = Alert::new(Severity::Critical, AlertSource::Syscalls, message)
        .decision(RULE, outcome_verdict(*verdict))
        .with("how", *how)
        .with("moved_pid", *moved_pid)
        .with("guard_cgroup_id", *guard_id)
        .with("dst_cgroup_id", *dst_id)
        .with("dst_level", *dst_level)
        .with("dst_path", dst_path.as_str());
    Judgement {
        alert: Some(alert),
        violation: true,
        // Only the move itself by another process leaves the moved one alive.
        kill_pid: (*how == "attach" && *verdict == Verdict::None).then_some(*moved_pid),
        ..Judgement::default()
    }
}

fn outcome_verdict(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Blocked => "blocked",
        _ => "killed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escape(how: &'static str, verdict: Verdict) -> EventBody {
        EventBody::Escape {
            how,
            moved_pid: 42,
            guard_id: 7,
            dst_id: 1,
            dst_level: 0,
            dst_path: "/".into(),
            verdict,
        }
    }

    #[test]
    fn a_move_out_is_critical_and_killed() {
        let j = judge(&escape("attach", Verdict::Killed));
        let alert = j.alert.expect("alert");
        assert_eq!(alert.severity, Severity::Critical);
        assert!(
            alert.message.contains("moved to cgroup `/`"),
            "{}",
            alert.message
        );
        assert_eq!(alert.details["rule"], RULE);
        assert!(j.violation);
        assert_eq!(j.kill_pid, None, "the kernel killed it already");
        // Moved by someone else: the agent kills the moved process.
        let j = judge(&escape("attach", Verdict::None));
        assert_eq!(j.kill_pid, Some(42));
        let j = judge(&escape("socket", Verdict::Blocked));
        assert_eq!(j.alert.expect("alert").details["verdict"], "blocked");
    }
}
