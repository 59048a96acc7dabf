//! Container output is attacker-controlled: split into lines in arbitrary chunks, matched
//! against the pattern set and cut for the alert. Nothing may panic, lines must not be lost
//! or invented by the chunking, and a cut line keeps at most `max` characters and says how
//! many bytes it dropped.
#![no_main]

use std::sync::OnceLock;

use crabpot_agent::{LineSplitter, LogScanner, cut, default_log_patterns};
use libfuzzer_sys::fuzz_target;

fn scanner() -> &'static LogScanner {
    static SCANNER: OnceLock<LogScanner> = OnceLock::new();
    SCANNER.get_or_init(|| LogScanner::new(&default_log_patterns()).expect("defaults compile"))
}

fuzz_target!(|data: &[u8]| {
    // First byte: the chunk size; second: the cut length; the rest is the output.
    let [chunk, max, output @ ..] = data else {
        return;
    };
    let chunk = usize::from(*chunk).max(1);
    let max = usize::from(*max);
    let mut chunked = LineSplitter::default();
    let mut whole = LineSplitter::default();
    let mut lines = Vec::new();
    for piece in output.chunks(chunk) {
        lines.extend(chunked.push(piece));
    }
    // Short outputs never hit the partial-line bound, so chunking must not matter.
    assert_eq!(lines, whole.push(output), "chunking changed the lines");
    for line in &lines {
        let _ = scanner().scan(line);
        // Whole when it fits; otherwise the first `max` characters and a marker naming how
        // many bytes were cut.
        let shown = cut(line, max);
        if line.chars().count() <= max {
            assert_eq!(shown, *line);
        } else {
            let kept: String = line.chars().take(max).collect();
            let marker = shown.strip_prefix(kept.as_str()).expect("keeps the first max chars");
            let dropped = line.len() - kept.len();
            assert_eq!(marker, format!("…[truncated {dropped} bytes]"));
        }
    }
});
