//! The agent's loop, an orchestrator: the [`TokenManager`] keeps the token alive, the
//! [`schedule`](crate::schedule) says which Vault work is due, and due work runs as
//! concurrent tasks (bounded, each with a deadline) whose results are applied here; then
//! files are rendered, written and the app notified ([`output`]).

mod consul;
mod output;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::task::{Id, JoinError, JoinSet};
use tracing::{debug, info, warn};

use crate::auth::Authenticator;
use crate::client::{ClientError, Secret, VaultClient};
use crate::config::{AgentConfig, TemplateLanguage};
use crate::consul::{CtJob, Mounts, handoff_key};
use crate::fetch::{self, Fetched};
use crate::handoff::Handoff;
use crate::metrics::Metrics;
use crate::render::{RenderFailure, Renderer};
use crate::renew::{after, backoff, jitter, next_renewal};
use crate::schedule::{Due, Role, SecretState, Work, schedule};
use crate::tasks::{Done, Job, Outcome, perform};
use crate::token::{RETRY_BASE, TokenManager};

/// Vault jobs running at once, at most; more wait for a free slot.
const MAX_IN_FLIGHT: usize = 16;
/// How long one job (at most three Vault calls) may take before it counts as failed.
const JOB_DEADLINE: Duration = Duration::from_secs(15);

/// Errors that stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The Vault client could not be set up.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A template does not parse.
    #[error(transparent)]
    Template(#[from] RenderFailure),
    /// `init` ran out of time.
    #[error("secrets not rendered within the init deadline of {deadline:?}: {details}")]
    Deadline {
        /// The deadline.
        deadline: Duration,
        /// What failed last, per secret.
        details: String,
    },
}

/// The whole agent: one thread, one Vault connection pool, everything on schedule.
#[derive(Debug)]
pub struct Agent {
    cfg: AgentConfig,
    client: VaultClient,
    tokens: TokenManager,
    secrets: Vec<SecretState>,
    renderer: Renderer,
    /// Client for HTTP notifications, built on first use (loading system roots costs time
    /// and memory that most pods never need).
    http: std::cell::OnceCell<Option<reqwest::Client>>,
    metrics: Arc<Metrics>,
    next_poll: Instant,
    ready: bool,
    notify_enabled: bool,
    in_flight: JoinSet<Outcome>,
    /// The secrets each running job is for, and the token it uses.
    jobs: BTreeMap<Id, (Vec<usize>, Secret)>,
    /// KV mounts learnt for consul-template requests.
    mounts: Mounts,
}

impl Agent {
    /// Sets up the client and compiles the templates; no network call yet.
    pub fn new(cfg: AgentConfig, metrics: Arc<Metrics>) -> Result<Self, AgentError> {
        let client = VaultClient::new(&cfg.vault)?;
        let handlebars: Vec<_> = cfg
            .secrets
            .iter()
            .filter(|s| s.language == TemplateLanguage::Handlebars)
            .cloned()
            .collect();
        let renderer = Renderer::new(&handlebars)?.with_max_output(cfg.paths.max_file_size);
        let secrets = consul::entries(&cfg.secrets)?;
        let tokens = TokenManager::new(
            Authenticator::new(client.clone(), cfg.auth.clone()),
            cfg.auth.method(),
            cfg.paths.token_sink.clone(),
            metrics.clone(),
            retry_max(&cfg),
        );
        Ok(Self {
            client,
            tokens,
            secrets,
            renderer,
            http: std::cell::OnceCell::new(),
            metrics,
            next_poll: after(Instant::now(), cfg.refresh_interval),
            ready: false,
            notify_enabled: false,
            in_flight: JoinSet::new(),
            jobs: BTreeMap::new(),
            mounts: Mounts::default(),
            cfg,
        })
    }

    fn all_rendered(&self) -> bool {
        self.secrets
            .iter()
            .all(|s| s.rendered || matches!(s.role, Role::Request(_)))
    }

    /// The `init` role: render every secret once, retrying until the deadline.
    pub async fn init(mut self) -> Result<(), AgentError> {
        let deadline =
            tokio::time::sleep_until(after(Instant::now(), self.cfg.init_deadline).into());
        tokio::pin!(deadline);
        loop {
            let stopped = self.turn(deadline.as_mut()).await;
            if self.all_rendered() {
                info!(secrets = self.secrets.len(), "all secrets rendered");
                self.hand_off();
                return Ok(());
            }
            if stopped {
                return Err(AgentError::Deadline {
                    deadline: self.cfg.init_deadline,
                    details: self.pending_summary(),
                });
            }
        }
    }

    /// What keeps secrets from being rendered, for the init failure message.
    fn pending_summary(&self) -> String {
        if self.tokens.current().is_none() {
            return format!(
                "login failed: {}",
                self.tokens
                    .last_error()
                    .unwrap_or("no attempt finished in time")
            );
        }
        self.secrets
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.rendered && !matches!(s.role, Role::Request(_)))
            .map(|(i, s)| match &s.last_error {
                None if matches!(s.role, Role::Template(_)) => {
                    self.ct_pending(i).unwrap_or_default()
                }
                Some(e) => e.clone(),
                None if s.fetched.is_some() => format!(
                    "secret {:?}: waiting for the other secrets its template uses",
                    s.spec.name
                ),
                None => format!("secret {:?}: no fetch finished in time", s.spec.name),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The `run` role: keep everything fresh until `stop` resolves, then shut down.
    pub async fn run(mut self, stop: impl Future<Output = ()>) {
        self.notify_enabled = true;
        if self.cfg.handoff {
            self.adopt_handoff();
        }
        tokio::pin!(stop);
        while !self.turn(stop.as_mut()).await {}
        self.in_flight.abort_all();
        if self.cfg.revoke_on_shutdown {
            self.tokens.revoke().await;
        } else {
            info!("stopping");
        }
    }

    /// One turn: token upkeep, start the due Vault work, then wait for a job's result, the
    /// next due time or `stop`; render and write what changed. True once `stop` resolved.
    async fn turn<F: Future<Output = ()>>(&mut self, mut stop: Pin<&mut F>) -> bool {
        let now = Instant::now();
        tokio::select! {
            relogin = self.tokens.upkeep(now) => if relogin {
                self.refetch_leases(Instant::now());
            },
            () = stop.as_mut() => return true,
        }
        if let Some(token) = self.tokens.current() {
            self.start_due_work(Instant::now(), &token);
        }
        let wake = self.next_wake();
        tokio::select! {
            Some(joined) = self.in_flight.join_next_with_id() => self.finish(joined),
            () = tokio::time::sleep_until(wake.into()) => {}
            () = stop.as_mut() => return true,
        }
        self.render_and_write();
        false
    }

    /// Classic mode, end of `init`: leave the token, leases and data to the sidecar.
    fn hand_off(&self) {
        if !self.cfg.handoff {
            return;
        }
        let Some(token) = self.tokens.handed(Instant::now()) else {
            return;
        };
        let keys: Vec<String> = self.secrets.iter().map(handed_path).collect();
        let secrets = self.secrets.iter().zip(&keys).filter_map(|(s, key)| {
            let f = s.fetched.as_ref()?;
            Some((s.spec.name.as_str(), key.as_str(), f, s.lease_requested))
        });
        match Handoff::new(&token, secrets).write(&self.cfg.paths.state_dir) {
            Ok(()) => info!("handed the token, leases and data over to the sidecar"),
            Err(e) => warn!(error = %e, "cannot write the handoff; the sidecar will log in itself"),
        }
    }

    /// Classic mode, start of `run`: adopt what the init agent handed over, so nothing is
    /// fetched, written or notified again.
    fn adopt_handoff(&mut self) {
        let Some(handoff) = Handoff::take(&self.cfg.paths.state_dir) else {
            info!("no handoff from an init agent; logging in");
            return;
        };
        let Some(token) = handoff.token() else {
            info!("the init agent's token has expired; logging in");
            return;
        };
        let now = Instant::now();
        self.tokens.adopt(token, now);
        let mut adopted = 0;
        for s in &mut self.secrets {
            if matches!(s.role, Role::Template(_)) {
                // Rendered again from the adopted answers: the same bytes, nothing written.
                s.rendered = true;
                s.dirty = true;
                continue;
            }
            let Some((f, requested)) = handoff.secret(&s.spec.name, &handed_path(s)) else {
                continue;
            };
            s.due = schedule(&f, now, SystemTime::now());
            s.lease_requested = requested;
            s.fetched = Some(f);
            // The init agent wrote its file.
            s.rendered = true;
            adopted += 1;
        }
        adopted += self.adopt_computed(&handoff, now);
        self.align_shared();
        self.ready = self.all_rendered();
        info!(
            secrets = adopted,
            "adopted the init agent's leases and data"
        );
    }

    /// Entries sharing a job get the earliest schedule among them (adopted ones were
    /// scheduled one by one), so their lease or certificate is renewed by one request.
    fn align_shared(&mut self) {
        let mut earliest: BTreeMap<String, (Instant, Due)> = BTreeMap::new();
        for (i, s) in self.secrets.iter().enumerate() {
            if let Some(d) = s.due {
                let e = earliest.entry(share_key(i, s)).or_insert(d);
                if d.0 < e.0 {
                    *e = d;
                }
            }
        }
        for i in 0..self.secrets.len() {
            let key = share_key(i, &self.secrets[i]);
            if let Some(&d) = earliest.get(&key)
                && self.secrets[i].due.is_some()
            {
                self.secrets[i].due = Some(d);
            }
        }
    }

    /// When the next turn is due (a job ending wakes the loop too).
    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let mut wake = self
            .tokens
            .wake()
            .unwrap_or_else(|| after(now, Duration::from_secs(3600)));
        if self.tokens.current().is_none() {
            return wake;
        }
        wake = wake.min(self.next_poll);
        // At capacity, due secrets wait for a job to end, which wakes the loop anyway.
        if self.in_flight.len() < MAX_IN_FLIGHT {
            for s in &self.secrets {
                if let Some(w) = s.wake(now) {
                    wake = wake.min(w);
                }
            }
        }
        wake
    }

    /// Starts one job per due (work, request); secrets sharing a path (and, for writes, the
    /// same parameters) share the job, so they see the same version and cost one call: a key
    /// and a certificate from one `pki/issue` always belong together.
    fn start_due_work(&mut self, now: Instant, token: &Secret) {
        let poll = now >= self.next_poll;
        if poll {
            self.next_poll = after(now, self.cfg.refresh_interval);
        }
        let mut due: BTreeMap<(Work, String), Vec<usize>> = BTreeMap::new();
        for (i, s) in self.secrets.iter().enumerate() {
            let Some(work) = s.work(now, poll) else {
                continue;
            };
            due.entry((work, share_key(i, s))).or_default().push(i);
        }
        for ((work, _), members) in due {
            if self.in_flight.len() >= MAX_IN_FLIGHT {
                break;
            }
            let s = &self.secrets[members[0]];
            let job = Job {
                work,
                spec: s.spec.clone(),
                lease: s.fetched.as_ref().and_then(|f| f.lease.clone()),
                requested: s.lease_requested,
                known: s.fetched.as_ref().and_then(|f| f.kv2_version.clone()),
                ct: match &s.role {
                    Role::Request(r) => Some(CtJob {
                        req: r.req.clone(),
                        mounts: self.mounts.clone(),
                    }),
                    _ => None,
                },
            };
            let task = perform(self.client.clone(), token.clone(), job, JOB_DEADLINE);
            let id = self.in_flight.spawn(task).id();
            for &i in &members {
                self.secrets[i].in_flight = true;
            }
            self.jobs.insert(id, (members, token.clone()));
        }
    }

    /// Applies a finished job to each of its secrets.
    fn finish(&mut self, joined: Result<(Id, Outcome), JoinError>) {
        let (id, outcome) = match joined {
            Ok(done) => done,
            Err(e) => {
                let members = self.jobs.remove(&e.id()).map(|(m, _)| m);
                for i in members.unwrap_or_default() {
                    self.secrets[i].in_flight = false;
                    self.fail(i, "the Vault job stopped unexpectedly; retrying".into());
                }
                return;
            }
        };
        let Some((members, token)) = self.jobs.remove(&id) else {
            return;
        };
        let job_secret = members.first().map(|&i| self.secrets[i].spec.name.clone());
        // One schedule for every member, so secrets sharing a lease or a certificate are
        // renewed or re-issued together, by one request.
        let due = match &outcome.result {
            Ok(Done::Fetched(f) | Done::FetchedWithoutMetadata(f)) => {
                schedule(f, Instant::now(), SystemTime::now())
            }
            Ok(Done::Renewed(granted)) => Some((
                next_renewal(granted.ttl, Instant::now(), jitter()),
                Due::RenewLease,
            )),
            _ => None,
        };
        for &i in &members {
            self.secrets[i].in_flight = false;
            match &outcome.result {
                Ok(done) => {
                    self.apply(i, done.clone(), due);
                    self.succeeded(i);
                }
                Err(e) => {
                    let msg = for_secret(
                        &e.to_string(),
                        job_secret.as_deref(),
                        &self.secrets[i].spec.name,
                    );
                    self.fail(i, msg);
                }
            }
        }
        // Members retry together too, so none fetches (or issues) alone.
        let first_retry = members.first().and_then(|&i| self.secrets[i].retry_at);
        if outcome.result.is_err() {
            for &i in &members {
                self.secrets[i].retry_at = first_retry;
            }
        }
        // Only when the job's token is still the current one (a new login may have
        // replaced it meanwhile).
        if outcome.token_gone && self.tokens.current().is_some_and(|t| t == token) {
            warn!("the token is no longer valid; logging in again");
            self.tokens.invalidate();
        }
    }

    fn apply(&mut self, i: usize, done: Done, due: Option<(Instant, Due)>) {
        match done {
            Done::Fetched(f) => self.store(i, f, due),
            Done::FetchedWithoutMetadata(f) => {
                self.store(i, f, due);
                let s = &mut self.secrets[i];
                if !s.metadata_denied {
                    s.metadata_denied = true;
                    info!(secret = ?s.spec.name, "policy does not allow reading KV metadata; re-reading the data on each refresh instead");
                }
            }
            Done::Renewed(granted) => {
                let s = &mut self.secrets[i];
                s.due = due;
                if let Some(f) = &mut s.fetched {
                    f.lease = Some(granted);
                }
            }
            Done::Unchanged => {}
        }
    }

    /// Keeps freshly fetched data: schedules its renewal, marks it for rendering if new.
    fn store(&mut self, i: usize, f: Fetched, due: Option<(Instant, Due)>) {
        let s = &mut self.secrets[i];
        s.due = due;
        s.lease_requested = f.lease.as_ref().map(|l| l.ttl).unwrap_or_default();
        // A template may print a consul-template answer's metadata (the KV v2 version).
        let ct = matches!(s.role, Role::Request(_));
        let changed = s
            .fetched
            .as_ref()
            .is_none_or(|old| old.data != f.data || (ct && old.kv2_version != f.kv2_version));
        debug!(secret = ?s.spec.name, ?f, changed, "fetched");
        if changed {
            s.dirty = true;
        }
        s.fetched = Some(f);
        if changed {
            self.mark_users(i);
        }
    }

    fn succeeded(&mut self, i: usize) {
        let s = &mut self.secrets[i];
        // A failed write keeps its backoff until a write works.
        if !s.write_failed {
            if s.failures > 0 {
                info!(secret = ?s.spec.name, "secret refreshed again after failures");
            }
            s.failures = 0;
            s.retry_at = None;
            s.last_error = None;
        }
        self.metrics.success(&s.spec.name, false);
    }

    fn fail(&mut self, i: usize, msg: String) {
        let max = retry_max(&self.cfg);
        let s = &mut self.secrets[i];
        let delay = backoff(s.failures, RETRY_BASE, max, jitter());
        warn!(secret = ?s.spec.name, error = %msg, attempt = s.failures + 1, retry_in_ms = delay.as_millis() as u64, "refresh failed; keeping the last good file");
        s.retry_at = Some(after(Instant::now(), delay));
        s.failures = s.failures.saturating_add(1);
        s.last_error = Some(msg);
        self.metrics.failure(&s.spec.name);
    }

    /// Leases die with the token that created them: after a new login, fetch them anew.
    fn refetch_leases(&mut self, now: Instant) {
        for s in &mut self.secrets {
            if s.fetched.as_ref().is_some_and(|f| f.lease.is_some()) {
                s.due = Some((now, Due::Refetch));
                s.retry_at = None;
            }
        }
    }
}

/// Entries with equal keys share one Vault job: the same read path, or the same write path
/// and parameters.
fn share_key(i: usize, s: &SecretState) -> String {
    match &s.role {
        // Already one entry per distinct request.
        Role::Request(_) => format!("\u{1}{i}"),
        _ if s.spec.params.is_empty() => fetch::request_path(&s.spec),
        _ => format!(
            "{}\0{}",
            fetch::request_path(&s.spec),
            serde_json::json!(s.spec.params)
        ),
    }
}

/// The path an entry is handed over under: a consul-template request's own key.
fn handed_path(s: &SecretState) -> String {
    match &s.role {
        Role::Request(r) => handoff_key(&r.req),
        _ => s.spec.path.clone(),
    }
}

/// The longest retry delay: one refresh interval (at most 30 s), so after an outage the
/// agent is back within about one interval, not after a backoff grown past it.
fn retry_max(cfg: &AgentConfig) -> Duration {
    cfg.refresh_interval
        .clamp(RETRY_BASE, Duration::from_secs(30))
}

/// A shared job's error message, naming `secret` instead of the job's first secret.
fn for_secret(msg: &str, job_secret: Option<&str>, secret: &str) -> String {
    match job_secret {
        Some(first) if first != secret => msg.replacen(
            &format!("secret {first:?}"),
            &format!("secret {secret:?}"),
            1,
        ),
        _ => msg.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_errors_name_each_secret() {
        let msg = "secret \"a\": nothing at secret/data/x (deleted, or a wrong path)";
        assert_eq!(
            for_secret(msg, Some("a"), "b"),
            "secret \"b\": nothing at secret/data/x (deleted, or a wrong path)"
        );
        assert_eq!(for_secret(msg, Some("a"), "a"), msg);
    }
}
