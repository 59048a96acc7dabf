//! Allowlist entries learned from DNS replies, each held by the names whose answers
//! produced it until the last of their TTLs runs out. An entry answered for two allowed
//! names stays while either is live; static entries are not in this table at all, so
//! expiring a learned entry never takes away what the configuration allows (the kernel
//! side keeps every entry of the static list, the resolvers and this table's live set).
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use crate::policy::allow::AllowEntry;

/// TTLs are clamped to this range: a TTL of 0 would be gone before the connect, and an
/// address should not outlive an hour without a fresh answer.
pub(crate) const MIN_TTL: Duration = Duration::from_secs(30);
pub(crate) const MAX_TTL: Duration = Duration::from_secs(3600);
/// Most learned entries: the kernel maps hold 1024 entries, shared with the static list.
pub(crate) const MAX_ENTRIES: usize = 768;

pub(crate) fn clamp_ttl(ttl_seconds: u32) -> Duration {
    Duration::from_secs(u64::from(ttl_seconds)).clamp(MIN_TTL, MAX_TTL)
}

#[derive(Debug, Default)]
pub(crate) struct LearnedTable {
    /// Entry → (allowed name → when that name's answer expires).
    entries: HashMap<AllowEntry, HashMap<String, Instant>>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Learn {
    /// Not in the table before: the kernel needs it.
    New,
    /// Already there; its expiry was extended.
    Refreshed,
    /// The table is full: not learned.
    Full,
}

impl LearnedTable {
    pub(crate) fn learn(
        &mut self,
        entry: AllowEntry,
        name: &str,
        ttl: Duration,
        now: Instant,
    ) -> Learn {
        let expires = now + ttl;
        if let Some(sources) = self.entries.get_mut(&entry) {
            let slot = sources.entry(name.to_string()).or_insert(expires);
            *slot = (*slot).max(expires);
            return Learn::Refreshed;
        }
        if self.entries.len() >= MAX_ENTRIES {
            return Learn::Full;
        }
        self.entries
            .insert(entry, HashMap::from([(name.to_string(), expires)]));
        Learn::New
    }

    /// Drop the sources whose TTL ran out; the entries left with none are returned.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<AllowEntry> {
        let mut gone = Vec::new();
        self.entries.retain(|entry, sources| {
            sources.retain(|_, expires| *expires > now);
            if sources.is_empty() {
                gone.push(*entry);
            }
            !sources.is_empty()
        });
        gone
    }

    /// Keep only the sources `keep` still approves of (a reloaded allowlist); returns the
    /// entries left with none.
    pub(crate) fn retain(&mut self, keep: impl Fn(&AllowEntry, &str) -> bool) -> Vec<AllowEntry> {
        let mut gone = Vec::new();
        self.entries.retain(|entry, sources| {
            sources.retain(|name, _| keep(entry, name));
            if sources.is_empty() {
                gone.push(*entry);
            }
            !sources.is_empty()
        });
        gone
    }

    pub(crate) fn live(&self) -> impl Iterator<Item = &AllowEntry> {
        self.entries.keys()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> AllowEntry {
        text.parse().expect("entry")
    }

    #[test]
    fn ttls_are_clamped() {
        assert_eq!(clamp_ttl(0), MIN_TTL);
        assert_eq!(clamp_ttl(300), Duration::from_secs(300));
        assert_eq!(clamp_ttl(u32::MAX), MAX_TTL);
    }

    #[test]
    fn an_entry_lives_until_its_last_source_expires() {
        let now = Instant::now();
        let mut table = LearnedTable::default();
        let address = entry("192.0.2.7/32");
        let a = Duration::from_secs(30);
        let b = Duration::from_secs(90);
        assert_eq!(table.learn(address, "a.example", a, now), Learn::New);
        assert_eq!(table.learn(address, "b.example", b, now), Learn::Refreshed);
        assert!(table.expire(now + Duration::from_secs(31)).is_empty());
        assert_eq!(table.live().count(), 1);
        assert_eq!(table.expire(now + Duration::from_secs(91)), vec![address]);
        assert!(table.is_empty());
    }

    #[test]
    fn a_fresh_answer_extends_and_never_shortens() {
        let now = Instant::now();
        let mut table = LearnedTable::default();
        let address = entry("192.0.2.7:443");
        table.learn(address, "a.example", Duration::from_secs(100), now);
        table.learn(address, "a.example", Duration::from_secs(30), now);
        assert!(table.expire(now + Duration::from_secs(60)).is_empty());
        table.learn(
            address,
            "a.example",
            Duration::from_secs(100),
            now + Duration::from_secs(60),
        );
        assert!(table.expire(now + Duration::from_secs(150)).is_empty());
        assert_eq!(table.expire(now + Duration::from_secs(161)), vec![address]);
    }

    #[test]
    fn a_reload_drops_what_the_new_list_no_longer_allows() {
        let now = Instant::now();
        let mut table = LearnedTable::default();
        let shared = entry("192.0.2.7:443");
        let other = entry("192.0.2.8:443");
        table.learn(shared, "a.example", MIN_TTL, now);
        table.learn(shared, "b.example", MIN_TTL, now);
        table.learn(other, "a.example", MIN_TTL, now);
        // a.example is no longer allowed: `shared` stays for b.example, `other` goes.
        assert_eq!(table.retain(|_, name| name != "a.example"), vec![other]);
        assert_eq!(table.live().collect::<Vec<_>>(), vec![&shared]);
    }

    #[test]
    fn the_table_is_bounded() {
        let now = Instant::now();
        let mut table = LearnedTable::default();
        for i in 0..MAX_ENTRIES {
            let address = std::net::Ipv4Addr::from(0x0a00_0000 + i as u32);
            let e = AllowEntry {
                net: ipnet::IpNet::from(std::net::IpAddr::V4(address)),
                port: None,
            };
            assert_eq!(table.learn(e, "x", MIN_TTL, now), Learn::New);
        }
        assert_eq!(
            table.learn(entry("192.0.2.1/32"), "x", MIN_TTL, now),
            Learn::Full
        );
        assert_eq!(table.len(), MAX_ENTRIES);
    }
}
