//! The token manager: logs in, renews the token on its own schedule, logs in again near the
//! max TTL or once the token is gone, and revokes it on shutdown.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::auth::{AuthError, Authenticator, Token};
use crate::client::{Secret, VaultClient};
use crate::handoff::HandedToken;
use crate::metrics::Metrics;
use crate::renew::{after, backoff, capped, jitter, next_renewal};
use crate::write::write_atomic;

/// First retry delay after a failed login or renewal.
pub(crate) const RETRY_BASE: Duration = Duration::from_millis(250);
/// How long revoking the token on shutdown may take.
const REVOKE_TIMEOUT: Duration = Duration::from_millis(800);

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

/// Keeps one token alive; the rest of the agent only asks for the current one.
#[derive(Debug)]
pub(crate) struct TokenManager {
    auth: Authenticator,
    method: &'static str,
    sink: Option<PathBuf>,
    metrics: Arc<Metrics>,
    retry_max: Duration,
    state: Option<TokenState>,
    logins: u64,
    failures: u32,
    next_login: Instant,
    last_error: Option<String>,
}

impl TokenManager {
    pub(crate) fn new(
        auth: Authenticator,
        method: &'static str,
        sink: Option<PathBuf>,
        metrics: Arc<Metrics>,
        retry_max: Duration,
    ) -> Self {
        Self {
            auth,
            method,
            sink,
            metrics,
            retry_max,
            state: None,
            logins: 0,
            failures: 0,
            next_login: Instant::now(),
            last_error: None,
        }
    }

    /// The token to use, if there is one.
    pub(crate) fn current(&self) -> Option<Secret> {
        self.state.as_ref().map(|t| t.token.secret.clone())
    }

    /// Why the last login failed, if it did.
    pub(crate) fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// When the token next needs attention (`None`: it never does until something fails).
    pub(crate) fn wake(&self) -> Option<Instant> {
        match &self.state {
            None => Some(self.next_login),
            Some(t) => t.next.map(|(at, _)| at),
        }
    }

    /// The current token as the handoff carries it (time left, not the original TTL).
    pub(crate) fn handed(&self, now: Instant) -> Option<HandedToken> {
        let t = self.state.as_ref()?;
        Some(HandedToken {
            secret: t.token.secret.clone(),
            ttl: t
                .expires
                .map_or(Duration::ZERO, |x| x.saturating_duration_since(now)),
            login_ttl: t.login_ttl,
            renewable: t.token.renewable,
        })
    }

    /// Takes over the init agent's token instead of logging in.
    pub(crate) fn adopt(&mut self, t: HandedToken, now: Instant) {
        info!(
            ttl_secs = t.ttl.as_secs(),
            renewable = t.renewable,
            "adopted the init agent's token"
        );
        let token = Token {
            secret: t.secret,
            ttl: t.ttl,
            renewable: t.renewable,
        };
        // The time left is shorter than the TTL granted at login, which is no cap: schedule
        // by the time left, then compare later renewals with the login TTL.
        let mut state = token_state(token, t.ttl, now);
        state.login_ttl = t.login_ttl;
        self.metrics.token_expires(state.expires);
        self.state = Some(state);
        self.logins = 1;
    }

    /// The token is gone (revoked, expired): log in again at once.
    pub(crate) fn invalidate(&mut self) {
        self.state = None;
        self.next_login = Instant::now();
    }

    /// Logs in or renews as scheduled. True when a login replaced an earlier token, so the
    /// leases that died with it must be fetched anew.
    pub(crate) async fn upkeep(&mut self, now: Instant) -> bool {
        let logins = self.logins;
        if let Some(t) = &self.state
            && let Some((at, action)) = t.next
            && at <= now
        {
            match action {
                TokenAction::Renew => self.renew(now).await,
                TokenAction::Relogin => self.relogin_before_expiry(now).await,
            }
        }
        if self.state.is_none() && now >= self.next_login {
            self.login(now).await;
        }
        logins > 0 && self.logins > logins
    }

    /// Logs in again while the current token still lives; until a login works, the old
    /// token keeps serving for as long as it lives.
    async fn relogin_before_expiry(&mut self, now: Instant) {
        info!("token is near its max TTL or not renewable; logging in again");
        self.login(now).await;
        let retry_at = self.next_login;
        if let Some(t) = &mut self.state
            && t.next.is_some_and(|(at, _)| at <= now)
        {
            if t.expires.is_some_and(|x| x <= retry_at) {
                self.state = None;
            } else {
                t.next = Some((retry_at, TokenAction::Relogin));
            }
        }
    }

    async fn login(&mut self, now: Instant) {
        match self.auth.login().await {
            Ok(token) => {
                self.logins += 1;
                self.failures = 0;
                self.last_error = None;
                info!(
                    method = self.method,
                    ttl_secs = token.ttl.as_secs(),
                    renewable = token.renewable,
                    "logged in"
                );
                let state = token_state(token.clone(), token.ttl, now);
                self.metrics.login(true, state.expires);
                self.state = Some(state);
                self.write_sink(&token.secret);
            }
            Err(e) => {
                let delay = backoff(self.failures, RETRY_BASE, self.retry_max, jitter());
                self.failures = self.failures.saturating_add(1);
                warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "login failed");
                self.metrics.login(false, None);
                self.last_error = Some(e.to_string());
                self.next_login = after(Instant::now(), delay);
            }
        }
    }

    async fn renew(&mut self, now: Instant) {
        let Some(t) = &self.state else { return };
        let result = self.auth.renew(&t.token.secret).await;
        let Some(t) = &mut self.state else { return };
        match result {
            Ok(new) => {
                debug!(ttl_secs = new.ttl.as_secs(), "token renewed");
                let login_ttl = t.login_ttl;
                *t = token_state(new, login_ttl, now);
                self.metrics.token_expires(t.expires);
            }
            Err(e) if expired_or_forbidden(&e, t.expires, now) => {
                warn!(error = %e, "token renewal failed; logging in again");
                self.state = None;
            }
            Err(e) => {
                let delay = backoff(t.failures, RETRY_BASE, self.retry_max, jitter());
                t.failures = t.failures.saturating_add(1);
                t.next = Some((after(now, delay), TokenAction::Renew));
                warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "token renewal failed; retrying");
            }
        }
    }

    fn write_sink(&self, token: &Secret) {
        if let Some(sink) = &self.sink
            && let Err(e) = write_atomic(sink, token.expose().as_bytes(), 0o440, None)
        {
            warn!(error = %e, "cannot write the token sink");
        }
    }

    /// Revokes the token (and with it its leases), bounded in time; for shutdown.
    pub(crate) async fn revoke(&mut self) {
        let Some(t) = self.state.take() else {
            info!("stopping (no token to revoke)");
            return;
        };
        match tokio::time::timeout(REVOKE_TIMEOUT, self.auth.revoke(&t.token.secret)).await {
            Ok(Ok(())) => info!("token and its leases revoked; stopping"),
            Ok(Err(e)) => warn!(error = %e, "could not revoke the token; stopping anyway"),
            Err(_) => warn!("revoking the token timed out; stopping anyway"),
        }
    }
}

/// After a 403: is the token itself gone? Only a 403 from `lookup-self` says so; an
/// unreachable or failing Vault is no reason to log in again (and, with it, to fetch a new
/// set of dynamic credentials).
pub(crate) async fn token_gone(client: &VaultClient, token: &Secret) -> bool {
    match client.read("auth/token/lookup-self", token).await {
        Ok(_) => false,
        Err(e) => e.is_forbidden(),
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
