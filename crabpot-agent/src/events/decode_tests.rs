use std::{mem::size_of, net::IpAddr};

use crabpot_common::{
    ARG_LEN, COMM_LEN, ConnectEvent, EventHeader, ExecEvent, OpenEvent, PATH_LEN,
};

use super::*;
use crate::model::event::KernelAction;

fn as_bytes<T: aya::Pod>(value: &T) -> Vec<u8> {
    // SAFETY: T is plain old data; we copy its bytes.
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref(value).cast::<u8>(), size_of::<T>()) }
        .to_vec()
}

fn raw_header(kind: EventKind, size: usize) -> EventHeader {
    let mut comm = [0u8; COMM_LEN];
    comm[..2].copy_from_slice(b"sh");
    EventHeader {
        kind: kind as u32,
        size: size as u32,
        ts_ns: 42,
        pid: 101,
        tgid: 100,
        ppid: 7,
        uid: 0,
        cgroup_id: 9999,
        comm,
    }
}

fn fixed<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out[..s.len()].copy_from_slice(s);
    out
}

fn exec_event() -> ExecEvent {
    let mut argv = [[0u8; ARG_LEN]; 4];
    argv[0] = fixed(b"cat");
    argv[1] = fixed(b"/etc/passwd");
    ExecEvent {
        header: raw_header(EventKind::Exec, size_of::<ExecEvent>()),
        via: 0,
        dirfd: -100,
        flags: 0,
        argc: 2,
        filename_len: 8,
        argv_len: [3, 11, 0, 0],
        ret: 0,
        filename: fixed::<PATH_LEN>(b"/bin/cat"),
        argv,
        kernel_action: 0,
        exe_flags: 0,
        exe_ino: 0,
        exe_dev: 0,
        exe_nlink: 0,
        exe_name: [0; 32],
        action_ts_ns: 0,
    }
}

#[test]
fn decodes_exec_with_argv() {
    let event = decode(&as_bytes(&exec_event())).expect("decodes");
    assert_eq!(event.header.comm, "sh");
    assert_eq!(event.header.pid, 101);
    assert_eq!(event.header.tgid, 100);
    assert_eq!(event.header.cgroup_id, 9999);
    assert_eq!(
        event.body,
        EventBody::Exec {
            syscall: "execve",
            dirfd: -100,
            flags: 0,
            filename: "/bin/cat".into(),
            argv: vec!["cat".into(), "/etc/passwd".into()],
            ret: 0,
            kernel_action: KernelAction::None,
            action_ts_ns: 0,
            exe: None,
        }
    );
}

#[test]
fn decodes_the_kernel_stop_and_the_executed_file() {
    let mut raw = exec_event();
    raw.kernel_action = crabpot_common::exec_action::STOPPED;
    raw.exe_flags = crabpot_common::exe_flag::KNOWN
        | crabpot_common::exe_flag::MEMFD
        | crabpot_common::exe_flag::UNLINKED;
    raw.exe_ino = 77;
    raw.exe_name = fixed(b"memfd:x");
    let event = decode(&as_bytes(&raw)).expect("decodes");
    let EventBody::Exec {
        kernel_action, exe, ..
    } = event.body
    else {
        panic!("not an exec: {:?}", event.body);
    };
    assert_eq!(kernel_action, KernelAction::Stopped);
    let exe = exe.expect("the kernel read the file");
    assert_eq!((exe.ino, exe.memfd, exe.unlinked), (77, true, true));
    assert_eq!(exe.name, "memfd:x");
}

#[test]
fn a_relative_open_carries_its_procfs_base_and_rejects_odd_names() {
    let mut raw = open_event(b"1/environ");
    raw.base_flags = crabpot_common::open_base::KNOWN | crabpot_common::open_base::PROC;
    raw.base_depth = 2;
    raw.base[0] = fixed(b"task");
    raw.base[1] = fixed(b"12");
    let base = |raw: &OpenEvent| match decode(&as_bytes(raw)).expect("decodes").body {
        EventBody::Open { base, .. } => base,
        other => panic!("not an open: {other:?}"),
    };
    assert_eq!(base(&raw).as_deref(), Some("/proc/12/task"));
    raw.base_depth = 0;
    assert_eq!(base(&raw).as_deref(), Some("/proc"));
    raw.base_depth = 1;
    raw.base[0] = fixed(b"..");
    assert_eq!(base(&raw), None, "a name the kernel never gives");
    raw.base_flags = crabpot_common::open_base::PROC;
    assert_eq!(base(&raw), None, "not read to the root");
}

fn open_event(path: &[u8]) -> OpenEvent {
    OpenEvent {
        header: raw_header(EventKind::Open, size_of::<OpenEvent>()),
        dirfd: -100,
        flags: 0,
        mode: 0,
        path_len: path.len() as u32,
        path: fixed(path),
        base_flags: 0,
        base_depth: 0,
        base: [[0; 32]; 4],
    }
}

#[test]
fn decodes_ipv4_connect_in_host_port_order() {
    let event = ConnectEvent {
        header: raw_header(EventKind::Connect, size_of::<ConnectEvent>()),
        fd: 3,
        family: 2,
        port: 18789,
        addr: fixed(&[172, 17, 0, 1]),
        addrlen: 16,
        _pad: 0,
    };
    let decoded = decode(&as_bytes(&event)).expect("decodes");
    assert_eq!(
        decoded.body,
        EventBody::Connect {
            fd: 3,
            family: 2,
            address: Some("172.17.0.1".parse().expect("ip")),
            port: 18789,
        }
    );
}

#[test]
fn decodes_ipv6_and_unix_connect() {
    let mut event = ConnectEvent {
        header: raw_header(EventKind::Connect, size_of::<ConnectEvent>()),
        fd: 3,
        family: 10,
        port: 443,
        addr: std::net::Ipv6Addr::LOCALHOST.octets(),
        addrlen: 28,
        _pad: 0,
    };
    let decoded = decode(&as_bytes(&event)).expect("decodes");
    assert!(matches!(decoded.body, EventBody::Connect { address: Some(a), .. } if a.is_loopback()));
    event.family = 1;
    let decoded = decode(&as_bytes(&event)).expect("decodes");
    assert!(matches!(
        decoded.body,
        EventBody::Connect { address: None, .. }
    ));
}

#[test]
fn lengths_beyond_the_buffer_are_clamped() {
    let mut event = exec_event();
    event.filename_len = u32::MAX;
    event.argc = 99;
    event.argv_len = [u32::MAX; 4];
    let decoded = decode(&as_bytes(&event)).expect("decodes");
    let EventBody::Exec { filename, argv, .. } = decoded.body else {
        panic!("not exec");
    };
    assert_eq!(filename, "/bin/cat");
    assert_eq!(argv.len(), 4);
}

#[test]
fn invalid_utf8_is_replaced_not_fatal() {
    let mut event = open_event(&[b'/', 0xff, 0xfe, b'x']);
    let decoded = decode(&as_bytes(&event)).expect("decodes");
    assert!(
        matches!(decoded.body, EventBody::Open { ref path, .. } if path == "/\u{fffd}\u{fffd}x")
    );
    event.path_len = 0;
    let decoded = decode(&as_bytes(&event)).expect("decodes");
    assert!(matches!(decoded.body, EventBody::Open { ref path, .. } if path.is_empty()));
}

#[test]
fn truncated_records_are_errors() {
    let bytes = as_bytes(&exec_event());
    for len in [0, 1, 55, 56, 100, bytes.len() - 1] {
        let err = decode(&bytes[..len]).expect_err("truncated");
        assert!(matches!(err, DecodeError::Truncated { .. }), "{len}: {err}");
    }
}

#[test]
fn unknown_kind_and_wrong_size_are_errors() {
    let mut event = exec_event();
    event.header.kind = 77;
    assert_eq!(decode(&as_bytes(&event)), Err(DecodeError::UnknownKind(77)));
    let mut event = exec_event();
    event.header.size = 12;
    assert!(matches!(
        decode(&as_bytes(&event)),
        Err(DecodeError::SizeMismatch { claimed: 12, .. })
    ));
}

#[test]
fn garbage_never_panics() {
    // A deterministic xorshift stream of garbage records of every length up to 700 bytes,
    // with the kind forced valid half of the time so the payload paths are exercised.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for len in 0..700usize {
        let mut bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        if len >= 8 && len % 2 == 0 {
            let kind = (len % 5 + 1) as u32;
            bytes[..4].copy_from_slice(&kind.to_ne_bytes());
            bytes[4..8].copy_from_slice(&(len as u32).to_ne_bytes());
        }
        let _ = decode(&bytes);
    }
}

#[test]
fn decodes_dns_replies_with_a_clamped_payload() {
    let mut payload = [0u8; crabpot_common::DNS_PAYLOAD_LEN];
    payload[..3].copy_from_slice(b"dns");
    let mut event = crabpot_common::DnsReplyEvent {
        header: raw_header(
            EventKind::DnsReply,
            size_of::<crabpot_common::DnsReplyEvent>(),
        ),
        ip_version: 6,
        payload_len: 3,
        ingress_ifindex: 1,
        _pad: 0,
        source: fixed(&[0x20, 0x01, 0x0d, 0xb8]),
        payload,
    };
    let decoded = decode(&as_bytes(&event)).expect("dns reply");
    assert_eq!(decoded.kind(), EventKind::DnsReply);
    let EventBody::DnsReply {
        resolver,
        via_loopback,
        payload,
    } = &decoded.body
    else {
        panic!("{decoded:?}");
    };
    assert_eq!(*resolver, Some("2001:db8::".parse().expect("ip")));
    assert!(*via_loopback);
    assert_eq!(payload, b"dns");
    let json = serde_json::to_value(&decoded).expect("serialises");
    assert_eq!(json["payload_len"], 3, "the bytes are not printed: {json}");
    // A length beyond the array is the array, never a panic.
    event.payload_len = u32::MAX;
    event.ip_version = 4;
    let decoded = decode(&as_bytes(&event)).expect("dns reply");
    assert!(matches!(
        decoded.body,
        EventBody::DnsReply { ref payload, resolver: Some(IpAddr::V4(_)), .. }
            if payload.len() == crabpot_common::DNS_PAYLOAD_LEN
    ));
}
