//! Pure schedule functions: when to renew a token or lease, when to fetch anew, backoff.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant, SystemTime};

/// The longest TTL or delay the agent schedules with (100 years). Vault answers and configs
/// beyond it (a `lease_duration` of `u64::MAX`, a certificate valid until 9999) are clamped,
/// so no time arithmetic can overflow.
pub const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + delay`, with the delay clamped to [`MAX_TTL`]: never overflows.
pub fn after(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay.min(MAX_TTL))
        .or_else(|| now.checked_add(Duration::from_secs(24 * 3600)))
        .unwrap_or(now)
}

/// A duration of `secs` seconds as Vault reports TTLs, clamped to [`MAX_TTL`].
pub fn ttl_secs(secs: u64) -> Duration {
    Duration::from_secs(secs).min(MAX_TTL)
}

/// A jitter in `[0, 1]`; anything else (NaN included) counts as 0.
fn unit(jitter: f64) -> f64 {
    if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// A random fraction in `[0, 1)` for jitter (not cryptographic; needs no extra crate).
pub fn jitter() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// When to renew something that lives `ttl` from `now`: at about 2/3 of the TTL, pulled
/// earlier by up to 10% of the TTL with `jitter` in `[0, 1)` so many agents spread out.
pub fn next_renewal(ttl: Duration, now: Instant, jitter: f64) -> Instant {
    after(
        now,
        ttl.min(MAX_TTL).mul_f64(2.0 / 3.0 - 0.1 * unit(jitter)),
    )
}

/// When to fetch a new non-renewable secret that lives `ttl`: at about 90% of it.
pub fn next_refetch(ttl: Duration, now: Instant, jitter: f64) -> Instant {
    after(now, ttl.min(MAX_TTL).mul_f64(0.9 - 0.05 * unit(jitter)))
}

/// When to re-issue a certificate valid from `issued` to `expires`: at 2/3 of its lifetime,
/// expressed as a delay from `wall_now` (zero when that moment has passed).
pub fn cert_refresh_delay(
    issued: SystemTime,
    expires: SystemTime,
    wall_now: SystemTime,
) -> Duration {
    let lifetime = expires
        .duration_since(issued)
        .unwrap_or_default()
        .min(MAX_TTL);
    let at = issued
        .checked_add(lifetime.mul_f64(2.0 / 3.0))
        .map_or(expires, |at| at.min(expires));
    at.duration_since(wall_now).unwrap_or_default().min(MAX_TTL)
}

/// True when Vault granted less than asked (in whole seconds, as Vault counts): the max TTL
/// is near, so renewing again will not help and a new secret (or login) is due.
pub fn capped(requested: Duration, granted: Duration) -> bool {
    granted.as_secs() < requested.as_secs()
}

/// Exponential backoff for the `attempt`-th consecutive failure (0-based), capped at `max`,
/// with "equal jitter": between half and all of the step.
pub fn backoff(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let step = base
        .checked_mul(1u32 << attempt.min(20))
        .unwrap_or(max)
        .min(max);
    step.min(MAX_TTL).mul_f64(0.5 + 0.5 * unit(jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn renewal_at_two_thirds_with_bounded_jitter() {
        let now = Instant::now();
        assert_eq!(next_renewal(S(30), now, 0.0), now + S(20));
        let early = next_renewal(S(30), now, 0.999_999);
        assert!(
            early >= now + S(17) && early < now + S(20),
            "{:?}",
            early - now
        );
        assert_eq!(next_renewal(Duration::ZERO, now, 0.5), now);
    }

    #[test]
    fn refetch_before_expiry() {
        let now = Instant::now();
        assert_eq!(next_refetch(S(100), now, 0.0), now + S(90));
        assert_eq!(
            next_refetch(S(100), now, 0.999_999)
                .duration_since(now)
                .as_secs(),
            85
        );
    }

    #[test]
    fn certs_refresh_at_two_thirds_of_lifetime() {
        let issued = SystemTime::UNIX_EPOCH + S(1000);
        let expires = issued + S(30);
        assert_eq!(cert_refresh_delay(issued, expires, issued), S(20));
        assert_eq!(cert_refresh_delay(issued, expires, issued + S(5)), S(15));
        assert_eq!(
            cert_refresh_delay(issued, expires, issued + S(25)),
            Duration::ZERO
        );
        assert_eq!(cert_refresh_delay(expires, issued, issued), Duration::ZERO);
    }

    #[test]
    fn capped_grants() {
        assert!(!capped(S(30), S(30)));
        assert!(!capped(S(30), S(30) + Duration::from_millis(500)));
        assert!(capped(S(30), S(12)));
        assert!(capped(S(2), S(1)));
    }

    #[test]
    fn backoff_grows_and_caps() {
        let base = Duration::from_millis(100);
        let max = S(10);
        assert_eq!(backoff(0, base, max, 1.0), base);
        assert_eq!(backoff(3, base, max, 1.0), Duration::from_millis(800));
        assert_eq!(backoff(3, base, max, 0.0), Duration::from_millis(400));
        assert_eq!(backoff(30, base, max, 1.0), max);
        assert_eq!(backoff(u32::MAX, base, max, 0.0), S(5));
    }

    #[test]
    fn extreme_inputs_are_clamped_not_a_panic() {
        let now = Instant::now();
        let wall = SystemTime::now();
        let max = Duration::MAX;
        for j in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0] {
            assert_eq!(next_renewal(max, now, j), now + MAX_TTL.mul_f64(2.0 / 3.0));
        }
        for j in [f64::NAN, f64::INFINITY, -1.0, 2.0] {
            assert!(next_renewal(max, now, j) <= now + MAX_TTL);
            assert!(next_refetch(max, now, j) <= now + MAX_TTL);
            assert!(backoff(u32::MAX, S(1), max, j) <= MAX_TTL);
        }
        let year_9999 = SystemTime::UNIX_EPOCH + S(253_402_300_799);
        assert_eq!(
            cert_refresh_delay(wall, year_9999, wall),
            MAX_TTL.mul_f64(2.0 / 3.0)
        );
        assert_eq!(after(now, max), now + MAX_TTL);
        assert_eq!(ttl_secs(u64::MAX), MAX_TTL);
        assert_eq!(ttl_secs(30), S(30));
    }

    #[test]
    fn jitter_is_a_fraction() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}
