//! Host names in the allowlist: resolved by the agent at start, after every reload and
//! every minute, then written into the kernel's allowlist as exact addresses.
use std::{sync::Arc, time::Duration};

use ipnet::IpNet;
use tokio::sync::watch;

use crate::policy::{
    allow::{AllowEntry, HostEntry},
    rules::Policy,
};

pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// The addresses `hosts` resolve to now; a name that does not resolve is logged and skipped.
pub(crate) async fn resolve(hosts: &[HostEntry]) -> Vec<AllowEntry> {
    let mut entries = Vec::new();
    // Patterns (*.example.com) have no addresses of their own: the DNS learner covers them.
    for host in hosts.iter().filter(|h| !h.is_pattern()) {
        match tokio::net::lookup_host((host.name.as_str(), host.port.unwrap_or(0))).await {
            Ok(addresses) => {
                for address in addresses {
                    let entry = AllowEntry {
                        net: IpNet::from(address.ip()),
                        port: host.port,
                    };
                    if !entries.contains(&entry) {
                        entries.push(entry);
                    }
                }
            }
            Err(error) => tracing::warn!(
                "allowlist host `{}` does not resolve ({error}); it allows nothing until it does",
                host.name
            ),
        }
    }
    entries.sort_by_key(|e| e.to_string());
    entries
}

/// Publish `base` with its host names resolved, again whenever `base` changes (SIGHUP) and
/// every [`REFRESH_EVERY`]; only a changed result is published.
pub(crate) async fn keep_resolved(
    mut base: watch::Receiver<Arc<Policy>>,
    effective: watch::Sender<Arc<Policy>>,
) {
    let mut ticker = tokio::time::interval(REFRESH_EVERY);
    let mut last: Option<Vec<AllowEntry>> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            changed = base.changed() => {
                if changed.is_err() {
                    return;
                }
                last = None; // a new base is always published
            }
        }
        let current = base.borrow_and_update().clone();
        let resolved = resolve(&current.allow_hosts).await;
        if last.as_ref() == Some(&resolved) {
            continue;
        }
        if !resolved.is_empty() {
            tracing::info!(
                "allowlist hosts resolved: {}",
                resolved
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let mut next = (*current).clone();
        next.allow.extend(resolved.iter().copied());
        effective.send_replace(Arc::new(next));
        last = Some(resolved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn localhost_resolves_and_garbage_does_not() {
        let hosts = vec![
            HostEntry {
                name: "localhost".into(),
                port: Some(443),
            },
            HostEntry {
                name: "no-such-host.invalid".into(),
                port: None,
            },
        ];
        let entries = resolve(&hosts).await;
        assert!(!entries.is_empty());
        assert!(
            entries
                .iter()
                .all(|e| e.net.addr().is_loopback() && e.port == Some(443))
        );
    }
}
