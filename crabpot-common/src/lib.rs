//! Wire types shared by the kernel programs (`crabpot-ebpf`) and the agent.
//!
//! Every record in the `EVENTS` ring buffer starts with an [`EventHeader`]; its `kind`
//! says which payload struct the whole record is. All structs are `#[repr(C)]` with
//! explicit padding so both sides agree on the layout byte for byte.
#![no_std]

/// Length of a task's `comm` in the kernel.
pub const COMM_LEN: usize = 16;
/// Bytes kept of a path (exec filename, opened path).
pub const PATH_LEN: usize = 256;
/// Argument vector entries kept per exec event.
pub const ARGV_COUNT: usize = 4;
/// Bytes kept of each argument vector entry.
pub const ARG_LEN: usize = 64;
/// Bytes kept of each mount string (source, target).
pub const MOUNT_STR_LEN: usize = 128;
/// Bytes kept of a mount's filesystem type.
pub const FSTYPE_LEN: usize = 32;
/// Bytes kept of a cgroup path (the guarded cgroup's, and where a process moved to).
pub const CGROUP_PATH_LEN: usize = 128;
/// Bytes kept of a DNS reply's payload: the classic UDP DNS message limit (RFC 1035); the
/// answers a resolver puts first fit in it, and a longer reply is parsed as far as it goes.
pub const DNS_PAYLOAD_LEN: usize = 512;
/// Bytes kept of the executed file's name (its dentry) in an exec event.
pub const EXE_NAME_LEN: usize = 32;
/// Bytes of a name in the kernel's exec denylist (`DENY_NAMES`): 15 and a NUL, like `comm`.
pub const DENY_NAME_LEN: usize = 16;
/// Directory names kept of a relative open's base directory (innermost first).
pub const BASE_DEPTH: usize = 4;
/// Bytes kept of each of those names.
pub const BASE_NAME_LEN: usize = 32;

pub mod toolchain;

/// Names of the maps and globals the agent looks up in the eBPF object.
pub mod names {
    pub const EVENTS: &str = "EVENTS";
    pub const MONITORED_CGROUPS: &str = "MONITORED_CGROUPS";
    pub const DROPPED: &str = "DROPPED";
    pub const PARENTS: &str = "PARENTS";
    pub const FORK_PARENT_PID_OFFSET: &str = "FORK_PARENT_PID_OFFSET";
    pub const FORK_CHILD_PID_OFFSET: &str = "FORK_CHILD_PID_OFFSET";
    pub const RULE_MODES: &str = "RULE_MODES";
    pub const ALLOW_V4: &str = "ALLOW_V4";
    pub const ALLOW_V6: &str = "ALLOW_V6";
    pub const LSM_ENFORCED: &str = "LSM_ENFORCED";
    pub const GUARD_LEVELS: &str = "GUARD_LEVELS";
    pub const GUARD_PATHS: &str = "GUARD_PATHS";
    pub const GUARD_EPOCH: &str = "GUARD_EPOCH";
    pub const TRACKED: &str = "TRACKED";
    pub const DENY_NAMES: &str = "DENY_NAMES";
    pub const CONTROL: &str = "CONTROL";
    pub const FILTERED: &str = "FILTERED";
    pub const KERNEL_OFFSETS: &str = "KERNEL_OFFSETS";
}

/// Index of a switch in the `CONTROL` array map (written by the agent).
pub mod control {
    /// What the exec tracepoint does to a denylisted program: an [`super::exec_action`].
    pub const EXEC_STOP: u32 = 0;
    /// 1: only opens the policy needs reach the ring buffer; 0: every open (`--events`).
    pub const OPEN_FILTER: u32 = 1;
    /// 1: opens under /dev/ and /tmp/.X11-unix pass the filter (the moltbot profile).
    pub const WATCH_DEVICES: u32 = 2;
    /// 1: connects the allowlist covers (loopback, allowlisted) stay out of the ring buffer;
    /// 0: every connect (`--events`).
    pub const CONNECT_FILTER: u32 = 3;
    pub const COUNT: u32 = 4;
}

/// Index of a kind's counter in the `FILTERED` per-CPU array: records the kernel kept out of
/// the ring buffer because the policy does not need them.
pub mod filtered {
    pub const OPEN: u32 = 0;
    pub const CONNECT: u32 = 1;
    pub const COUNT: u32 = 2;
}

/// What the kernel did to a newly executed program before its first instruction
/// ([`ExecEvent::kernel_action`]; also the value of `control::EXEC_STOP`).
pub mod exec_action {
    pub const NONE: u32 = 0;
    /// SIGSTOP: it waits, stopped, for the agent's judgement.
    pub const STOPPED: u32 = 1;
    /// SIGKILL (`--rule exec=block`): it never runs.
    pub const KILLED: u32 = 2;
}

/// Bits of [`ExecEvent::exe_flags`]: what the kernel read of the executed file.
pub mod exe_flag {
    /// `exe_ino`, `exe_dev`, `exe_nlink` and `exe_name` were read from the task's
    /// `mm->exe_file` at `sched_process_exec`.
    pub const KNOWN: u32 = 1;
    /// The file has no name left in any directory (`i_nlink` 0): a memfd or a deleted file.
    pub const UNLINKED: u32 = 2;
    /// A `memfd_create` file (its dentry is named `memfd:…`).
    pub const MEMFD: u32 = 4;
}

/// Bits of [`OpenEvent::base_flags`]: what the kernel knows of a relative open's base.
pub mod open_base {
    /// `base` holds the names of the base directory (cwd or dirfd) up to its filesystem's
    /// root, innermost first.
    pub const KNOWN: u32 = 1;
    /// The base directory is in a procfs.
    pub const PROC: u32 = 2;
}

/// Byte offsets of the kernel struct fields the programs read, computed by the agent from
/// `/sys/kernel/btf/vmlinux` (Aya has no CO-RE relocation) and passed in as a global.
/// `valid` is 0 when they could not be computed: the programs then read nothing through them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub valid: u32,
    pub task_mm: u32,
    pub task_fs: u32,
    pub task_files: u32,
    pub mm_exe_file: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub file_path: u32,
    pub file_inode: u32,
    pub path_dentry: u32,
    pub inode_ino: u32,
    pub inode_sb: u32,
    pub inode_nlink: u32,
    pub sb_dev: u32,
    pub sb_magic: u32,
    pub dentry_name: u32,
    pub dentry_parent: u32,
    pub dentry_sb: u32,
    pub qstr_name: u32,
    pub fs_pwd: u32,
    pub files_fdt: u32,
    pub fdt_max_fds: u32,
    pub fdt_fd: u32,
    pub _pad: u32,
}

/// A policy rule of ASF-42, for the kernel and the agent alike: its discriminant is its
/// index in the `RULE_MODES` array map.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(serde::Serialize))]
#[cfg_attr(feature = "user", serde(rename_all = "snake_case"))]
pub enum RuleName {
    Mount = 0,
    Exec = 1,
    Ptrace = 2,
    ProcOpen = 3,
    Socket = 4,
    Connect = 5,
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
    pub const fn id(self) -> u32 {
        self as u32
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

/// The rule indexes as the kernel programs spell them, from [`RuleName`].
pub mod rule {
    use super::RuleName;
    pub const MOUNT: u32 = RuleName::Mount.id();
    pub const EXEC: u32 = RuleName::Exec.id();
    pub const PTRACE: u32 = RuleName::Ptrace.id();
    pub const PROC_OPEN: u32 = RuleName::ProcOpen.id();
    pub const SOCKET: u32 = RuleName::Socket.id();
    pub const CONNECT: u32 = RuleName::Connect.id();
    pub const COUNT: u32 = RuleName::ALL.len() as u32;
}

/// Value of a rule in `RULE_MODES`: what the kernel side does on a match.
pub mod mode {
    /// Nothing at all.
    pub const OFF: u32 = 0;
    /// Record it (audit log), no alert.
    pub const LOG: u32 = 1;
    /// Alert.
    pub const ALERT: u32 = 2;
    /// Would block: let the call through, report it as an audit verdict.
    pub const AUDIT: u32 = 3;
    /// Stop the call (or kill the caller where no layer can stop it).
    pub const BLOCK: u32 = 4;
}

/// Kind of a ring-buffer record; the value of [`EventHeader::kind`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Exec = 1,
    Open = 2,
    Connect = 3,
    Ptrace = 4,
    Mount = 5,
    /// A cgroup-hook decision on a connect, UDP send or socket creation.
    NetPolicy = 6,
    /// A watched syscall that returned EPERM/EACCES (refused by seccomp, capabilities or
    /// another layer before any entry hook saw it).
    Refused = 7,
    /// A UDP datagram from port 53 delivered to the guarded container: a DNS reply.
    DnsReply = 8,
    /// A process of the container left its cgroup subtree (moved to another cgroup).
    Escape = 9,
    /// A packet leaving the container to a destination outside the allowlist (seen at the
    /// cgroup's egress, whatever socket sent it).
    Packet = 10,
    /// A symbolic link made in the container (its target may lead into /proc).
    Link = 11,
}

impl EventKind {
    pub const ALL: [EventKind; 11] = [
        EventKind::Exec,
        EventKind::Open,
        EventKind::Connect,
        EventKind::Ptrace,
        EventKind::Mount,
        EventKind::NetPolicy,
        EventKind::Refused,
        EventKind::DnsReply,
        EventKind::Escape,
        EventKind::Packet,
        EventKind::Link,
    ];

    pub fn from_u32(value: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| *kind as u32 == value)
    }

    pub fn name(self) -> &'static str {
        match self {
            EventKind::Exec => "exec",
            EventKind::Open => "open",
            EventKind::Connect => "connect",
            EventKind::Ptrace => "ptrace",
            EventKind::Mount => "mount",
            EventKind::NetPolicy => "net_policy",
            EventKind::Refused => "refused",
            EventKind::DnsReply => "dns_reply",
            EventKind::Escape => "escape",
            EventKind::Packet => "packet",
            EventKind::Link => "link",
        }
    }
}

/// What the kernel side did about an event (the `verdict` fields carry its discriminant).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize))]
#[cfg_attr(feature = "user", serde(rename_all = "snake_case"))]
pub enum Verdict {
    /// Observed only.
    None = 0,
    Log = 1,
    Alert = 2,
    /// Would have been blocked; let through (audit mode).
    Audit = 3,
    /// Stopped before it took effect.
    Blocked = 4,
    /// No layer could stop it: the caller was sent SIGKILL (the call may have completed).
    Killed = 5,
}

impl Verdict {
    /// An unknown value reads as observed-only.
    pub fn from_raw(raw: u32) -> Self {
        [
            Verdict::Log,
            Verdict::Alert,
            Verdict::Audit,
            Verdict::Blocked,
            Verdict::Killed,
        ]
        .into_iter()
        .find(|v| *v as u32 == raw)
        .unwrap_or(Verdict::None)
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

/// The verdict values as the kernel programs spell them, from [`Verdict`].
pub mod verdict {
    use super::Verdict;
    pub const NONE: u32 = Verdict::None as u32;
    pub const LOG: u32 = Verdict::Log as u32;
    pub const ALERT: u32 = Verdict::Alert as u32;
    pub const AUDIT: u32 = Verdict::Audit as u32;
    pub const BLOCKED: u32 = Verdict::Blocked as u32;
    pub const KILLED: u32 = Verdict::Killed as u32;
}

/// Which cgroup hook a [`NetPolicyEvent`] came from.
pub mod net_op {
    pub const CONNECT4: u32 = 0;
    pub const CONNECT6: u32 = 1;
    pub const SENDMSG4: u32 = 2;
    pub const SENDMSG6: u32 = 3;
    pub const SOCK_CREATE: u32 = 4;
}

/// How an [`EscapeEvent`] was noticed.
pub mod escape_how {
    /// The `cgroup/cgroup_attach_task` tracepoint: the move itself.
    pub const ATTACH: u32 = 0;
    /// A watched syscall of a tracked process found outside the guarded subtree.
    pub const SYSCALL: u32 = 1;
    /// A socket created by a tracked process outside the guarded subtree (refused).
    pub const SOCKET: u32 = 2;
}

/// Which syscall an exec event came from.
pub const EXEC_VIA_EXECVE: u32 = 0;
pub const EXEC_VIA_EXECVEAT: u32 = 1;

/// Common header of every record (56 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// An [`EventKind`] value.
    pub kind: u32,
    /// Size in bytes of the whole record, header included.
    pub size: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the syscall entered.
    pub ts_ns: u64,
    /// Thread id (kernel `pid`).
    pub pid: u32,
    /// Process id (kernel `tgid`).
    pub tgid: u32,
    /// Id of the task that forked this one, when the fork happened inside a monitored
    /// cgroup; 0 when unknown (the agent then reads `/proc`).
    pub ppid: u32,
    pub uid: u32,
    /// cgroup v2 id (inode of the cgroup2 directory) of the calling task.
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    pub header: EventHeader,
    /// [`EXEC_VIA_EXECVE`] or [`EXEC_VIA_EXECVEAT`].
    pub via: u32,
    /// `dirfd` of execveat (AT_FDCWD for execve).
    pub dirfd: i32,
    /// `flags` of execveat (0 for execve).
    pub flags: u32,
    /// Number of valid entries in `argv` (at most [`ARGV_COUNT`]).
    pub argc: u32,
    /// Length of `filename` without the NUL (0 when unreadable).
    pub filename_len: u32,
    /// Lengths of each `argv` entry without the NUL.
    pub argv_len: [u32; ARGV_COUNT],
    /// 0 when the program was executed, else the negative errno the exec failed with.
    pub ret: i32,
    pub filename: [u8; PATH_LEN],
    pub argv: [[u8; ARG_LEN]; ARGV_COUNT],
    /// An [`exec_action`]: what the kernel did to the new program.
    pub kernel_action: u32,
    /// [`exe_flag`] bits.
    pub exe_flags: u32,
    /// Inode number of the executed file (valid with [`exe_flag::KNOWN`]).
    pub exe_ino: u64,
    /// Its device (`s_dev` of its superblock, the kernel's encoding).
    pub exe_dev: u32,
    pub exe_nlink: u32,
    /// Its dentry's name (`memfd:NAME` for a memfd).
    pub exe_name: [u8; EXE_NAME_LEN],
    /// `bpf_ktime_get_ns()` when the kernel stopped or killed the program (0: it did not).
    pub action_ts_ns: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OpenEvent {
    pub header: EventHeader,
    pub dirfd: i32,
    pub flags: i32,
    pub mode: u32,
    pub path_len: u32,
    pub path: [u8; PATH_LEN],
    /// [`open_base`] bits (0 for an absolute path, or when nothing was read).
    pub base_flags: u32,
    /// Valid entries in `base`.
    pub base_depth: u32,
    /// Names of the base directory and its parents, innermost first.
    pub base: [[u8; BASE_NAME_LEN]; BASE_DEPTH],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnectEvent {
    pub header: EventHeader,
    pub fd: i32,
    /// `sa_family` of the socket address (AF_INET = 2, AF_INET6 = 10, AF_UNIX = 1, …).
    pub family: u16,
    /// Destination port in host byte order (0 for non-IP families).
    pub port: u16,
    /// IPv4 in the first 4 bytes, or the 16 IPv6 bytes, network order.
    pub addr: [u8; 16],
    pub addrlen: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PtraceEvent {
    pub header: EventHeader,
    pub request: i64,
    pub target_pid: i64,
    pub addr: u64,
    pub data: u64,
    /// A [`verdict`] value.
    pub verdict: u32,
    pub _pad: u32,
}

/// symlink / symlinkat: the target as given and the new link's path (relative to `dirfd`
/// when not absolute).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LinkEvent {
    pub header: EventHeader,
    pub target: [u8; PATH_LEN],
    pub link: [u8; PATH_LEN],
    pub target_len: u32,
    pub link_len: u32,
    pub dirfd: i32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MountEvent {
    pub header: EventHeader,
    pub flags: u64,
    pub source_len: u32,
    pub target_len: u32,
    pub fstype_len: u32,
    /// A [`verdict`] value.
    pub verdict: u32,
    /// fsmount's mount attributes (`MOUNT_ATTR_*`); 0 for the other calls.
    pub attr_flags: u64,
    /// The descriptor the source is taken from: move_mount's `from_dfd`, fsmount's `fs_fd`;
    /// `AT_FDCWD` (-100) for mount(2).
    pub from_fd: i32,
    /// move_mount's `to_dfd`; `AT_FDCWD` for mount(2), -1 for fsmount (no target yet).
    pub to_fd: i32,
    pub source: [u8; MOUNT_STR_LEN],
    pub target: [u8; MOUNT_STR_LEN],
    pub fstype: [u8; FSTYPE_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NetPolicyEvent {
    pub header: EventHeader,
    /// [`rule::CONNECT`] or [`rule::SOCKET`].
    pub rule: u32,
    pub verdict: u32,
    /// A [`net_op`] value.
    pub op: u32,
    pub family: u32,
    pub sock_type: u32,
    pub protocol: u32,
    /// Destination port, host order (0 for socket creation).
    pub port: u16,
    pub _pad: u16,
    pub _pad2: u32,
    /// IPv4 in the first 4 bytes or the IPv6 address, network order.
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RefusedEvent {
    pub header: EventHeader,
    /// [`rule::MOUNT`] or [`rule::PTRACE`].
    pub rule: u32,
    pub _pad: u32,
    /// The syscall's return value (negative errno).
    pub ret: i64,
}

/// A DNS reply seen at the container's cgroup ingress. The header's pid, tgid, ppid, uid and
/// comm are 0: the packet is delivered in softirq context, not by a task of the container.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DnsReplyEvent {
    pub header: EventHeader,
    /// 4 or 6: the IP version the reply came over.
    pub ip_version: u32,
    /// Bytes of `payload` that hold the DNS message (at most [`DNS_PAYLOAD_LEN`]).
    pub payload_len: u32,
    /// The interface the packet came in on (1 is loopback in every network namespace): a
    /// reply "from" a non-loopback resolver that came over loopback was sent by the
    /// container to itself.
    pub ingress_ifindex: u32,
    pub _pad: u32,
    /// The resolver's address: IPv4 in the first 4 bytes or the IPv6 address, network order.
    pub source: [u8; 16],
    /// The DNS message from its header on (the UDP header stripped).
    pub payload: [u8; DNS_PAYLOAD_LEN],
}

/// A guarded process found outside the guarded cgroup subtree. The header is the task that
/// moved it (or, for [`escape_how::SYSCALL`]/[`escape_how::SOCKET`], the process itself).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EscapeEvent {
    pub header: EventHeader,
    /// An [`escape_how`] value.
    pub how: u32,
    /// The process that left (a tgid; the task id of a moved thread for `cgroup.threads`).
    pub moved_pid: u32,
    /// The guarded cgroup it belonged to.
    pub guard_id: u64,
    /// The cgroup it is in now (0 when unknown).
    pub dst_id: u64,
    /// Depth of that cgroup (root is 0), -1 when unknown.
    pub dst_level: i32,
    /// A [`verdict`] value: [`verdict::KILLED`] when the kernel sent SIGKILL itself.
    pub verdict: u32,
    pub path_len: u32,
    pub _pad: u32,
    /// The destination cgroup's path from the cgroup2 root (attach only).
    pub dst_path: [u8; CGROUP_PATH_LEN],
}

/// A packet seen at the container's cgroup egress that the allowlist does not cover.
/// Rate-limited in the kernel: one record per destination and protocol a second, with the
/// number of packets not reported since the last one.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PacketEvent {
    pub header: EventHeader,
    /// A [`verdict`] value (what the connect rule's mode made of it).
    pub verdict: u32,
    /// 4 or 6.
    pub ip_version: u32,
    /// IP protocol number (1 ICMP, 6 TCP, 17 UDP, 58 ICMPv6, …).
    pub protocol: u32,
    /// Type of the sending socket (1 stream, 2 datagram, 3 raw), 0 when unknown.
    pub sock_type: u32,
    /// Destination port for TCP/UDP (host order), 0 otherwise.
    pub port: u16,
    pub _pad: u16,
    /// Packets to this destination not reported since the previous record.
    pub suppressed: u32,
    /// IPv4 in the first 4 bytes or the IPv6 address, network order.
    pub addr: [u8; 16],
}

/// The guarded cgroup's path as the kernel writes it in `cgroup_attach_task` records, for
/// telling moves inside the guarded subtree from moves out of it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GuardPath {
    pub id: u64,
    pub len: u32,
    pub _pad: u32,
    pub path: [u8; CGROUP_PATH_LEN],
}

#[cfg(feature = "user")]
mod pod {
    //! Every event is `#[repr(C)]`, `Copy`, made of integers and byte arrays with explicit
    //! padding fields: any bit pattern is a valid value, which is what `Pod` requires.
    use super::*;
    // SAFETY: repr(C) integers and byte arrays, padding explicit (see above).
    unsafe impl aya::Pod for EventHeader {}
    // SAFETY: repr(C) integers and byte arrays, padding explicit (see above).
    unsafe impl aya::Pod for ExecEvent {}
    // SAFETY: repr(C) integers and byte arrays, padding explicit (see above).
    unsafe impl aya::Pod for OpenEvent {}
    // SAFETY: repr(C) integers and byte arrays, padding explicit (see above).
    unsafe impl aya::Pod for ConnectEvent {}
    // SAFETY: repr(C) integers and byte arrays, padding explicit (see above).
    unsafe impl aya::Pod for PtraceEvent {}
    // SAFETY: repr(C) integers and byte arrays, padding explicit (see above).
    unsafe impl aya::Pod for LinkEvent {}
    // SAFETY: repr(C) integers and byte arrays, padding explicit (see above).
    unsafe impl aya::Pod for MountEvent {}
    // SAFETY: repr(C) integers and byte arrays, padding explicit (see above).
    unsafe impl aya::Pod for NetPolicyEvent {}
    // SAFETY: repr(C) integers and byte arrays, padding explicit (see above).
    unsafe impl aya::Pod for RefusedEvent {}
    // SAFETY: repr(C) integers and byte arrays, padding explicit (see above).
    unsafe impl aya::Pod for DnsReplyEvent {}
    // SAFETY: repr(C) integers and byte arrays, padding explicit (see above).
    unsafe impl aya::Pod for EscapeEvent {}
    // SAFETY: repr(C) integers and byte arrays, padding explicit (see above).
    unsafe impl aya::Pod for PacketEvent {}
    // SAFETY: repr(C) integers and byte arrays, padding explicit (see above).
    unsafe impl aya::Pod for GuardPath {}
    // SAFETY: repr(C) integers, padding explicit.
    unsafe impl aya::Pod for KernelOffsets {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(size_of::<EventHeader>(), 56);
        assert_eq!(
            size_of::<ExecEvent>(),
            56 + 10 * 4 + PATH_LEN + ARGV_COUNT * ARG_LEN + 24 + EXE_NAME_LEN + 8
        );
        assert_eq!(
            size_of::<OpenEvent>(),
            56 + 16 + PATH_LEN + 8 + BASE_DEPTH * BASE_NAME_LEN
        );
        assert_eq!(size_of::<KernelOffsets>(), 24 * 4);
        assert_eq!(size_of::<ConnectEvent>(), 56 + 8 + 16 + 8);
        assert_eq!(size_of::<PtraceEvent>(), 56 + 40);
        assert_eq!(size_of::<LinkEvent>(), 56 + 2 * PATH_LEN + 16);
        assert_eq!(size_of::<NetPolicyEvent>(), 56 + 48);
        assert_eq!(size_of::<RefusedEvent>(), 56 + 16);
        assert_eq!(size_of::<DnsReplyEvent>(), 56 + 32 + DNS_PAYLOAD_LEN);
        assert_eq!(size_of::<EscapeEvent>(), 56 + 40 + CGROUP_PATH_LEN);
        assert_eq!(size_of::<PacketEvent>(), 56 + 24 + 16);
        assert_eq!(size_of::<GuardPath>(), 16 + CGROUP_PATH_LEN);
        assert_eq!(
            size_of::<MountEvent>(),
            56 + 40 + 2 * MOUNT_STR_LEN + FSTYPE_LEN
        );
    }

    #[test]
    fn kinds_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_u32(kind as u32), Some(kind));
        }
        assert_eq!(EventKind::from_u32(0), None);
        assert_eq!(EventKind::from_u32(99), None);
    }
}
