//! The Vault work of one job (one secret, or several sharing a path), run as its own task
//! with a deadline, so a slow or hanging path delays no token or lease renewal.

use std::time::Duration;

use tracing::{debug, info};

use crate::client::{Secret, VaultClient};
use crate::config::SecretSpec;
use crate::consul::{self, CtJob};
use crate::fetch::{self, FetchError, Fetched, Kv2Version, Lease, kv2_metadata_path};
use crate::renew::capped;
use crate::schedule::Work;
use crate::token::token_gone;

/// Everything one job needs, owned, so it can run beside the agent's loop.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) work: Work,
    pub(crate) spec: SecretSpec,
    /// The lease to renew (for [`Work::RenewLease`]).
    pub(crate) lease: Option<Lease>,
    /// The lease TTL asked for at fetch time.
    pub(crate) requested: Duration,
    /// The KV v2 version already rendered (for [`Work::CheckVersion`]).
    pub(crate) known: Option<Kv2Version>,
    /// A request of consul-template secrets (fetched as consul-template does).
    pub(crate) ct: Option<CtJob>,
}

/// What a job found.
#[derive(Debug, Clone)]
pub(crate) enum Done {
    /// New data (a fetch, or a new secret replacing a lease that cannot go on).
    Fetched(Fetched),
    /// The lease was renewed for this long.
    Renewed(Lease),
    /// The KV v2 version is the one already rendered.
    Unchanged,
    /// KV v2 metadata is denied by policy; the data was read instead.
    FetchedWithoutMetadata(Fetched),
}

/// A job's result, and whether a 403 turned out to mean the token is gone.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) result: Result<Done, FetchError>,
    pub(crate) token_gone: bool,
}

/// Runs `job` within `deadline`; after a 403, asks whether the token itself is gone.
pub(crate) async fn perform(
    client: VaultClient,
    token: Secret,
    job: Job,
    deadline: Duration,
) -> Outcome {
    let result = match tokio::time::timeout(deadline, run(&client, &token, &job)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::TimedOut {
            secret: job.spec.name.clone(),
            after: deadline,
        }),
    };
    let token_gone = match &result {
        Err(e) if e.is_forbidden() => token_gone(&client, &token).await,
        _ => false,
    };
    Outcome { result, token_gone }
}

async fn run(client: &VaultClient, token: &Secret, job: &Job) -> Result<Done, FetchError> {
    let name = &job.spec.name;
    let fetch = || async {
        match &job.ct {
            Some(ct) => consul::fetch(client, token, name, ct).await,
            None => fetch::fetch(client, token, &job.spec).await,
        }
    };
    match job.work {
        Work::Fetch => fetch().await.map(Done::Fetched),
        Work::RenewLease => {
            let Some(lease) = &job.lease else {
                return fetch().await.map(Done::Fetched);
            };
            match fetch::renew_lease(client, token, name, lease, job.requested).await {
                Ok(granted) if !granted.renewable || capped(job.requested, granted.ttl) => {
                    // The old secret stays valid for the rest of its TTL: the app gets the
                    // new one now, with that whole time to switch.
                    info!(secret = ?name, "lease is near its max TTL; fetching a new secret");
                    fetch().await.map(Done::Fetched)
                }
                Ok(granted) => {
                    debug!(secret = ?name, ttl_secs = granted.ttl.as_secs(), "lease renewed");
                    Ok(Done::Renewed(granted))
                }
                Err(e) if lease_gone(&e) => {
                    info!(secret = ?name, error = %e, "lease cannot be renewed; fetching a new secret");
                    fetch().await.map(Done::Fetched)
                }
                Err(e) => Err(e),
            }
        }
        Work::CheckVersion => {
            let data_path = match &job.ct {
                Some(ct) => consul::resolve(client, token, name, ct).await?,
                None => job.spec.path.clone(),
            };
            let Some(meta_path) = kv2_metadata_path(&data_path) else {
                return fetch().await.map(Done::Fetched);
            };
            match fetch::kv2_meta(client, token, name, &meta_path).await {
                Ok(m) if m.deleted => Err(FetchError::Deleted {
                    secret: name.clone(),
                    path: meta_path,
                    version: m.current.number,
                }),
                Ok(m) if job.known.as_ref().is_some_and(|k| k.same_as(&m.current)) => {
                    Ok(Done::Unchanged)
                }
                Ok(m) => {
                    debug!(secret = ?name, version = m.current.number, "new KV version");
                    fetch().await.map(Done::Fetched)
                }
                Err(e) if e.is_forbidden() => fetch().await.map(Done::FetchedWithoutMetadata),
                Err(e) => Err(e),
            }
        }
    }
}

/// True when Vault answered a renewal with an error other than 403: the lease expired, was
/// revoked or cannot be renewed, so only a new secret helps.
fn lease_gone(e: &FetchError) -> bool {
    match e {
        FetchError::NotFound { .. } => true,
        FetchError::Vault { source, .. } => !source.is_forbidden() && source.status().is_some(),
        _ => false,
    }
}
