//! A kernel event as the agent sees it: decoded from its ring-buffer record, typed.
use std::net::IpAddr;

pub(crate) use crabpot_common::{EventKind, RuleName, Verdict};
use serde::Serialize;

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
        /// fsmount's mount attributes.
        attr_flags: u64,
        /// move_mount's `from_dfd`, fsmount's `fs_fd`; AT_FDCWD for mount(2).
        from_fd: i32,
        /// move_mount's `to_dfd`; AT_FDCWD for mount(2), -1 for fsmount.
        to_fd: i32,
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
    /// A process of the container found outside the guarded cgroup subtree.
    Escape {
        /// `attach` (the move itself), `syscall` (a watched call made outside), `socket`
        /// (a socket refused outside).
        how: &'static str,
        moved_pid: u32,
        guard_id: u64,
        dst_id: u64,
        dst_level: i32,
        dst_path: String,
        verdict: Verdict,
    },
    /// A packet to a destination outside the allowlist, seen at the container's egress.
    Packet {
        verdict: Verdict,
        protocol: u32,
        sock_type: u32,
        address: Option<IpAddr>,
        port: u16,
        /// Packets to the same destination not reported since the previous record.
        suppressed: u32,
    },
    /// A symbolic link made in the container: its path (relative to `dirfd` when not
    /// absolute) and its target, both as given.
    Link {
        dirfd: i32,
        target: String,
        link: String,
    },
}

fn byte_count<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(bytes.len() as u64)
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
            EventBody::Escape { .. } => EventKind::Escape,
            EventBody::Packet { .. } => EventKind::Packet,
            EventBody::Link { .. } => EventKind::Link,
        }
    }
}

/// One process in an event's lineage (the caller first, then its parents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Ancestor {
    pub pid: u32,
    pub name: String,
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
    /// How an alert says it.
    pub(crate) fn as_text(self) -> &'static str {
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
