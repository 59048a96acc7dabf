//! Channel 2: the process watchdog. The instant path is the kernel's exec events (see
//! `policy::kernel_rules`); this `docker top` poll is the backstop that also catches what
//! started before the agent.
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use bollard::query_parameters::TopOptionsBuilder;

use crate::model::container::GuardedContainer;
use crate::{
    channels::{PollingWatcher, WatchContext},
    model::alert::{Alert, AlertSource, Severity},
    model::event::{Ancestor, RuleName},
    policy::{
        alerted::AlertedPids,
        break_glass::BreakGlass,
        denylist::{Denylist, executable_name},
        exceptions::{Exceptions, Scope, Subject, subject_of_pid},
        exe_identity::ExeIdentity,
        origin::{self, Candidate, Origin, Probes},
    },
};

pub(crate) struct ProcessPoll {
    denylist: Arc<Denylist>,
    identity: Arc<ExeIdentity>,
    alerted: AlertedPids,
    every: Duration,
    probes: Probes,
    glass: BreakGlass,
    exceptions: Arc<Exceptions>,
}

impl ProcessPoll {
    pub(crate) fn new(
        denylist: Arc<Denylist>,
        identity: Arc<ExeIdentity>,
        alerted: AlertedPids,
        every: Duration,
    ) -> Self {
        ProcessPoll {
            denylist,
            identity,
            alerted,
            every,
            probes: Probes::default(),
            glass: BreakGlass::default(),
            exceptions: Arc::default(),
        }
    }

    /// Share the announced break-glass shells and the operator's exceptions.
    pub(crate) fn with_operator(mut self, glass: BreakGlass, exceptions: Arc<Exceptions>) -> Self {
        self.glass = glass;
        self.exceptions = exceptions;
        self
    }

    /// The exception (for the watchdog or the exec rule) that silences this row, if any.
    fn excepted(&self, row: &TopRow, rows: &HashMap<u32, &TopRow>) -> Option<String> {
        if self.exceptions.is_empty() {
            return None;
        }
        let ancestors = std::iter::successors(rows.get(&row.ppid), |r| rows.get(&r.ppid))
            .take(crate::sources::lineage::MAX_DEPTH)
            .map(|r| Ancestor {
                pid: r.pid,
                name: r.comm.clone(),
            })
            .collect();
        let proc_subject = subject_of_pid(row.pid);
        let subject = Subject {
            executable: proc_subject.executable,
            argv: proc_subject
                .argv
                .or_else(|| Some(row.args.split_whitespace().map(String::from).collect())),
            uid: proc_subject.uid,
            ancestors,
            ..Subject::default()
        };
        let scopes = [Scope::Process, Scope::Rule(RuleName::Exec)];
        let name = self.exceptions.matching(&scopes, &subject)?.to_string();
        tracing::debug!(
            exception = name,
            pid = row.pid,
            "exception matched: {}",
            row.args
        );
        Some(name)
    }

    /// Share the record of verified health probes (with the eBPF exec path).
    pub(crate) fn with_probes(mut self, probes: Probes) -> Self {
        self.probes = probes;
        self
    }

    /// The denylisted name a row runs as, if any.
    fn denied(&self, row: &TopRow) -> Option<(String, &'static str)> {
        let argv: Vec<String> = row.args.split_whitespace().map(String::from).collect();
        let exe_path = argv.first().cloned().unwrap_or_default();
        let by_args = executable_name(&exe_path, &argv);
        // What the process executes decides, not the name it shows: a prctl'd comm only
        // counts when the executable cannot be read.
        let by_file = match self.identity.running_name(row.pid, &argv) {
            Some(name) => name,
            None => Some(row.comm.clone()),
        };
        std::iter::once(by_args)
            .chain(by_file)
            .find_map(|name| self.denylist.category(&name).map(|c| (name, c)))
    }

    /// The alert a denylisted row deserves, by who started it.
    fn judge(
        &self,
        row: &TopRow,
        parents: &HashMap<u32, u32>,
        container: &GuardedContainer,
        (name, category): (String, &'static str),
    ) -> Alert {
        // Ancestors from the same listing, nearest first (bounded: a listing is a snapshot
        // and could hold a cycle after pid reuse).
        let ancestors = std::iter::successors(parents.get(&row.pid).copied(), |pid| {
            parents.get(pid).copied()
        })
        .take(crate::sources::lineage::MAX_DEPTH);
        let matches = |expected: &[String]| origin::args_line_matches(&row.args, expected);
        let candidate = Candidate {
            pid: row.pid,
            ancestors,
            // A listing cannot tell; a row already alerted on is never judged again.
            from_runc: true,
            // The same snapshot lists every process of the container: a parent not in it is
            // outside (an orphan inside is re-parented to the container's PID 1). Decides
            // only when the process is gone before /proc could be asked.
            no_inside_parent: !parents.contains_key(&row.ppid),
            matches: &matches,
        };
        let origin = self.glass.classify(&self.probes, container, candidate);
        // The program, not the whole command line (that is in the details, bounded).
        let program = row.args.split_whitespace().next().unwrap_or(&row.comm);
        let alert = match origin {
            Origin::HealthProbe => origin::probe_alert(program, Some(name)),
            Origin::BreakGlass(uid) => {
                let argv: Vec<String> = row.args.split_whitespace().map(String::from).collect();
                origin::break_glass_alert(program, &argv, uid)
            }
            Origin::MainProcess => origin::main_process_alert(program, &name, category),
            Origin::Other => Alert::new(
                Severity::Critical,
                AlertSource::Processes,
                format!(
                    "Suspicious process detected: {name} ({category}) pid {}",
                    row.pid
                ),
            )
            .rule("process_denylisted")
            .with("category", category),
        };
        alert
            .with("pid", row.pid)
            .with("ppid", row.ppid)
            .with("comm", row.comm.clone())
            .with("args", row.args.clone())
            .with("origin", origin.as_str())
            .with("detected_by", "docker top")
    }
}

/// The `ps` columns asked of `docker top`, in order. procps titles both `comm` and `args`
/// "COMMAND", so rows are read by position; Docker puts the rest of the line in the last.
pub(crate) const PS_ARGS: &str = "-o pid,ppid,comm,args";

/// One row of [`PS_ARGS`] output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopRow {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub args: String,
}

pub(crate) fn parse_top(processes: &[Vec<String>]) -> Vec<TopRow> {
    processes
        .iter()
        .filter_map(|row| {
            Some(TopRow {
                pid: row.first()?.trim().parse().ok()?,
                ppid: row.get(1)?.trim().parse().ok()?,
                comm: row.get(2)?.clone(),
                args: row.get(3..)?.join(" "),
            })
        })
        .collect()
}

impl PollingWatcher for ProcessPoll {
    const CHANNEL: &'static str = "processes";

    fn interval(&self) -> Duration {
        self.every
    }

    async fn tick(
        &mut self,
        ctx: &WatchContext,
        container: &GuardedContainer,
    ) -> anyhow::Result<()> {
        let options = TopOptionsBuilder::new().ps_args(PS_ARGS).build();
        let top = ctx
            .docker
            .top_processes(&container.id, Some(options))
            .await?;
        let rows = parse_top(top.processes.as_deref().unwrap_or_default());
        let live: HashSet<u32> = rows.iter().map(|r| r.pid).collect();
        let parents: HashMap<u32, u32> = rows.iter().map(|r| (r.pid, r.ppid)).collect();
        let by_pid: HashMap<u32, &TopRow> = rows.iter().map(|r| (r.pid, r)).collect();
        let mut fresh = Vec::new();
        if let Ok(mut alerted) = self.alerted.lock() {
            // Forget exited processes so a reused pid is judged again.
            alerted.retain(|pid| live.contains(pid));
            for row in &rows {
                if !alerted.contains(&row.pid)
                    && let Some(hit) = self.denied(row)
                {
                    alerted.insert(row.pid);
                    if self.excepted(row, &by_pid).is_none() {
                        fresh.push((row.clone(), hit));
                    }
                }
            }
        }
        for (row, hit) in fresh {
            let alert = self.judge(&row, &parents, container, hit);
            ctx.alerts.raise(alert).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_top_rows_by_position() {
        let rows = vec![
            vec!["42", "7", "sh", "sh -c sleep 9"],
            vec!["43", "42", "sleep", "sleep", "9"],
            vec!["x", "1", "bad", "row"],
            vec!["44"],
        ]
        .into_iter()
        .map(|r| r.into_iter().map(String::from).collect())
        .collect::<Vec<Vec<String>>>();
        let parsed = parse_top(&rows);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].pid, 42);
        assert_eq!(parsed[0].comm, "sh");
        assert_eq!(parsed[0].args, "sh -c sleep 9");
        assert_eq!(parsed[1].args, "sleep 9");
    }
}
