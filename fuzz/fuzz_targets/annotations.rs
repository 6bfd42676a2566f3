//! The annotation parser: any set of `vaultlet.io/*` annotations parses or is denied.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaultlet_injector::annotations::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // One annotation per line: `<key-suffix>=<value>`, the key prefixed with vaultlet.io/.
    let pairs: Vec<(String, String)> = text
        .split('\n')
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (format!("vaultlet.io/{k}"), v.replace("\\n", "\n")))
        .collect();
    let _ = parse(pairs.iter().map(|(k, v)| (k, v)));
});
