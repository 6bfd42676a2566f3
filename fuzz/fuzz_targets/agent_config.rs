//! Agent config parsing (JSON and YAML, then validation) and durations must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaultlet_agent::cli::parse_config_text;
use vaultlet_agent::config::parse_duration;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_duration(text);
    if let Ok(cfg) = parse_config_text(text) {
        // A valid config survives its own JSON round trip.
        let again = parse_config_text(&cfg.to_json()).expect("round trip");
        assert_eq!(again, cfg);
    }
});
