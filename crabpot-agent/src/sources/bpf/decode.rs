//! Decoding of ring-buffer records into typed events.
//!
//! A record is untrusted bytes as far as this module is concerned: every length is checked
//! before a struct is read, and anything that does not fit is a [`DecodeError`], never a panic.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crabpot_common::{
    ConnectEvent, DnsReplyEvent, EXEC_VIA_EXECVEAT, EventHeader, EventKind, ExecEvent, MountEvent,
    NetPolicyEvent, OpenEvent, PtraceEvent, RefusedEvent, exe_flag, exec_action, net_op, open_base,
    rule, verdict,
};
use serde::Serialize;

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

/// Fields every kernel event carries.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Header {
    pub ts_ns: u64,
    pub pid: u32,
    pub tgid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub cgroup_id: u64,
    pub comm: String,
}

/// One event from the kernel, decoded.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KernelEvent {
    #[serde(flatten)]
    pub header: Header,
    #[serde(flatten)]
    pub body: EventBody,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    Exec {
        syscall: &'static str,
        dirfd: i32,
        flags: u32,
        filename: String,
        argv: Vec<String>,
        /// 0 when the program was executed, else the negative errno the exec failed with.
        ret: i32,
        /// What the kernel did to the new program before its first instruction.
        kernel_action: KernelAction,
        /// Monotonic time of the stop or kill (0: none), beside `ts_ns` (the exec's entry).
        action_ts_ns: u64,
        /// The executed file as the kernel held it at the exec (`None` when not read).
        #[serde(skip_serializing_if = "Option::is_none")]
        exe: Option<ExeFile>,
    },
    Open {
        dirfd: i32,
        flags: i32,
        mode: u32,
        path: String,
        /// The directory a relative path started from, when the kernel found it in procfs
        /// (e.g. `/proc/1`): known even when the process is gone.
        #[serde(skip_serializing_if = "Option::is_none")]
        base: Option<String>,
    },
    Connect {
        fd: i32,
        family: u16,
        address: Option<IpAddr>,
        port: u16,
    },
    Ptrace {
        request: i64,
        target_pid: i64,
        addr: u64,
        data: u64,
        verdict: Verdict,
    },
    Mount {
        source: String,
        target: String,
        fstype: String,
        flags: u64,
        verdict: Verdict,
    },
    NetPolicy {
        rule: RuleName,
        verdict: Verdict,
        op: &'static str,
        family: u32,
        sock_type: u32,
        protocol: u32,
        address: Option<IpAddr>,
        port: u16,
    },
    Refused {
        rule: RuleName,
        ret: i64,
    },
    /// A DNS reply delivered to the container (the message bytes, up to 512).
    DnsReply {
        resolver: Option<IpAddr>,
        /// Came in over loopback (a loopback resolver, or the container talking to itself).
        via_loopback: bool,
        /// Printed as its length only: the agent reports what it learned, not raw bytes.
        #[serde(rename = "payload_len", serialize_with = "byte_count")]
        payload: Vec<u8>,
    },
}

/// What the kernel did to a new program at its exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelAction {
    None,
    /// SIGSTOP before its first instruction: it waits for the agent's judgement.
    Stopped,
    /// SIGKILL before its first instruction (`exec=block`).
    Killed,
}

impl KernelAction {
    fn from_raw(raw: u32) -> Self {
        match raw {
            exec_action::STOPPED => KernelAction::Stopped,
            exec_action::KILLED => KernelAction::Killed,
            _ => KernelAction::None,
        }
    }

    /// How an alert says it.
    pub fn as_text(self) -> &'static str {
        match self {
            KernelAction::None => "",
            KernelAction::Stopped => "stopped in kernel",
            KernelAction::Killed => "killed in kernel",
        }
    }
}

/// The executed file, read by the kernel from the task (`mm->exe_file`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExeFile {
    pub ino: u64,
    /// The kernel's `s_dev` encoding (major << 20 | minor).
    pub dev: u32,
    pub nlink: u32,
    /// Its dentry's name (`memfd:NAME` for a memfd).
    pub name: String,
    /// A `memfd_create` file.
    pub memfd: bool,
    /// No directory names it (a memfd or a deleted file).
    pub unlinked: bool,
}

fn exe_file(e: &ExecEvent) -> Option<ExeFile> {
    (e.exe_flags & exe_flag::KNOWN != 0).then(|| ExeFile {
        ino: e.exe_ino,
        dev: e.exe_dev,
        nlink: e.exe_nlink,
        name: text(&e.exe_name, e.exe_name.len() as u32),
        memfd: e.exe_flags & exe_flag::MEMFD != 0,
        unlinked: e.exe_flags & exe_flag::UNLINKED != 0,
    })
}

/// The base directory of a relative open, when the kernel read it in procfs: `/proc`, then
/// the names it gave innermost first, reversed.
fn open_base_dir(e: &OpenEvent) -> Option<String> {
    let known = open_base::PROC | open_base::KNOWN;
    if e.base_flags & known != known {
        return None;
    }
    let depth = (e.base_depth as usize).min(e.base.len());
    let mut path = String::from("/proc");
    for name in e.base[..depth].iter().rev() {
        let name = text(name, name.len() as u32);
        // A name is one component; anything else is not a path the kernel gave.
        if name.is_empty() || name.contains('/') || name == ".." {
            return None;
        }
        path.push('/');
        path.push_str(&name);
    }
    Some(path)
}

fn byte_count<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(bytes.len() as u64)
}

/// What the kernel did, as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    None,
    Log,
    Alert,
    Audit,
    Blocked,
    Killed,
}

impl Verdict {
    pub fn from_raw(raw: u32) -> Self {
        match raw {
            verdict::LOG => Verdict::Log,
            verdict::ALERT => Verdict::Alert,
            verdict::AUDIT => Verdict::Audit,
            verdict::BLOCKED => Verdict::Blocked,
            verdict::KILLED => Verdict::Killed,
            _ => Verdict::None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::None => "observed",
            Verdict::Log => "logged",
            Verdict::Alert => "alert",
            Verdict::Audit => "audit",
            Verdict::Blocked => "blocked",
            Verdict::Killed => "killed",
        }
    }
}

/// A policy rule, as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleName {
    Mount,
    Exec,
    Ptrace,
    ProcOpen,
    Socket,
    Connect,
}

impl RuleName {
    pub const ALL: [RuleName; 6] = [
        RuleName::Mount,
        RuleName::Exec,
        RuleName::Ptrace,
        RuleName::ProcOpen,
        RuleName::Socket,
        RuleName::Connect,
    ];

    pub fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.id() == raw)
    }

    /// Index in the kernel's `RULE_MODES`.
    pub fn id(self) -> u32 {
        match self {
            RuleName::Mount => rule::MOUNT,
            RuleName::Exec => rule::EXEC,
            RuleName::Ptrace => rule::PTRACE,
            RuleName::ProcOpen => rule::PROC_OPEN,
            RuleName::Socket => rule::SOCKET,
            RuleName::Connect => rule::CONNECT,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RuleName::Mount => "mount",
            RuleName::Exec => "exec",
            RuleName::Ptrace => "ptrace",
            RuleName::ProcOpen => "proc_open",
            RuleName::Socket => "socket",
            RuleName::Connect => "connect",
        }
    }
}

impl KernelEvent {
    pub fn kind(&self) -> EventKind {
        match self.body {
            EventBody::Exec { .. } => EventKind::Exec,
            EventBody::Open { .. } => EventKind::Open,
            EventBody::Connect { .. } => EventKind::Connect,
            EventBody::Ptrace { .. } => EventKind::Ptrace,
            EventBody::Mount { .. } => EventKind::Mount,
            EventBody::NetPolicy { .. } => EventKind::NetPolicy,
            EventBody::Refused { .. } => EventKind::Refused,
            EventBody::DnsReply { .. } => EventKind::DnsReply,
        }
    }
}

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
                kernel_action: KernelAction::from_raw(e.kernel_action),
                action_ts_ns: e.action_ts_ns,
                exe: exe_file(&e),
            }
        }
        EventKind::Open => {
            let e: OpenEvent = checked(bytes, &raw, kind)?;
            EventBody::Open {
                dirfd: e.dirfd,
                flags: e.flags,
                mode: e.mode,
                path: text(&e.path, e.path_len),
                base: open_base_dir(&e),
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
