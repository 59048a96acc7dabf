//! DNS-aware egress: what the agent learns from the DNS replies the container receives.
//!
//! - Answers (A/AAAA, through CNAME chains) to a question whose name matches an allowlisted
//!   host name or `*.suffix` pattern are allowed in the kernel as the exact address, on the
//!   entry's port (or any port), until the record's TTL (clamped to 30 s – 1 h) runs out.
//! - Every answer, allowed or not, is remembered address → name for its TTL, so a blocked
//!   connect names the host the address came from.
//! - Only replies from the container's own resolvers count (see [`trusted`]): a process in
//!   the container can send itself a "reply" from port 53, and must not widen its own
//!   allowlist that way.
//! - The race: the application connects as soon as it reads the reply, and the agent may
//!   not have written the address yet. The reply's record is reserved in the ring buffer
//!   (at socket delivery, with a forced wake-up) before the application can read the reply,
//!   so the agent always handles it before the blocked connect's record. A blocked connect
//!   to an address learned for an allowed name from a reply at most [`RACE_WINDOW`] older
//!   (kernel timestamps) is therefore reported as an INFO "race", not as a violation.
use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use ipnet::IpNet;

use crate::{
    actions::kernel_allow::SharedAllow,
    model::alert::Severity,
    model::event::{EventBody, KernelEvent, RuleName, Verdict},
    policy::{
        allow::{AllowEntry, HostEntry},
        dns::parse_reply,
        learned::{Learn, clamp_ttl},
        violations::{Judgement, net_message},
    },
};

/// How long after a reply a block of its allowed address counts as a race.
pub(crate) const RACE_WINDOW: Duration = Duration::from_secs(1);
/// Addresses remembered with their names.
const MAX_NAMES: usize = 4096;
/// How often learned entries are checked for expiry.
pub(crate) const EXPIRE_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct NameRecord {
    name: String,
    expires: Instant,
    /// Kernel time of the reply that gave this address.
    reply_ts_ns: u64,
    /// The ports the answer was allowed on (`None`: any); empty when the name is not
    /// allowlisted.
    ports: Vec<Option<u16>>,
}

/// Where a reply came from, as the kernel saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplySource {
    pub resolver: Option<IpAddr>,
    pub via_loopback: bool,
    /// Kernel time of delivery.
    pub ts_ns: u64,
}

/// Whether to learn allowlist entries from a reply: it must come from one of the
/// container's resolvers, and a reply "from" a non-loopback resolver must not have come in
/// over loopback — the container itself (e.g. with a raw socket) sent that one. Replies
/// from elsewhere teach nothing, not even names.
pub(crate) fn trusted(source: &ReplySource, resolvers: &[IpAddr]) -> bool {
    let Some(resolver) = source.resolver.map(canonical) else {
        return false;
    };
    resolvers.iter().any(|r| canonical(*r) == resolver)
        && (resolver.is_loopback() || !source.via_loopback)
}

#[derive(Default)]
pub(crate) struct DnsLearner {
    /// The kernel's allowlist; `None` in poll-only mode (names are still remembered).
    allow: Option<SharedAllow>,
    names: HashMap<IpAddr, NameRecord>,
}

/// IPv4-mapped IPv6 addresses are the IPv4 address as far as names and the allowlist go.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The ports `name` is allowed on (`None`: any port); empty when it is not allowlisted.
pub(crate) fn allowed_ports(name: &str, hosts: &[HostEntry]) -> Vec<Option<u16>> {
    let mut ports: Vec<Option<u16>> = hosts
        .iter()
        .filter(|h| h.matches(name))
        .map(|h| h.port)
        .collect();
    if ports.contains(&None) {
        ports = vec![None];
    }
    ports.dedup();
    ports
}

impl DnsLearner {
    pub(crate) fn new(allow: Option<SharedAllow>) -> Self {
        DnsLearner {
            allow,
            names: HashMap::new(),
        }
    }

    /// Learn from `event` when it is a DNS reply; whether it was one.
    pub(crate) fn learn_from(&mut self, event: &KernelEvent, hosts: &[HostEntry]) -> bool {
        let EventBody::DnsReply {
            resolver,
            via_loopback,
            payload,
        } = &event.body
        else {
            return false;
        };
        let source = ReplySource {
            resolver: *resolver,
            via_loopback: *via_loopback,
            ts_ns: event.header.ts_ns,
        };
        self.on_reply(&source, payload, hosts, Instant::now());
        true
    }

    /// Learn from one reply the container received.
    pub(crate) fn on_reply(
        &mut self,
        source: &ReplySource,
        payload: &[u8],
        hosts: &[HostEntry],
        now: Instant,
    ) {
        let reply = match parse_reply(payload) {
            Ok(reply) => reply,
            Err(error) => {
                tracing::debug!("DNS reply not understood ({error}): ignored");
                return;
            }
        };
        let ts_ns = source.ts_ns;
        // Without kernel maps (poll-only) nothing is written, so any source will do.
        let trusted = self.allow.as_ref().is_none_or(|allow| {
            let allow = allow
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            trusted(source, allow.resolver_addresses())
        });
        if !trusted {
            // Not even names: alert text must not be the container's to choose.
            tracing::debug!(
                "DNS: reply for {} from {:?} (loopback: {}) is not from a resolver of the \
                 container: nothing learned",
                reply.question,
                source.resolver,
                source.via_loopback
            );
            return;
        }
        let ports = allowed_ports(&reply.question, hosts);
        for resolved in reply.resolved() {
            let address = canonical(resolved.address);
            let ttl = clamp_ttl(resolved.ttl);
            let record = NameRecord {
                name: reply.question.clone(),
                expires: now + ttl,
                reply_ts_ns: ts_ns,
                ports: ports.clone(),
            };
            if ports.is_empty() {
                tracing::debug!("DNS: {address} is {} (not allowlisted)", reply.question);
            }
            self.remember(address, record, now);
            for port in &ports {
                let entry = AllowEntry {
                    net: IpNet::from(address),
                    port: *port,
                };
                self.learn(entry, &reply.question, ttl, now);
            }
        }
    }

    fn remember(&mut self, address: IpAddr, record: NameRecord, now: Instant) {
        if self.names.len() >= MAX_NAMES && !self.names.contains_key(&address) {
            self.names.retain(|_, record| record.expires > now);
            if self.names.len() >= MAX_NAMES {
                return; // full of live names: this one goes unnamed
            }
        }
        self.names.insert(address, record);
    }

    fn learn(&self, entry: AllowEntry, name: &str, ttl: Duration, now: Instant) {
        let Some(allow) = &self.allow else { return };
        let mut allow = allow
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match allow.learn(entry, name, ttl, now) {
            Ok(Learn::New) => {
                tracing::info!("DNS: {entry} allowed for {name} (TTL {} s)", ttl.as_secs())
            }
            Ok(Learn::Refreshed) => {}
            Ok(Learn::Full) => {
                tracing::warn!("DNS: {entry} for {name} not allowed: the learned allowlist is full")
            }
            Err(error) => tracing::error!("DNS: cannot allow {entry} for {name}: {error}"),
        }
    }

    /// Remove learned entries and names whose TTL ran out.
    pub(crate) fn expire(&mut self, now: Instant) {
        self.names.retain(|_, record| record.expires > now);
        let Some(allow) = &self.allow else { return };
        let mut allow = allow
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match allow.expire(now) {
            Ok(0) => {}
            Ok(n) => tracing::info!("DNS: {n} learned allowlist entries expired"),
            Err(error) => tracing::error!("DNS: cannot remove expired entries: {error}"),
        }
    }

    /// The name an address was last answered for, while its TTL lasts.
    pub(crate) fn name_of(&self, address: IpAddr) -> Option<&str> {
        self.names
            .get(&canonical(address))
            .map(|record| record.name.as_str())
    }

    /// Whether a block of `address:port` at kernel time `ts_ns` raced the reply that
    /// allows it: the reply came at most [`RACE_WINDOW`] before, allowed this port, and
    /// the kernel now holds the entry (a full table would block the next attempt too).
    fn raced(&self, address: IpAddr, port: u16, ts_ns: u64) -> bool {
        let address = canonical(address);
        let Some(record) = self.names.get(&address) else {
            return false;
        };
        let port_allowed = record.ports.iter().any(|p| p.is_none_or(|p| p == port));
        let after = ts_ns.checked_sub(record.reply_ts_ns);
        let in_window = after.is_some_and(|ns| ns <= RACE_WINDOW.as_nanos() as u64);
        let written = self.allow.as_ref().is_none_or(|allow| {
            allow
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .learned_allows(address, port)
        });
        port_allowed && in_window && written
    }

    /// Name the destination of a connect/sendmsg alert, and turn a block that raced the
    /// allowing reply into an INFO record that costs no trust.
    pub(crate) fn annotate(&self, event: &KernelEvent, judgement: &mut Judgement) {
        let EventBody::NetPolicy {
            rule: RuleName::Connect,
            verdict,
            op,
            address: Some(address),
            port,
            ..
        } = &event.body
        else {
            return;
        };
        let Some(name) = self.name_of(*address).map(str::to_string) else {
            return;
        };
        let race = *verdict == Verdict::Blocked && self.raced(*address, *port, event.header.ts_ns);
        let Some(alert) = judgement.alert.as_mut() else {
            return;
        };
        alert.message = net_message(op, *address, *port, Some(&name), *verdict);
        alert.details.insert("dns_name".into(), name.clone().into());
        if race {
            alert.severity = Severity::Info;
            alert.message = format!(
                "{op} to {} ({name}) blocked: it raced the DNS reply that allows it (the \
                 address was learned within {} s); allowed from now on, not a violation",
                std::net::SocketAddr::new(*address, *port),
                RACE_WINDOW.as_secs()
            );
            alert.details.insert("race".into(), true.into());
            judgement.violation = false;
        }
    }
}

#[cfg(test)]
#[path = "dns_learn_tests.rs"]
mod tests;
