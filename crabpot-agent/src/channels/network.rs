//! Channel 3: the network auditor's poll of the container's sockets, read from the host
//! (`/proc/<container pid>/net/*`): nothing is executed inside the container. The instant
//! path is the kernel's connect events (see `policy::kernel_rules`).
use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use tokio::sync::watch;

use crate::model::container::GuardedContainer;
use crate::{
    actions::kernel_allow::SharedAllow,
    channels::{PollingWatcher, WatchContext},
    model::alert::{Alert, AlertSource, Severity},
    policy::{network_allow::is_allowed, rules::Policy},
};

const TCP_ESTABLISHED: u8 = 0x01;
const TCP_SYN_SENT: u8 = 0x02;
const TCP_LISTEN: u8 = 0x0A;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SocketEntry {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: u8,
}

fn parse_address(hex: &str) -> Option<SocketAddr> {
    let (ip, port) = hex.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(ip, 16).ok()?.to_ne_bytes(),
        )),
        32 => {
            // Four native-endian 32-bit words.
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Parse `/proc/net/{tcp,tcp6,udp,udp6}` text; malformed lines are skipped.
pub(crate) fn parse_proc_net(text: &str) -> Vec<SocketEntry> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _slot = fields.next()?;
            let local = parse_address(fields.next()?)?;
            let remote = parse_address(fields.next()?)?;
            let state = u8::from_str_radix(fields.next()?, 16).ok()?;
            Some(SocketEntry {
                local,
                remote,
                state,
            })
        })
        .collect()
}

/// Outbound peers: TCP connections (established or connecting) whose local port is not one
/// the container listens on, and connected UDP sockets.
pub(crate) fn outbound_peers(
    tcp: &[SocketEntry],
    udp: &[SocketEntry],
) -> Vec<(SocketAddr, &'static str)> {
    let listening: HashSet<u16> = tcp
        .iter()
        .filter(|s| s.state == TCP_LISTEN)
        .map(|s| s.local.port())
        .collect();
    let tcp_out = tcp
        .iter()
        .filter(|s| matches!(s.state, TCP_ESTABLISHED | TCP_SYN_SENT))
        .filter(|s| !listening.contains(&s.local.port()))
        .map(|s| (s.remote, "tcp"));
    let udp_out = udp
        .iter()
        .filter(|s| s.remote.port() != 0 && !s.remote.ip().is_unspecified())
        .map(|s| (s.remote, "udp"));
    tcp_out.chain(udp_out).collect()
}

pub(crate) struct NetworkPoll {
    every: Duration,
    alerted: HashSet<(SocketAddr, &'static str)>,
    /// The kernel allowlist's resolvers and DNS-learned addresses, when there is one: a
    /// connection the cgroup hooks let through for them is not news.
    dynamic: Option<SharedAllow>,
    /// The running policy (reloaded on SIGHUP): its allowlist.
    policy: watch::Receiver<Arc<Policy>>,
}

impl NetworkPoll {
    pub(crate) fn new(every: Duration, policy: watch::Receiver<Arc<Policy>>) -> Self {
        NetworkPoll {
            every,
            alerted: HashSet::new(),
            dynamic: None,
            policy,
        }
    }

    pub(crate) fn with_dynamic_allow(mut self, allow: Option<SharedAllow>) -> Self {
        self.dynamic = allow;
        self
    }

    fn dynamic_nets(&self) -> Vec<ipnet::IpNet> {
        self.dynamic.as_ref().map_or_else(Vec::new, |allow| {
            allow
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .dynamic_nets()
        })
    }
}

fn read_table(pid: u32, name: &str) -> Vec<SocketEntry> {
    std::fs::read_to_string(format!("/proc/{pid}/net/{name}"))
        .map(|text| parse_proc_net(&text))
        .unwrap_or_default()
}

impl PollingWatcher for NetworkPoll {
    const CHANNEL: &'static str = "network";

    fn interval(&self) -> Duration {
        self.every
    }

    async fn tick(
        &mut self,
        ctx: &WatchContext,
        container: &GuardedContainer,
    ) -> anyhow::Result<()> {
        let pid = container.pid;
        if !std::path::Path::new(&format!("/proc/{pid}/net")).exists() {
            anyhow::bail!("/proc/{pid}/net is not readable: the container's main process is gone");
        }
        let mut tcp = read_table(pid, "tcp");
        tcp.extend(read_table(pid, "tcp6"));
        let mut udp = read_table(pid, "udp");
        udp.extend(read_table(pid, "udp6"));
        let peers = outbound_peers(&tcp, &udp);
        let current: HashSet<_> = peers.iter().copied().collect();
        self.alerted.retain(|peer| current.contains(peer));
        let dynamic = self.dynamic_nets();
        let policy = self.policy.borrow().clone();
        for (peer, protocol) in peers {
            if policy.allows(peer.ip())
                || is_allowed(peer.ip(), &dynamic)
                || !self.alerted.insert((peer, protocol))
            {
                continue;
            }
            let alert = Alert::new(
                Severity::Warning,
                AlertSource::Network,
                format!("Outbound {protocol} connection to non-whitelisted address {peer}"),
            )
            .rule("network_not_allowed")
            .with("address", peer.ip().to_string())
            .with("port", peer.port())
            .with("protocol", protocol)
            .with("detected_by", "socket table");
            ctx.alerts.raise(alert).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:4965 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0200A8C0:4965 010011AC:D431 01 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 020011AC:9C40 010011AC:4966 02 00000000:00000000 00:00000000 00000000     0        0 3 1
   3: 0100007F:9C41 0100007F:4965 01 00000000:00000000 00:00000000 00000000     0        0 4 1
   garbage line
";

    #[test]
    fn parses_ipv4_rows_in_host_order() {
        let rows = parse_proc_net(TCP);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].local, "0.0.0.0:18789".parse().expect("addr"));
        assert_eq!(rows[2].remote, "172.17.0.1:18790".parse().expect("addr"));
        assert_eq!(rows[2].state, TCP_SYN_SENT);
    }

    #[test]
    fn parses_ipv6_rows() {
        let text = "header\n   0: 00000000000000000000000001000000:0050 0000000000000000FFFF00000100007F:1F90 01 0 0 0\n";
        let rows = parse_proc_net(text);
        assert_eq!(rows[0].local, "[::1]:80".parse().expect("addr"));
        assert_eq!(
            rows[0].remote,
            "[::ffff:127.0.0.1]:8080".parse().expect("addr")
        );
    }

    #[test]
    fn inbound_connections_to_listening_ports_are_not_outbound() {
        let rows = parse_proc_net(TCP);
        let peers = outbound_peers(&rows, &[]);
        // Row 1 is a client connected to our listening port 18789: inbound.
        assert_eq!(
            peers,
            vec![
                ("172.17.0.1:18790".parse().expect("addr"), "tcp"),
                ("127.0.0.1:18789".parse().expect("addr"), "tcp"),
            ]
        );
    }
}
