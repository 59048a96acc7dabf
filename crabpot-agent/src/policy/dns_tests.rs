use super::*;

fn name(wire: &mut Vec<u8>, name: &str) {
    for label in name.split('.') {
        wire.push(label.len() as u8);
        wire.extend_from_slice(label.as_bytes());
    }
    wire.push(0);
}

fn header(answers: u16) -> Vec<u8> {
    let mut msg = vec![0x12, 0x34, 0x81, 0x80, 0, 1];
    msg.extend_from_slice(&answers.to_be_bytes());
    msg.extend_from_slice(&[0, 0, 0, 0]);
    msg
}

/// A reply to `question` with the answer records given as (owner wire bytes, type, rdata).
fn reply(question: &str, records: &[(Vec<u8>, u16, u32, Vec<u8>)]) -> Vec<u8> {
    let mut msg = header(records.len() as u16);
    name(&mut msg, question);
    msg.extend_from_slice(&[0, 1, 0, 1]);
    for (owner, rtype, ttl, rdata) in records {
        msg.extend_from_slice(owner);
        msg.extend_from_slice(&rtype.to_be_bytes());
        msg.extend_from_slice(&[0, 1]);
        msg.extend_from_slice(&ttl.to_be_bytes());
        msg.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        msg.extend_from_slice(rdata);
    }
    msg
}

/// A pointer to the question name (always at offset 12).
const TO_QUESTION: [u8; 2] = [0xc0, 12];

#[test]
fn a_and_aaaa_answers_through_compression_pointers() {
    let v6: Ipv6Addr = "2001:db8::7".parse().expect("v6");
    let msg = reply(
        "Api.Example.com",
        &[
            (TO_QUESTION.to_vec(), TYPE_A, 300, vec![93, 184, 216, 34]),
            (TO_QUESTION.to_vec(), TYPE_AAAA, 60, v6.octets().to_vec()),
        ],
    );
    let parsed = parse_reply(&msg).expect("reply");
    assert_eq!(parsed.question, "api.example.com");
    let resolved = parsed.resolved();
    assert_eq!(
        resolved,
        vec![
            Resolved {
                address: "93.184.216.34".parse().expect("ip"),
                ttl: 300
            },
            Resolved {
                address: IpAddr::V6(v6),
                ttl: 60
            },
        ]
    );
}

#[test]
fn cname_chains_are_followed_with_the_smallest_ttl() {
    let mut alias = Vec::new();
    name(&mut alias, "edge.cdn.net");
    // The alias's own record points at the CNAME's rdata (offset of that rdata).
    let question_len = "api.example.com".len() + 2 + 4;
    let alias_at = (12 + question_len + 2 + 10) as u8;
    let msg = reply(
        "api.example.com",
        &[
            (TO_QUESTION.to_vec(), TYPE_CNAME, 120, alias.clone()),
            (vec![0xc0, alias_at], TYPE_A, 600, vec![198, 51, 100, 9]),
            // An address for a name outside the chain is not this question's answer.
            (alias, TYPE_A, 600, vec![203, 0, 113, 1]),
        ],
    );
    let parsed = parse_reply(&msg).expect("reply");
    assert_eq!(
        parsed.answers[0].data,
        RecordData::Alias("edge.cdn.net".into())
    );
    let resolved = parsed.resolved();
    assert_eq!(resolved.len(), 2, "{parsed:?}");
    assert_eq!(
        resolved[0].address,
        "198.51.100.9".parse::<IpAddr>().expect("ip")
    );
    assert_eq!(resolved[0].ttl, 120);
}

#[test]
fn a_cname_loop_ends() {
    let mut a = Vec::new();
    name(&mut a, "a.test");
    let mut b = Vec::new();
    name(&mut b, "b.test");
    let msg = reply(
        "a.test",
        &[
            (a.clone(), TYPE_CNAME, 60, b.clone()),
            (b, TYPE_CNAME, 60, a),
        ],
    );
    let parsed = parse_reply(&msg).expect("reply");
    assert!(parsed.resolved().is_empty());
}

#[test]
fn pointer_loops_and_forward_pointers_are_refused() {
    // A pointer to itself, and one pointing forwards.
    let mut msg = header(0);
    msg.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(parse_reply(&msg), Err(DnsError::BadName));
    let mut msg = header(0);
    msg.extend_from_slice(&[0xc0, 20, 0, 1, 0, 1, 0, 0, 0]);
    assert_eq!(parse_reply(&msg), Err(DnsError::BadName));
    // Two labels pointing at each other: the second points back to the first, the first
    // forward to the second.
    let mut msg = header(0);
    msg.extend_from_slice(&[1, b'x', 0xc0, 14, 0xc0, 12]);
    assert_eq!(read_name(&msg, 12), Err(DnsError::BadName));
}

#[test]
fn long_pointer_chains_are_bounded() {
    let mut msg = header(0);
    msg.extend_from_slice(&[1, b'x', 0]);
    // Each pointer points at the previous one: backwards, but too many.
    let first = msg.len();
    msg.extend_from_slice(&[0xc0, 12]);
    for i in 0..40 {
        let previous = (first + i * 2) as u8;
        msg.extend_from_slice(&[0xc0, previous]);
    }
    assert_eq!(
        read_name(&msg, msg.len() - 2).map(|(n, _)| n),
        Err(DnsError::BadName)
    );
    assert_eq!(read_name(&msg, first + 4).map(|(n, _)| n), Ok("x".into()));
}

#[test]
fn truncated_messages_keep_whole_records_and_never_panic() {
    let msg = reply(
        "example.com",
        &[
            (TO_QUESTION.to_vec(), TYPE_A, 300, vec![192, 0, 2, 1]),
            (TO_QUESTION.to_vec(), TYPE_A, 300, vec![192, 0, 2, 2]),
        ],
    );
    for cut in 0..msg.len() {
        let _ = parse_reply(&msg[..cut]);
    }
    let parsed = parse_reply(&msg[..msg.len() - 1]).expect("first record whole");
    assert_eq!(parsed.resolved().len(), 1);
    assert_eq!(parse_reply(&msg[..5]), Err(DnsError::Short));
}

#[test]
fn queries_odd_names_and_other_types() {
    let mut query = reply("example.com", &[]);
    query[2] = 0x01; // QR clear
    assert_eq!(parse_reply(&query), Err(DnsError::NotReply));
    let mut msg = header(1);
    msg.extend_from_slice(&[3, b'a', b'.', 0xff, 0, 0, 1, 0, 1]);
    msg.extend_from_slice(&TO_QUESTION);
    msg.extend_from_slice(&[0, 16, 0, 1, 0, 0, 0, 60, 0, 2, 1, b'x']); // TXT
    let parsed = parse_reply(&msg).expect("reply");
    assert_eq!(parsed.question, "a\\046\\255");
    assert!(parsed.answers.is_empty());
    // A name over 255 bytes.
    let mut msg = header(0);
    for _ in 0..5 {
        msg.push(63);
        msg.extend_from_slice(&[b'a'; 63]);
    }
    msg.push(0);
    assert_eq!(parse_reply(&msg), Err(DnsError::BadName));
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap deterministic fuzz pass (the fuzz target does this properly).
    let mut state: u32 = 0x9e37_79b9;
    for _ in 0..20_000 {
        let len = (state % 96) as usize;
        let mut msg = Vec::with_capacity(len);
        for _ in 0..len {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            msg.push(state as u8);
        }
        if msg.len() > 3 {
            msg[2] |= 0x80;
        }
        if let Ok(reply) = parse_reply(&msg) {
            let _ = reply.resolved();
        }
    }
}
