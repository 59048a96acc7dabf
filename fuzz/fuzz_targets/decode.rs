//! Ring-buffer records are bytes from the kernel side: decoding any of them must return an
//! event or a `DecodeError`, never panic, and a decoded event must serialise (as the event
//! printer and the alerts do) under its own kind.
#![no_main]

use crabpot_agent::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = decode(data) else {
        return;
    };
    let json = serde_json::to_value(&event).expect("a decoded event serialises");
    assert_eq!(json["kind"], event.kind().name(), "{json}");
});
