//! The agent's loop: log in, fetch, render, write, renew and re-fetch on schedule, notify.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};
use tracing::{debug, error, info, warn};

use crate::auth::{AuthError, Authenticator, Token};
use crate::client::{ClientError, Secret, VaultClient};
use crate::config::{AgentConfig, NotifySpec, SecretSpec};
use crate::fetch::{self, FetchError, Fetched, Kv2Meta, kv2_metadata_path};
use crate::metrics::Metrics;
use crate::notify;
use crate::probe;
use crate::render::{RenderFailure, Renderer, uses_other_secrets};
use crate::renew::{
    after, backoff, capped, cert_refresh_delay, jitter, next_refetch, next_renewal,
};
use crate::write::{Written, write_atomic};

/// First retry delay after a failure.
const RETRY_BASE: Duration = Duration::from_millis(250);
/// How long revoking the token on shutdown may take.
const REVOKE_TIMEOUT: Duration = Duration::from_millis(800);

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenAction {
    Renew,
    Relogin,
}

#[derive(Debug)]
struct TokenState {
    token: Token,
    /// TTL granted at login; a renewal granting less means the max TTL is near.
    login_ttl: Duration,
    expires: Option<Instant>,
    next: Option<(Instant, TokenAction)>,
    failures: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    Refetch,
    RenewLease,
}

/// What to do for one secret in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    Fetch,
    RenewLease,
    CheckVersion,
}

#[derive(Debug)]
struct SecretState {
    spec: SecretSpec,
    fetched: Option<Fetched>,
    /// The policy forbids KV v2 metadata: poll by re-reading the data instead.
    metadata_denied: bool,
    /// Lease TTL at fetch time; a renewal granting less means the max TTL is near.
    lease_requested: Duration,
    due: Option<(Instant, Due)>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<String>,
    rendered: bool,
    dirty: bool,
    /// The last write failed: retried (with the failure backoff) until it works.
    write_failed: bool,
}

impl SecretState {
    fn new(spec: SecretSpec) -> Self {
        Self {
            spec,
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
        }
    }

    /// Decides the work of a round; `poll` is true on refresh-interval ticks.
    fn work(&self, now: Instant, poll: bool) -> Option<Work> {
        if self.retry_at.is_some_and(|r| r > now) {
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
        // Writes (PKI issue) and leased or expiring secrets follow their own schedule.
        if !poll || !self.spec.params.is_empty() || f.lease.is_some() || f.expires_at.is_some() {
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

    /// When this secret next needs attention.
    fn wake(&self, now: Instant) -> Option<Instant> {
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
fn schedule(f: &Fetched, now: Instant, wall_now: SystemTime) -> Option<(Instant, Due)> {
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

/// The whole agent: one task, one Vault connection, everything on schedule.
#[derive(Debug)]
pub struct Agent {
    cfg: AgentConfig,
    client: VaultClient,
    auth: Authenticator,
    token: Option<TokenState>,
    logins: u64,
    login_failures: u32,
    next_login: Instant,
    last_login_error: Option<String>,
    secrets: Vec<SecretState>,
    renderer: Renderer,
    /// Client for HTTP notifications, built on first use (loading system roots costs time
    /// and memory that most pods never need).
    http: std::cell::OnceCell<Option<reqwest::Client>>,
    metrics: Arc<Metrics>,
    next_poll: Instant,
    ready: bool,
    notify_enabled: bool,
    /// Answers already read this round, by request path: secrets sharing a path see the
    /// same version and cost one call.
    round_reads: BTreeMap<String, Fetched>,
    round_meta: BTreeMap<String, Kv2Meta>,
}

impl Agent {
    /// Sets up the client and compiles the templates; no network call yet.
    pub fn new(cfg: AgentConfig, metrics: Arc<Metrics>) -> Result<Self, AgentError> {
        let client = VaultClient::new(&cfg.vault)?;
        let renderer = Renderer::new(&cfg.secrets)?;
        let now = Instant::now();
        Ok(Self {
            auth: Authenticator::new(client.clone(), cfg.auth.clone()),
            client,
            token: None,
            logins: 0,
            login_failures: 0,
            next_login: now,
            last_login_error: None,
            secrets: cfg.secrets.iter().cloned().map(SecretState::new).collect(),
            renderer,
            http: std::cell::OnceCell::new(),
            metrics,
            next_poll: after(now, cfg.refresh_interval),
            ready: false,
            notify_enabled: false,
            round_reads: BTreeMap::new(),
            round_meta: BTreeMap::new(),
            cfg,
        })
    }

    /// The longest retry delay: one refresh interval (at most 30 s), so after an outage the
    /// agent is back within about one interval, not after a backoff grown past it.
    fn retry_max(&self) -> Duration {
        self.cfg
            .refresh_interval
            .clamp(RETRY_BASE, Duration::from_secs(30))
    }

    fn all_rendered(&self) -> bool {
        self.secrets.iter().all(|s| s.rendered)
    }

    /// The `init` role: render every secret once, retrying until the deadline.
    pub async fn init(mut self) -> Result<(), AgentError> {
        let deadline = after(Instant::now(), self.cfg.init_deadline);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = tokio::time::timeout(left, self.round()).await;
            if self.all_rendered() {
                info!(secrets = self.secrets.len(), "all secrets rendered");
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(AgentError::Deadline {
                    deadline: self.cfg.init_deadline,
                    details: self.pending_summary(),
                });
            }
            let wake = self.next_wake().min(deadline);
            tokio::time::sleep_until(wake.into()).await;
        }
    }

    /// What keeps secrets from being rendered, for the init failure message.
    fn pending_summary(&self) -> String {
        if self.token.is_none() {
            return format!(
                "login failed: {}",
                self.last_login_error
                    .as_deref()
                    .unwrap_or("no attempt finished in time")
            );
        }
        self.secrets
            .iter()
            .filter(|s| !s.rendered)
            .map(|s| match &s.last_error {
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
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = self.round() => {}
                () = &mut stop => break,
            }
            let wake = self.next_wake();
            tokio::select! {
                () = tokio::time::sleep_until(wake.into()) => {}
                () = &mut stop => break,
            }
        }
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if !self.cfg.revoke_on_shutdown {
            info!("stopping");
            return;
        }
        let Some(t) = self.token.take() else {
            info!("stopping (no token to revoke)");
            return;
        };
        match tokio::time::timeout(REVOKE_TIMEOUT, self.auth.revoke(&t.token.secret)).await {
            Ok(Ok(())) => info!("token and its leases revoked; stopping"),
            Ok(Err(e)) => warn!(error = %e, "could not revoke the token; stopping anyway"),
            Err(_) => warn!("revoking the token timed out; stopping anyway"),
        }
    }

    /// When the next round is due.
    pub fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let Some(t) = &self.token else {
            return self.next_login;
        };
        let mut wake = self.next_poll;
        if let Some((at, _)) = t.next {
            wake = wake.min(at);
        }
        for s in &self.secrets {
            if let Some(w) = s.wake(now) {
                wake = wake.min(w);
            }
        }
        wake
    }

    /// One round: token upkeep, due fetches/renewals/checks, render, write, notify.
    pub async fn round(&mut self) {
        let now = Instant::now();
        let Some(token) = self.ensure_token(now).await else {
            return;
        };
        self.round_reads.clear();
        self.round_meta.clear();
        let poll = now >= self.next_poll;
        if poll {
            self.next_poll = after(now, self.cfg.refresh_interval);
        }
        for i in 0..self.secrets.len() {
            let Some(work) = self.secrets[i].work(now, poll) else {
                continue;
            };
            match self.do_work(i, work, &token).await {
                Ok(()) => {
                    let s = &mut self.secrets[i];
                    // A failed write keeps its backoff until a write works.
                    if !s.write_failed {
                        if s.failures > 0 {
                            info!(secret = %s.spec.name, "secret refreshed again after failures");
                        }
                        s.failures = 0;
                        s.retry_at = None;
                        s.last_error = None;
                    }
                    self.metrics.success(&s.spec.name, false);
                }
                Err(e) => {
                    let forbidden = e.is_forbidden();
                    self.fail(i, e.to_string());
                    if forbidden && self.token_gone(&token).await {
                        warn!("the token is no longer valid; logging in again");
                        self.token = None;
                        self.next_login = Instant::now();
                        break;
                    }
                }
            }
        }
        self.render_and_write();
    }

    fn fail(&mut self, i: usize, msg: String) {
        let max = self.retry_max();
        let s = &mut self.secrets[i];
        let delay = backoff(s.failures, RETRY_BASE, max, jitter());
        warn!(secret = %s.spec.name, error = %msg, attempt = s.failures + 1, retry_in_ms = delay.as_millis() as u64, "refresh failed; keeping the last good file");
        s.retry_at = Some(after(Instant::now(), delay));
        s.failures = s.failures.saturating_add(1);
        s.last_error = Some(msg);
        self.metrics.failure(&s.spec.name);
    }

    /// After a 403: is the token itself gone? Only a 403 from `lookup-self` says so; an
    /// unreachable or failing Vault is no reason to log in again (and, with it, to fetch a
    /// new set of dynamic credentials).
    async fn token_gone(&self, token: &Secret) -> bool {
        match self.client.read("auth/token/lookup-self", token).await {
            Ok(_) => false,
            Err(e) => e.is_forbidden(),
        }
    }

    /// Logs in or renews as scheduled; the token to use, if there is one.
    async fn ensure_token(&mut self, now: Instant) -> Option<Secret> {
        if let Some(t) = &self.token
            && let Some((at, action)) = t.next
            && at <= now
        {
            match action {
                TokenAction::Renew => self.renew_token(now).await,
                TokenAction::Relogin => self.relogin_before_expiry(now).await,
            }
        }
        if self.token.is_none() && now >= self.next_login {
            self.login(now).await;
        }
        self.token.as_ref().map(|t| t.token.secret.clone())
    }

    /// Logs in again while the current token still lives; until a login works, the old token
    /// keeps serving for as long as it lives.
    async fn relogin_before_expiry(&mut self, now: Instant) {
        info!("token is near its max TTL or not renewable; logging in again");
        self.login(now).await;
        let retry_at = self.next_login;
        if let Some(t) = &mut self.token
            && t.next.is_some_and(|(at, _)| at <= now)
        {
            if t.expires.is_some_and(|x| x <= retry_at) {
                self.token = None;
            } else {
                t.next = Some((retry_at, TokenAction::Relogin));
            }
        }
    }

    async fn login(&mut self, now: Instant) {
        match self.auth.login().await {
            Ok(token) => {
                let relogin = self.logins > 0;
                self.logins += 1;
                self.login_failures = 0;
                self.last_login_error = None;
                info!(
                    method = self.cfg.auth.method(),
                    ttl_secs = token.ttl.as_secs(),
                    renewable = token.renewable,
                    "logged in"
                );
                let state = token_state(token.clone(), token.ttl, now);
                self.metrics.login(true, state.expires);
                self.token = Some(state);
                self.write_token_sink(&token.secret);
                if relogin {
                    // Leases die with the token that created them: fetch them anew.
                    for s in &mut self.secrets {
                        if s.fetched.as_ref().is_some_and(|f| f.lease.is_some()) {
                            s.due = Some((now, Due::Refetch));
                            s.retry_at = None;
                        }
                    }
                }
            }
            Err(e) => {
                let delay = backoff(self.login_failures, RETRY_BASE, self.retry_max(), jitter());
                self.login_failures = self.login_failures.saturating_add(1);
                warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "login failed");
                self.metrics.login(false, None);
                self.last_login_error = Some(e.to_string());
                self.next_login = after(Instant::now(), delay);
            }
        }
    }

    async fn renew_token(&mut self, now: Instant) {
        let Some(t) = &self.token else { return };
        let result = self.auth.renew(&t.token.secret).await;
        let retry_max = self.retry_max();
        let Some(t) = &mut self.token else { return };
        match result {
            Ok(new) => {
                debug!(ttl_secs = new.ttl.as_secs(), "token renewed");
                let login_ttl = t.login_ttl;
                *t = token_state(new, login_ttl, now);
                self.metrics.token_expires(t.expires);
            }
            Err(e) if expired_or_forbidden(&e, t.expires, now) => {
                warn!(error = %e, "token renewal failed; logging in again");
                self.token = None;
            }
            Err(e) => {
                let delay = backoff(t.failures, RETRY_BASE, retry_max, jitter());
                t.failures = t.failures.saturating_add(1);
                t.next = Some((after(now, delay), TokenAction::Renew));
                warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "token renewal failed; retrying");
            }
        }
    }

    fn write_token_sink(&self, token: &Secret) {
        if let Some(sink) = &self.cfg.paths.token_sink
            && let Err(e) = write_atomic(sink, token.expose().as_bytes(), 0o440, None)
        {
            warn!(error = %e, "cannot write the token sink");
        }
    }

    async fn do_work(&mut self, i: usize, work: Work, token: &Secret) -> Result<(), FetchError> {
        match work {
            Work::Fetch => self.fetch_into(i, token).await,
            Work::RenewLease => self.renew_lease(i, token).await,
            Work::CheckVersion => self.check_version(i, token).await,
        }
    }

    async fn fetch_into(&mut self, i: usize, token: &Secret) -> Result<(), FetchError> {
        let spec = &self.secrets[i].spec;
        let key = spec.params.is_empty().then(|| fetch::request_path(spec));
        let f = match key.as_ref().and_then(|k| self.round_reads.get(k)) {
            Some(f) => f.clone(),
            None => {
                let f = fetch::fetch(&self.client, token, spec).await?;
                if let Some(k) = key {
                    self.round_reads.insert(k, f.clone());
                }
                f
            }
        };
        let s = &mut self.secrets[i];
        let now = Instant::now();
        s.due = schedule(&f, now, SystemTime::now());
        s.lease_requested = f.lease.as_ref().map(|l| l.ttl).unwrap_or_default();
        let changed = s.fetched.as_ref().is_none_or(|old| old.data != f.data);
        debug!(secret = %s.spec.name, ?f, changed, "fetched");
        if changed {
            s.dirty = true;
        }
        s.fetched = Some(f);
        Ok(())
    }

    async fn renew_lease(&mut self, i: usize, token: &Secret) -> Result<(), FetchError> {
        let s = &self.secrets[i];
        let Some(lease) = s.fetched.as_ref().and_then(|f| f.lease.clone()) else {
            return self.fetch_into(i, token).await;
        };
        let requested = s.lease_requested;
        match fetch::renew_lease(&self.client, token, &s.spec.name, &lease, requested).await {
            Ok(granted) => {
                let now = Instant::now();
                let s = &mut self.secrets[i];
                let near_max = !granted.renewable || capped(requested, granted.ttl);
                debug!(secret = %s.spec.name, ttl_secs = granted.ttl.as_secs(), near_max, "lease renewed");
                if near_max {
                    // The old secret stays valid for the rest of its TTL: the app gets the
                    // new one now, with that whole time to switch.
                    info!(secret = %s.spec.name, "lease is near its max TTL; fetching a new secret");
                    return self.fetch_into(i, token).await;
                }
                s.due = Some((next_renewal(granted.ttl, now, jitter()), Due::RenewLease));
                if let Some(f) = &mut s.fetched {
                    f.lease = Some(granted);
                }
                Ok(())
            }
            Err(e) if lease_gone(&e) => {
                info!(secret = %s.spec.name, error = %e, "lease cannot be renewed; fetching a new secret");
                self.fetch_into(i, token).await
            }
            Err(e) => Err(e),
        }
    }

    async fn check_version(&mut self, i: usize, token: &Secret) -> Result<(), FetchError> {
        let s = &self.secrets[i];
        let Some(meta_path) = kv2_metadata_path(&s.spec.path) else {
            return self.fetch_into(i, token).await;
        };
        let known = s.fetched.as_ref().and_then(|f| f.kv2_version.clone());
        let meta = match self.round_meta.get(&meta_path) {
            Some(m) => Ok(m.clone()),
            None => fetch::kv2_meta(&self.client, token, &s.spec.name, &meta_path).await,
        };
        if let Ok(m) = &meta {
            self.round_meta.insert(meta_path.clone(), m.clone());
        }
        let s = &self.secrets[i];
        match meta {
            Ok(m) if m.deleted => Err(FetchError::Deleted {
                secret: s.spec.name.clone(),
                path: meta_path,
                version: m.current.number,
            }),
            Ok(m) if !known.is_some_and(|k| k.same_as(&m.current)) => {
                debug!(secret = %s.spec.name, version = m.current.number, "new KV version");
                self.fetch_into(i, token).await
            }
            Ok(_) => Ok(()),
            Err(e) if e.is_forbidden() => {
                self.fetch_into(i, token).await?;
                let s = &mut self.secrets[i];
                s.metadata_denied = true;
                info!(secret = %s.spec.name, "policy does not allow reading KV metadata; re-reading the data on each refresh instead");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Renders every secret after any data changed; writes only changed bytes; notifies.
    fn render_and_write(&mut self) {
        if !self.secrets.iter().any(|s| s.dirty) {
            return;
        }
        let all: BTreeMap<String, Map<String, Value>> = self
            .secrets
            .iter()
            .filter_map(|s| Some((s.spec.name.clone(), s.fetched.as_ref()?.data.clone())))
            .collect();
        let complete = all.len() == self.secrets.len();
        let mut changed = Vec::new();
        let now = Instant::now();
        for i in 0..self.secrets.len() {
            let s = &self.secrets[i];
            let Some(own) = all.get(&s.spec.name) else {
                continue;
            };
            // A failed write waits for its backoff.
            if s.write_failed && s.retry_at.is_some_and(|r| r > now) {
                continue;
            }
            if uses_other_secrets(&s.spec) && !complete {
                continue;
            }
            let path = self.cfg.paths.secrets_dir.join(&s.spec.file);
            let bytes = match self.renderer.render(&s.spec, own, &all) {
                Ok(bytes) => bytes,
                Err(e) => {
                    // The same data renders the same way: wait for new data.
                    error!(secret = %s.spec.name, error = %e, "render failed; keeping the last good file");
                    self.secrets[i].dirty = false;
                    self.secrets[i].last_error = Some(e.to_string());
                    self.metrics.failure(&self.secrets[i].spec.name);
                    continue;
                }
            };
            match write_atomic(&path, &bytes, s.spec.mode, s.spec.group) {
                Ok(written) => {
                    let s = &mut self.secrets[i];
                    if s.write_failed {
                        info!(secret = %s.spec.name, "file written again after failures");
                        s.write_failed = false;
                        s.failures = 0;
                        s.retry_at = None;
                        s.last_error = None;
                    }
                    s.rendered = true;
                    s.dirty = false;
                    if written != Written::Unchanged {
                        info!(secret = %s.spec.name, file = %path.display(), ?written, "file written");
                        self.metrics.success(&s.spec.name, true);
                    }
                    if written == Written::Replaced {
                        changed.push(i);
                    }
                }
                Err(e) => {
                    // Disk full, permissions, a path in the way: may clear, so the secret
                    // stays dirty and the write is retried with backoff.
                    self.secrets[i].write_failed = true;
                    self.fail(i, e.to_string());
                }
            }
        }
        if !self.ready && self.all_rendered() {
            match probe::mark_ready(&self.cfg.paths.state_dir) {
                Ok(()) => self.ready = true,
                Err(e) => error!(error = %e, "cannot write the ready marker"),
            }
        }
        if self.notify_enabled && !changed.is_empty() {
            self.notify(&changed);
        }
    }

    fn notify_client(&self) -> Option<reqwest::Client> {
        self.http
            .get_or_init(|| match reqwest::Client::builder().build() {
                Ok(c) => Some(c),
                Err(e) => {
                    error!(error = %e, "cannot build the HTTP client for notifications");
                    None
                }
            })
            .clone()
    }

    /// Sends each distinct target of the `changed` secrets (and the pod's) once, in the
    /// background so a slow app never delays the next round.
    fn notify(&self, changed: &[usize]) {
        let targets = notify::targets(
            changed.iter().map(|&i| &self.secrets[i].spec),
            &self.cfg.notify,
        );
        for target in targets {
            let http = match &target {
                NotifySpec::Http { .. } => self.notify_client(),
                _ => None,
            };
            tokio::spawn(async move {
                let what = notify::describe(&target);
                match notify::send(http.as_ref(), &target).await {
                    Ok(()) => info!(target = %what, "notified"),
                    Err(e) => warn!(target = %what, error = %e, "notification failed"),
                }
            });
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

fn expired_or_forbidden(e: &AuthError, expires: Option<Instant>, now: Instant) -> bool {
    e.is_forbidden() || expires.is_some_and(|x| x <= now)
}

/// Schedules a token's renewal (or a new login when it cannot be renewed further).
fn token_state(token: Token, login_ttl: Duration, now: Instant) -> TokenState {
    let (expires, next) = if token.ttl.is_zero() {
        (None, None)
    } else {
        let at = next_renewal(token.ttl, now, jitter());
        let next = if capped(login_ttl, token.ttl) {
            // Near the max TTL: log in again now, while the old token (and its leases) live.
            (now, TokenAction::Relogin)
        } else if token.renewable {
            (at, TokenAction::Renew)
        } else {
            (at, TokenAction::Relogin)
        };
        (Some(after(now, token.ttl)), Some(next))
    };
    TokenState {
        token,
        login_ttl,
        expires,
        next,
        failures: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::Lease;

    fn mk_spec(json: serde_json::Value) -> SecretSpec {
        serde_json::from_value(json).expect("spec")
    }

    fn mk_fetched(kv2: Option<u64>, lease: Option<Lease>) -> Fetched {
        Fetched {
            data: Map::new(),
            kv2_version: kv2.map(|number| crate::fetch::Kv2Version {
                number,
                created: String::new(),
            }),
            lease,
            expires_at: None,
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

    #[test]
    fn token_schedule() {
        let now = Instant::now();
        let mk = |ttl: u64, renewable| Token {
            secret: Secret::new("t"),
            ttl: Duration::from_secs(ttl),
            renewable,
        };
        assert!(
            token_state(mk(0, false), Duration::ZERO, now)
                .next
                .is_none()
        );
        let t = token_state(mk(30, true), Duration::from_secs(30), now);
        assert_eq!(t.next.map(|n| n.1), Some(TokenAction::Renew));
        let t = token_state(mk(10, true), Duration::from_secs(30), now);
        assert_eq!(t.next, Some((now, TokenAction::Relogin)));
        let t = token_state(mk(30, false), Duration::from_secs(30), now);
        assert_eq!(t.next.map(|n| n.1), Some(TokenAction::Relogin));
    }
}
