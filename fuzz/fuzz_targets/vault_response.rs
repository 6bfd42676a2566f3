//! Vault answers: interpretation (KV v1/v2 shape, leases, certificate expiry, KV v2 metadata)
//! and the schedule derived from them must never panic, whatever the numbers.
#![no_main]

use std::time::{Instant, SystemTime};

use libfuzzer_sys::fuzz_target;
use vaultlet_agent::client::Response;
use vaultlet_agent::fetch::{interpret, parse_kv2_meta};
use vaultlet_agent::renew::{backoff, cert_refresh_delay, next_refetch, next_renewal};

fuzz_target!(|data: &[u8]| {
    let Ok(resp) = serde_json::from_slice::<Response>(data) else {
        return;
    };
    if let Some(d) = &resp.data {
        let _ = parse_kv2_meta(d);
    }
    let now = Instant::now();
    let wall = SystemTime::now();
    let jitter = data.first().map_or(0.5, |&b| f64::from(b) / 255.0);
    if let Some(f) = interpret(resp) {
        if let Some(lease) = &f.lease {
            let _ = next_renewal(lease.ttl, now, jitter);
            let _ = next_refetch(lease.ttl, now, jitter);
            let _ = backoff(data.len() as u32, lease.ttl, lease.ttl, jitter);
        }
        if let Some(exp) = f.expires_at {
            let _ = cert_refresh_delay(wall, exp, wall);
            let _ = cert_refresh_delay(exp, wall, wall);
        }
    }
});
