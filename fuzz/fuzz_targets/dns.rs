//! DNS replies are bytes from the network on the container's behalf: parsing any of them
//! must return a reply or a `DnsError`, never panic, and every address it resolves the
//! question to must be one of the reply's own answers.
#![no_main]

use crabpot_agent::{RecordData, parse_reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(reply) = parse_reply(data) else {
        return;
    };
    assert!(reply.question.len() <= 4 * 255, "{}", reply.question);
    for resolved in reply.resolved() {
        assert!(
            reply
                .answers
                .iter()
                .any(|r| r.data == RecordData::Address(resolved.address) && r.ttl >= resolved.ttl),
            "{resolved:?} not among {reply:?}"
        );
    }
});
