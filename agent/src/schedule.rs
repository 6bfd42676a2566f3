//! The pure scheduler: per secret, what Vault work is due and when (no I/O).

use std::time::{Duration, Instant, SystemTime};

use crate::config::SecretSpec;
use crate::consul::{CtRequest, CtTemplate};
use crate::fetch::Fetched;
use crate::renew::{after, cert_refresh_delay, jitter, next_refetch, next_renewal};
use vaultlet_gotemplate::SecretKind;

/// What a secret's own schedule (lease or certificate) asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    Refetch,
    RenewLease,
}

/// One unit of Vault work for a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Work {
    Fetch,
    RenewLease,
    CheckVersion,
}

/// What an entry of the agent's list is.
#[derive(Debug, Clone, Default)]
pub(crate) enum Role {
    /// A secret with its own Vault path (Handlebars or a default format).
    #[default]
    Own,
    /// A consul-template secret: renders from [`Role::Request`] entries, fetches nothing.
    Template(Box<CtTemplate>),
    /// A Vault request of consul-template templates: fetched and kept fresh, no file.
    Request(CtRequest),
}

/// Everything the agent knows about one secret.
#[derive(Debug)]
pub(crate) struct SecretState {
    pub(crate) spec: SecretSpec,
    pub(crate) role: Role,
    pub(crate) fetched: Option<Fetched>,
    /// The policy forbids KV v2 metadata: poll by re-reading the data instead.
    pub(crate) metadata_denied: bool,
    /// Lease TTL at fetch time; a renewal granting less means the max TTL is near.
    pub(crate) lease_requested: Duration,
    pub(crate) due: Option<(Instant, Due)>,
    pub(crate) failures: u32,
    pub(crate) retry_at: Option<Instant>,
    pub(crate) last_error: Option<String>,
    pub(crate) rendered: bool,
    pub(crate) dirty: bool,
    /// The last write failed: retried (with the failure backoff) until it works.
    pub(crate) write_failed: bool,
    /// Vault work for this secret is running; nothing more is started until it ends.
    pub(crate) in_flight: bool,
}

impl SecretState {
    pub(crate) fn new(spec: SecretSpec) -> Self {
        Self {
            spec,
            role: Role::Own,
            fetched: None,
            metadata_denied: false,
            lease_requested: Duration::ZERO,
            due: None,
            failures: 0,
            retry_at: None,
            last_error: None,
            rendered: false,
            dirty: false,
            write_failed: false,
            in_flight: false,
        }
    }

    /// The work due at `now`; `poll` is true on refresh-interval ticks.
    pub(crate) fn work(&self, now: Instant, poll: bool) -> Option<Work> {
        if matches!(self.role, Role::Template(_)) {
            return None;
        }
        if self.in_flight || self.retry_at.is_some_and(|r| r > now) {
            return None;
        }
        let Some(f) = &self.fetched else {
            return Some(Work::Fetch);
        };
        if let Some((at, due)) = self.due
            && at <= now
        {
            return Some(match due {
                Due::Refetch => Work::Fetch,
                Due::RenewLease => Work::RenewLease,
            });
        }
        // Writes (PKI issue, also a consul-template write without `k=v` data) and leased or
        // expiring secrets follow their own schedule.
        let ct_write = matches!(&self.role, Role::Request(r)
            if matches!(r.req.kind, SecretKind::Write | SecretKind::PkiCert));
        if !poll
            || ct_write
            || !self.spec.params.is_empty()
            || f.lease.is_some()
            || f.expires_at.is_some()
        {
            return None;
        }
        if f.kv2_version.is_some() {
            if self.spec.version.is_some() {
                return None;
            }
            if !self.metadata_denied {
                return Some(Work::CheckVersion);
            }
        }
        Some(Work::Fetch)
    }

    /// When this secret next needs attention (`None` while its work runs).
    pub(crate) fn wake(&self, now: Instant) -> Option<Instant> {
        if self.in_flight || matches!(self.role, Role::Template(_)) {
            return None;
        }
        if let Some(r) = self.retry_at.filter(|&r| r > now) {
            return Some(r);
        }
        if self.fetched.is_none() {
            return Some(now);
        }
        self.due.map(|(at, _)| at)
    }
}

/// When a freshly fetched secret needs a renewal or a new fetch.
pub(crate) fn schedule(f: &Fetched, now: Instant, wall_now: SystemTime) -> Option<(Instant, Due)> {
    let j = jitter();
    let by_lease = f.lease.as_ref().filter(|l| !l.ttl.is_zero()).map(|l| {
        if l.renewable {
            (next_renewal(l.ttl, now, j), Due::RenewLease)
        } else {
            (next_refetch(l.ttl, now, j), Due::Refetch)
        }
    });
    let by_cert = f.expires_at.map(|exp| {
        (
            after(now, cert_refresh_delay(wall_now, exp, wall_now)),
            Due::Refetch,
        )
    });
    match (by_lease, by_cert) {
        (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::{Kv2Version, Lease};
    use serde_json::Map;

    fn mk_spec(json: serde_json::Value) -> SecretSpec {
        serde_json::from_value(json).expect("spec")
    }

    fn mk_fetched(kv2: Option<u64>, lease: Option<Lease>) -> Fetched {
        Fetched {
            data: Map::new(),
            kv2_version: kv2.map(|number| Kv2Version {
                number,
                created: String::new(),
            }),
            lease,
            expires_at: None,
            raw: None,
        }
    }

    #[test]
    fn work_decisions() {
        let now = Instant::now();
        let mut s = SecretState::new(mk_spec(
            serde_json::json!({"name":"a","path":"secret/data/a","file":"a"}),
        ));
        assert_eq!(s.work(now, false), Some(Work::Fetch));
        s.fetched = Some(mk_fetched(Some(1), None));
        assert_eq!(s.work(now, false), None);
        assert_eq!(s.work(now, true), Some(Work::CheckVersion));
        s.in_flight = true;
        assert_eq!(s.work(now, true), None, "nothing twice at once");
        assert_eq!(s.wake(now), None);
        s.in_flight = false;
        s.metadata_denied = true;
        assert_eq!(s.work(now, true), Some(Work::Fetch));
        s.retry_at = Some(now + Duration::from_secs(1));
        assert_eq!(s.work(now, true), None);
        assert_eq!(s.wake(now), s.retry_at);

        let mut db = SecretState::new(mk_spec(
            serde_json::json!({"name":"db","path":"database/creds/app","file":"db"}),
        ));
        let lease = Lease {
            id: "x".into(),
            ttl: Duration::from_secs(30),
            renewable: true,
        };
        db.fetched = Some(mk_fetched(None, Some(lease)));
        db.due = Some((now + Duration::from_secs(20), Due::RenewLease));
        assert_eq!(db.work(now, true), None, "leased secrets are not polled");
        assert_eq!(
            db.work(now + Duration::from_secs(20), false),
            Some(Work::RenewLease)
        );
        let req =
            vaultlet_gotemplate::SecretRequest::new(SecretKind::Write, "sys/tools/random", &[])
                .expect("request");
        let mut write = SecretState::new(crate::consul::request_spec("w", &req));
        write.role = Role::Request(CtRequest { req, users: vec![] });
        write.fetched = Some(mk_fetched(None, None));
        assert_eq!(
            write.work(now, true),
            None,
            "a write without data is never polled"
        );
        let mut pinned = SecretState::new(mk_spec(
            serde_json::json!({"name":"p","path":"secret/data/a","file":"p","version":2}),
        ));
        pinned.fetched = Some(mk_fetched(Some(2), None));
        assert_eq!(pinned.work(now, true), None);
    }

    #[test]
    fn schedules_leases_and_certs() {
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut f = mk_fetched(
            None,
            Some(Lease {
                id: "x".into(),
                ttl: Duration::from_secs(30),
                renewable: false,
            }),
        );
        let (at, due) = schedule(&f, now, wall).expect("scheduled");
        assert_eq!(due, Due::Refetch);
        assert!(at >= now + Duration::from_millis(25_500) && at <= now + Duration::from_secs(27));
        f.expires_at = Some(wall + Duration::from_secs(15));
        let (at, due) = schedule(&f, now, wall).expect("scheduled");
        assert_eq!((at, due), (now + Duration::from_secs(10), Due::Refetch));
        assert!(schedule(&mk_fetched(Some(1), None), now, wall).is_none());
    }
}
