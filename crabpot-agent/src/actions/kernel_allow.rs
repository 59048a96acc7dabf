//! The kernel's connect allowlist (`ALLOW_V4`/`ALLOW_V6`), kept as the union of three
//! sources: the configured entries (with host names resolved by the agent), the container's
//! resolvers on port 53, and the entries learned from DNS replies. Shared between the
//! enforcer (policy and container changes) and the kernel-event loop (DNS replies), which
//! is why it sits behind a mutex; every change writes only the keys that differ, so the
//! kernel never sees a moment with fewer entries than both the old and new sets share.
use std::{
    collections::HashSet,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aya::maps::{LpmTrie, MapData, lpm_trie::Key};
use ipnet::IpNet;

use crate::policy::{
    allow::{AllowEntry, HostEntry},
    learned::{Learn, LearnedTable},
};

pub(crate) type SharedAllow = Arc<Mutex<KernelAllow>>;

/// One LPM key, as (prefix length, data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum KernelKey {
    V4(u32, [u8; 6]),
    V6(u32, [u8; 18]),
}

/// The keys for an entry: the address then the port; a CIDR matches any port, an address
/// with a port only that port. An IPv4-mapped IPv6 range also allows the IPv4 addresses it
/// maps.
fn keys(entry: &AllowEntry) -> Vec<KernelKey> {
    // A port needs the whole address before it in the key.
    let port = entry
        .port
        .filter(|_| entry.net.prefix_len() == entry.net.max_prefix_len());
    let port_bits = if port.is_some() { 16 } else { 0 };
    let p = port.unwrap_or(0).to_be_bytes();
    let v4 = |net: &ipnet::Ipv4Net| {
        let a = net.network().octets();
        KernelKey::V4(
            u32::from(net.prefix_len()) + port_bits,
            [a[0], a[1], a[2], a[3], p[0], p[1]],
        )
    };
    match &entry.net {
        IpNet::V4(net) => vec![v4(net)],
        IpNet::V6(net) => {
            let mut data = [0u8; 18];
            data[..16].copy_from_slice(&net.network().octets());
            data[16..].copy_from_slice(&p);
            let mut out = vec![KernelKey::V6(u32::from(net.prefix_len()) + port_bits, data)];
            if let Some(mapped) = net.network().to_ipv4_mapped()
                && net.prefix_len() >= 96
                && let Ok(v4net) = ipnet::Ipv4Net::new(mapped, net.prefix_len() - 96)
            {
                out.push(v4(&v4net));
            }
            out
        }
    }
}

pub(crate) struct KernelAllow {
    v4: LpmTrie<MapData, [u8; 6], u32>,
    v6: LpmTrie<MapData, [u8; 18], u32>,
    configured: Vec<AllowEntry>,
    resolvers: Vec<AllowEntry>,
    /// Every resolver of the container, loopback ones included: the only sources replies
    /// are learned from.
    resolver_addresses: Vec<IpAddr>,
    learned: LearnedTable,
    written: HashSet<KernelKey>,
}

impl KernelAllow {
    pub(crate) fn new(
        v4: LpmTrie<MapData, [u8; 6], u32>,
        v6: LpmTrie<MapData, [u8; 18], u32>,
    ) -> Self {
        KernelAllow {
            v4,
            v6,
            configured: Vec::new(),
            resolvers: Vec::new(),
            resolver_addresses: Vec::new(),
            learned: LearnedTable::default(),
            written: HashSet::new(),
        }
    }

    pub(crate) fn shared(self) -> SharedAllow {
        Arc::new(Mutex::new(self))
    }

    /// Replace the configured entries and host names (a new policy): learned entries stay
    /// only for names the new list still allows, on the port it allows them.
    pub(crate) fn set_configured(
        &mut self,
        entries: &[AllowEntry],
        hosts: &[HostEntry],
    ) -> Result<(), aya::maps::MapError> {
        self.configured = entries.to_vec();
        self.learned.retain(|entry, name| {
            hosts
                .iter()
                .any(|host| host.matches(name) && host.port == entry.port)
        });
        self.sync()
    }

    /// Replace the container's resolvers (a new container or a restart): all of them, and
    /// the entries that allow the ones outside loopback.
    pub(crate) fn set_resolvers(
        &mut self,
        addresses: Vec<IpAddr>,
        entries: Vec<AllowEntry>,
    ) -> Result<(), aya::maps::MapError> {
        self.resolver_addresses = addresses;
        self.resolvers = entries;
        self.sync()
    }

    pub(crate) fn resolver_addresses(&self) -> &[IpAddr] {
        &self.resolver_addresses
    }

    /// Learn `entry` for `name`; written into the kernel at once when new.
    pub(crate) fn learn(
        &mut self,
        entry: AllowEntry,
        name: &str,
        ttl: Duration,
        now: Instant,
    ) -> Result<Learn, aya::maps::MapError> {
        let outcome = self.learned.learn(entry, name, ttl, now);
        if outcome == Learn::New {
            for key in keys(&entry) {
                if self.written.insert(key) {
                    self.insert(key)?;
                }
            }
        }
        Ok(outcome)
    }

    /// Forget the learned entries whose TTLs ran out; returns how many went.
    pub(crate) fn expire(&mut self, now: Instant) -> Result<usize, aya::maps::MapError> {
        let gone = self.learned.expire(now).len();
        if gone > 0 {
            self.sync()?;
        }
        Ok(gone)
    }

    /// Whether a learned entry currently allows `address` on `port`.
    pub(crate) fn learned_allows(&self, address: IpAddr, port: u16) -> bool {
        self.learned.live().any(|entry| {
            entry.net.contains(&address) && entry.port.is_none_or(|allowed| allowed == port)
        })
    }

    /// The addresses of the resolvers and learned entries (for the socket-table poll).
    pub(crate) fn dynamic_nets(&self) -> Vec<IpNet> {
        self.resolvers
            .iter()
            .chain(self.learned.live())
            .map(|entry| entry.net)
            .collect()
    }

    /// Write the difference between what the kernel holds and the union of the sources.
    fn sync(&mut self) -> Result<(), aya::maps::MapError> {
        let desired: HashSet<KernelKey> = self
            .configured
            .iter()
            .chain(&self.resolvers)
            .chain(self.learned.live())
            .flat_map(keys)
            .collect();
        // Additions first: a replaced entry is never missing in between.
        for key in desired
            .difference(&self.written)
            .copied()
            .collect::<Vec<_>>()
        {
            self.insert(key)?;
            self.written.insert(key);
        }
        for key in self
            .written
            .difference(&desired)
            .copied()
            .collect::<Vec<_>>()
        {
            self.remove(key)?;
            self.written.remove(&key);
        }
        Ok(())
    }

    fn insert(&mut self, key: KernelKey) -> Result<(), aya::maps::MapError> {
        match key {
            KernelKey::V4(prefix, data) => self.v4.insert(&Key::new(prefix, data), 1, 0),
            KernelKey::V6(prefix, data) => self.v6.insert(&Key::new(prefix, data), 1, 0),
        }
    }

    fn remove(&mut self, key: KernelKey) -> Result<(), aya::maps::MapError> {
        let outcome = match key {
            KernelKey::V4(prefix, data) => self.v4.remove(&Key::new(prefix, data)),
            KernelKey::V6(prefix, data) => self.v6.remove(&Key::new(prefix, data)),
        };
        match outcome {
            // Already gone is what we wanted.
            Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_lpm_layout() {
        let e: AllowEntry = "10.1.2.3:443".parse().expect("entry");
        assert_eq!(keys(&e), vec![KernelKey::V4(48, [10, 1, 2, 3, 1, 187])]);
        let e: AllowEntry = "10.0.0.0/8".parse().expect("entry");
        assert_eq!(keys(&e), vec![KernelKey::V4(8, [10, 0, 0, 0, 0, 0])]);
        let e: AllowEntry = "::ffff:192.0.2.0/120".parse().expect("entry");
        let k = keys(&e);
        assert_eq!(k.len(), 2);
        assert_eq!(k[1], KernelKey::V4(24, [192, 0, 2, 0, 0, 0]));
    }
}
