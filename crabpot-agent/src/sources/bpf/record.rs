//! Reading ring-buffer records: the primitives every event kind decodes with (events/).
//!
//! A record is untrusted bytes as far as this module is concerned: every length is checked
//! before a struct is read, and anything that does not fit is a [`DecodeError`], never a panic.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crabpot_common::{EventHeader, EventKind};

pub(crate) const AF_INET: u16 = 2;
pub(crate) const AF_INET6: u16 = 10;
/// The loopback device's index, the same in every network namespace.
pub(crate) const LOOPBACK_IFINDEX: u32 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {got} bytes is shorter than the {need}-byte {what}")]
    Truncated {
        what: &'static str,
        need: usize,
        got: usize,
    },
    #[error("record has unknown event kind {0}")]
    UnknownKind(u32),
    #[error("record names unknown policy rule {0}")]
    UnknownRule(u32),
    #[error("{kind} record says it is {claimed} bytes, expected {expected}")]
    SizeMismatch {
        kind: &'static str,
        claimed: u32,
        expected: usize,
    },
}

use crate::model::event::{Header, RuleName};

/// Read a `T` from the front of `bytes`, or say how short they are.
pub(crate) fn read_record<T: aya::Pod>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    let need = std::mem::size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Truncated {
            what,
            need,
            got: bytes.len(),
        });
    }
    // SAFETY: the length was checked above and `T: Pod` is valid for any bit pattern.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// The text of a fixed-size kernel buffer: at most `len` bytes, cut at the first NUL,
/// invalid UTF-8 replaced.
pub(crate) fn text(buf: &[u8], len: u32) -> String {
    let end = (len as usize).min(buf.len());
    let bytes = &buf[..end];
    let bytes = bytes.split(|b| *b == 0).next().unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) fn header(raw: &EventHeader) -> Header {
    Header {
        ts_ns: raw.ts_ns,
        pid: raw.pid,
        tgid: raw.tgid,
        ppid: raw.ppid,
        uid: raw.uid,
        cgroup_id: raw.cgroup_id,
        comm: text(&raw.comm, raw.comm.len() as u32),
    }
}

pub(crate) fn checked<T: aya::Pod>(
    bytes: &[u8],
    raw: &EventHeader,
    kind: EventKind,
) -> Result<T, DecodeError> {
    let expected = std::mem::size_of::<T>();
    if raw.size as usize != expected {
        return Err(DecodeError::SizeMismatch {
            kind: kind.name(),
            claimed: raw.size,
            expected,
        });
    }
    read_record(bytes, kind.name())
}

/// The rule a record names, or an error (a kernel newer than the agent).
pub(crate) fn rule(raw: u32) -> Result<RuleName, DecodeError> {
    RuleName::from_raw(raw).ok_or(DecodeError::UnknownRule(raw))
}

pub(crate) fn ip_address(family: u16, addr: &[u8; 16]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(
            addr[0], addr[1], addr[2], addr[3],
        ))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(*addr))),
        _ => None,
    }
}
