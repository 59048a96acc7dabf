//! Decoding of ring-buffer records into typed events.
//!
//! A record is untrusted bytes as far as this module is concerned: every length is checked
//! before a struct is read, and anything that does not fit is a [`DecodeError`], never a panic.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crabpot_common::{
    ConnectEvent, DnsReplyEvent, EXEC_VIA_EXECVEAT, EventHeader, EventKind, ExecEvent, MountEvent,
    NetPolicyEvent, OpenEvent, PtraceEvent, RefusedEvent, net_op,
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
/// The loopback device's index, the same in every network namespace.
const LOOPBACK_IFINDEX: u32 = 1;

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

use crate::model::event::{EventBody, Header, KernelEvent, RuleName, Verdict};

/// Read a `T` from the front of `bytes`, or say how short they are.
fn read_record<T: aya::Pod>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
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
fn text(buf: &[u8], len: u32) -> String {
    let end = (len as usize).min(buf.len());
    let bytes = &buf[..end];
    let bytes = bytes.split(|b| *b == 0).next().unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

fn header(raw: &EventHeader) -> Header {
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

fn checked<T: aya::Pod>(
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

/// Decode one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<KernelEvent, DecodeError> {
    let raw: EventHeader = read_record(bytes, "event header")?;
    let kind = EventKind::from_u32(raw.kind).ok_or(DecodeError::UnknownKind(raw.kind))?;
    let body = match kind {
        EventKind::Exec => {
            let e: ExecEvent = checked(bytes, &raw, kind)?;
            let argc = (e.argc as usize).min(e.argv.len());
            EventBody::Exec {
                syscall: if e.via == EXEC_VIA_EXECVEAT {
                    "execveat"
                } else {
                    "execve"
                },
                dirfd: e.dirfd,
                flags: e.flags,
                filename: text(&e.filename, e.filename_len),
                argv: (0..argc).map(|i| text(&e.argv[i], e.argv_len[i])).collect(),
                ret: e.ret,
            }
        }
        EventKind::Open => {
            let e: OpenEvent = checked(bytes, &raw, kind)?;
            EventBody::Open {
                dirfd: e.dirfd,
                flags: e.flags,
                mode: e.mode,
                path: text(&e.path, e.path_len),
            }
        }
        EventKind::Connect => {
            let e: ConnectEvent = checked(bytes, &raw, kind)?;
            EventBody::Connect {
                fd: e.fd,
                family: e.family,
                address: ip_address(e.family, &e.addr),
                port: e.port,
            }
        }
        EventKind::Ptrace => {
            let e: PtraceEvent = checked(bytes, &raw, kind)?;
            EventBody::Ptrace {
                request: e.request,
                target_pid: e.target_pid,
                addr: e.addr,
                data: e.data,
                verdict: Verdict::from_raw(e.verdict),
            }
        }
        EventKind::Mount => {
            let e: MountEvent = checked(bytes, &raw, kind)?;
            EventBody::Mount {
                source: text(&e.source, e.source_len),
                target: text(&e.target, e.target_len),
                fstype: text(&e.fstype, e.fstype_len),
                flags: e.flags,
                verdict: Verdict::from_raw(e.verdict),
            }
        }
        EventKind::NetPolicy => {
            let e: NetPolicyEvent = checked(bytes, &raw, kind)?;
            let family = if matches!(e.op, net_op::CONNECT6 | net_op::SENDMSG6) {
                AF_INET6
            } else {
                e.family as u16
            };
            EventBody::NetPolicy {
                rule: RuleName::from_raw(e.rule).ok_or(DecodeError::UnknownRule(e.rule))?,
                verdict: Verdict::from_raw(e.verdict),
                op: match e.op {
                    net_op::CONNECT4 | net_op::CONNECT6 => "connect",
                    net_op::SENDMSG4 | net_op::SENDMSG6 => "sendmsg",
                    _ => "socket",
                },
                family: e.family,
                sock_type: e.sock_type,
                protocol: e.protocol,
                address: (e.op != net_op::SOCK_CREATE)
                    .then(|| ip_address(family, &e.addr))
                    .flatten(),
                port: e.port,
            }
        }
        EventKind::Refused => {
            let e: RefusedEvent = checked(bytes, &raw, kind)?;
            EventBody::Refused {
                rule: RuleName::from_raw(e.rule).ok_or(DecodeError::UnknownRule(e.rule))?,
                ret: e.ret,
            }
        }
        EventKind::DnsReply => dns_reply(checked(bytes, &raw, kind)?),
    };
    Ok(KernelEvent {
        header: header(&raw),
        body,
    })
}

fn dns_reply(e: DnsReplyEvent) -> EventBody {
    // The kernel never claims more than the array, but the record is untrusted bytes.
    let len = (e.payload_len as usize).min(e.payload.len());
    let family = if e.ip_version == 6 { AF_INET6 } else { AF_INET };
    EventBody::DnsReply {
        resolver: ip_address(family, &e.source),
        via_loopback: e.ingress_ifindex == LOOPBACK_IFINDEX,
        payload: e.payload[..len].to_vec(),
    }
}

fn ip_address(family: u16, addr: &[u8; 16]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(
            addr[0], addr[1], addr[2], addr[3],
        ))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(*addr))),
        _ => None,
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
