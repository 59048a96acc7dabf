//! A bounded parser for the DNS replies the container receives (RFC 1035 wire format).
//!
//! The bytes come from the network on the container's behalf, so they are hostile: every
//! read is bounds-checked, compression pointers may only point backwards (which rules out
//! loops) and are followed at most [`MAX_POINTERS`] times, names are limited to 255 bytes,
//! and at most [`MAX_RECORDS`] answers are read. A reply cut short (the kernel copies at
//! most 512 bytes) yields the records that are whole. Nothing here panics or allocates more
//! than a few kilobytes per message.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const HEADER_LEN: usize = 12;
const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
/// Compression pointers followed per name; a legitimate name needs a handful.
const MAX_POINTERS: usize = 16;
/// Longest name on the wire (RFC 1035 §2.3.4).
const MAX_NAME_LEN: usize = 255;
/// Answer records read per message.
pub(crate) const MAX_RECORDS: usize = 64;
/// CNAME links followed from the question to its addresses.
const MAX_CHAIN: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("shorter than a DNS header")]
    Short,
    #[error("a query, not a reply")]
    NotReply,
    #[error("no question")]
    NoQuestion,
    #[error("malformed name")]
    BadName,
}

/// The data of an answer record the agent cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    Address(IpAddr),
    Alias(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The owner name, lower case, without the final dot.
    pub name: String,
    pub ttl: u32,
    pub data: RecordData,
}

/// A reply: its (first) question and the A, AAAA and CNAME answers that could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub question: String,
    pub answers: Vec<Record>,
}

/// One address the question name resolves to, with the smallest TTL along its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub address: IpAddr,
    pub ttl: u32,
}

fn u16_at(msg: &[u8], at: usize) -> Option<u16> {
    let bytes = msg.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

fn u32_at(msg: &[u8], at: usize) -> Option<u32> {
    let bytes = msg.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Append one label, lower case; bytes that cannot be in a host name are written as
/// `\DDD` so such a name can never equal an allowlisted one (and prints harmlessly).
fn push_label(name: &mut String, label: &[u8]) {
    if !name.is_empty() {
        name.push('.');
    }
    for &byte in label {
        let c = byte.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' {
            name.push(char::from(c));
        } else {
            name.push_str(&format!("\\{byte:03}"));
        }
    }
}

/// Read the name at `start`; returns it and the offset just past it in the record (the
/// first pointer ends a name in place).
pub(crate) fn read_name(msg: &[u8], start: usize) -> Result<(String, usize), DnsError> {
    let mut name = String::new();
    let mut at = start;
    let mut end = None;
    let mut pointers = 0;
    let mut wire_len = 0usize;
    loop {
        let len = usize::from(*msg.get(at).ok_or(DnsError::BadName)?);
        match len & 0xc0 {
            0x00 if len == 0 => break,
            0x00 => {
                let label = msg.get(at + 1..at + 1 + len).ok_or(DnsError::BadName)?;
                wire_len += len + 1;
                if wire_len > MAX_NAME_LEN {
                    return Err(DnsError::BadName);
                }
                push_label(&mut name, label);
                at += len + 1;
            }
            0xc0 => {
                let low = usize::from(*msg.get(at + 1).ok_or(DnsError::BadName)?);
                let target = ((len & 0x3f) << 8) | low;
                // Only backwards: a pointer can never reach itself, so no loop is possible;
                // the count bounds the work on long backward chains.
                pointers += 1;
                if target >= at || pointers > MAX_POINTERS {
                    return Err(DnsError::BadName);
                }
                end.get_or_insert(at + 2);
                at = target;
            }
            _ => return Err(DnsError::BadName), // 0x40/0x80: extended label types
        }
    }
    Ok((name, end.unwrap_or(at + 1)))
}

/// Parse one answer record at `at`; `Ok(None)` for a record of another type or class, and
/// the offset past it.
fn read_record(msg: &[u8], at: usize) -> Option<(Option<Record>, usize)> {
    let (name, at) = read_name(msg, at).ok()?;
    let rtype = u16_at(msg, at)?;
    let class = u16_at(msg, at + 2)?;
    let ttl = u32_at(msg, at + 4)?;
    let rdlen = usize::from(u16_at(msg, at + 8)?);
    let rdata_at = at + 10;
    let rdata = msg.get(rdata_at..rdata_at + rdlen)?;
    let next = rdata_at + rdlen;
    if class != CLASS_IN {
        return Some((None, next));
    }
    let data = match (rtype, rdata.len()) {
        (TYPE_A, 4) => RecordData::Address(IpAddr::V4(Ipv4Addr::new(
            rdata[0], rdata[1], rdata[2], rdata[3],
        ))),
        (TYPE_AAAA, 16) => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(rdata);
            RecordData::Address(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        // The alias may use compression into the rest of the message.
        (TYPE_CNAME, _) => RecordData::Alias(read_name(msg, rdata_at).ok()?.0),
        _ => return Some((None, next)),
    };
    Some((Some(Record { name, ttl, data }), next))
}

/// Parse a reply. A message cut short keeps the answers before the cut.
pub fn parse_reply(msg: &[u8]) -> Result<Reply, DnsError> {
    if msg.len() < HEADER_LEN {
        return Err(DnsError::Short);
    }
    let flags = u16_at(msg, 2).ok_or(DnsError::Short)?;
    if flags & 0x8000 == 0 {
        return Err(DnsError::NotReply);
    }
    let questions = u16_at(msg, 4).ok_or(DnsError::Short)?;
    let answers = u16_at(msg, 6).ok_or(DnsError::Short)?;
    if questions == 0 {
        return Err(DnsError::NoQuestion);
    }
    let (question, mut at) = read_name(msg, HEADER_LEN)?;
    at += 4; // type and class
    // Resolvers send one question; skip any others.
    for _ in 1..questions.min(8) {
        at = read_name(msg, at)?.1 + 4;
    }
    let mut records = Vec::new();
    for _ in 0..usize::from(answers).min(MAX_RECORDS) {
        let Some((record, next)) = read_record(msg, at) else {
            break; // cut short or malformed: keep what was whole
        };
        records.extend(record);
        at = next;
    }
    Ok(Reply {
        question,
        answers: records,
    })
}

impl Reply {
    /// The addresses the question name resolves to: its own A/AAAA records and those at
    /// the end of its CNAME chain (within this message), each with the smallest TTL on the
    /// way. Records for names outside the chain are not the answer to this question.
    pub fn resolved(&self) -> Vec<Resolved> {
        let mut chain: Vec<(&str, u32)> = vec![(self.question.as_str(), u32::MAX)];
        for _ in 0..MAX_CHAIN {
            let Some(&(current, ttl)) = chain.last() else {
                break;
            };
            let next = self.answers.iter().find_map(|r| match &r.data {
                RecordData::Alias(target) if r.name == current => {
                    Some((target.as_str(), ttl.min(r.ttl)))
                }
                _ => None,
            });
            match next {
                Some(link) if !chain.iter().any(|(name, _)| *name == link.0) => chain.push(link),
                _ => break,
            }
        }
        let mut out = Vec::new();
        for record in &self.answers {
            let RecordData::Address(address) = record.data else {
                continue;
            };
            if let Some((_, ttl)) = chain.iter().find(|(name, _)| *name == record.name) {
                out.push(Resolved {
                    address,
                    ttl: (*ttl).min(record.ttl),
                });
            }
        }
        out
    }
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
