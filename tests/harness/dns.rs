//! A tiny DNS responder's wire format, for the tests that serve the container's lookups
//! themselves (DNS-aware egress, learn mode).
use std::net::Ipv4Addr;

/// A reply to `query` from `answer(name, qtype)`: `None` for a name it does not know
/// (NXDOMAIN), `Some(None)` for a known name with no record of that type, `Some(Some(a))`
/// for one A record with a 60 s TTL. `None` when the query is malformed.
pub fn reply(
    query: &[u8],
    answer: impl Fn(&str, u16) -> Option<Option<Ipv4Addr>>,
) -> Option<Vec<u8>> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(at)?);
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at + 1..at + 1 + len)?).to_lowercase());
        at += len + 1;
    }
    let qtype = u16::from_be_bytes([*query.get(at + 1)?, *query.get(at + 2)?]);
    let found = answer(&labels.join("."), qtype);
    let address = found.flatten();
    let mut reply = query.get(..at + 5)?.to_vec();
    reply[2] = 0x81;
    reply[3] = if found.is_some() { 0x80 } else { 0x83 };
    reply[6..12].copy_from_slice(&[0, u8::from(address.is_some()), 0, 0, 0, 0]);
    if let Some(address) = address {
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        reply.extend_from_slice(&address.octets());
    }
    Some(reply)
}
