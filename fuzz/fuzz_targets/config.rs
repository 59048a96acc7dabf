//! `monitor.yml` is operator text but parsed by a YAML library with its own surprises: any
//! text must parse or be refused with a location, never panic, and whatever parses must lay
//! over the defaults and yield a log pattern set that compiles.
#![no_main]

use std::path::Path;

use crabpot_agent::{
    ConfigError, LogScanner, MonitorConfig, Policy, TrustScore, apply_file, parse_config_file,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = match parse_config_file(Path::new("monitor.yml"), text) {
        Ok(file) => file,
        Err(ConfigError::Invalid { line, column, .. }) => {
            assert!(line >= 1 && column >= 1, "error location {line}:{column}");
            return;
        }
        Err(error) => panic!("parsing text cannot fail to read: {error}"),
    };
    let mut monitor = MonitorConfig::default();
    let mut policy = Policy::default();
    let mut trust = TrustScore::default();
    apply_file(&mut monitor, &mut policy, &mut trust, &file);
    let profiles: Vec<&str> = file.profiles.iter().flatten().map(|p| p.name()).collect();
    let _policy = policy.with_profiles(&profiles);
    // Each pattern compiled on its own when parsed; together they must compile too.
    if let Err(error) = LogScanner::new(&monitor.log_patterns) {
        panic!("patterns accepted one by one but not as a set: {error}");
    }
});
