//! The output side of the loop: render every secret after new data, write changed files
//! (retrying failed writes with backoff), mark readiness, notify the app.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{Map, Value};
use tracing::{error, info, warn};

use super::Agent;
use crate::config::NotifySpec;
use crate::notify;
use crate::probe;
use crate::render::uses_other_secrets;
use crate::schedule::Role;
use crate::write::{Written, write_atomic_in};

impl Agent {
    /// Renders every secret after any data changed; writes only changed bytes; notifies.
    pub(super) fn render_and_write(&mut self) {
        if !self.secrets.iter().any(|s| s.dirty) {
            return;
        }
        let all: BTreeMap<String, Map<String, Value>> = self
            .secrets
            .iter()
            .filter(|s| matches!(s.role, Role::Own))
            .filter_map(|s| Some((s.spec.name.clone(), s.fetched.as_ref()?.data.clone())))
            .collect();
        let complete = all.len()
            == self
                .secrets
                .iter()
                .filter(|s| matches!(s.role, Role::Own))
                .count();
        let mut changed = Vec::new();
        let now = Instant::now();
        for i in 0..self.secrets.len() {
            let s = &self.secrets[i];
            // A failed write waits for its backoff.
            if s.write_failed && s.retry_at.is_some_and(|r| r > now) {
                continue;
            }
            let rendered = match &s.role {
                Role::Request(_) => continue,
                Role::Template(_) if !s.dirty => continue,
                Role::Template(_) => match self.render_ct(i) {
                    Some(r) => r,
                    None => continue,
                },
                Role::Own => {
                    let Some(own) = all.get(&s.spec.name) else {
                        continue;
                    };
                    if uses_other_secrets(&s.spec) && !complete {
                        continue;
                    }
                    self.renderer
                        .render(&s.spec, own, &all)
                        .map_err(|e| e.to_string())
                }
            };
            let s = &self.secrets[i];
            let secrets_dir = &self.cfg.paths.secrets_dir;
            let path = secrets_dir.join(&s.spec.file);
            let bytes = match rendered {
                Ok(bytes) => bytes,
                Err(e) => {
                    // The same data renders the same way: wait for new data.
                    error!(secret = ?s.spec.name, error = %e, "render failed; keeping the last good file");
                    self.secrets[i].dirty = false;
                    self.secrets[i].last_error = Some(e);
                    self.metrics.failure(&self.secrets[i].spec.name);
                    continue;
                }
            };
            let file = std::path::Path::new(&s.spec.file);
            match write_atomic_in(secrets_dir, file, &bytes, s.spec.mode, s.spec.group) {
                Ok(written) => {
                    let s = &mut self.secrets[i];
                    if s.write_failed {
                        info!(secret = ?s.spec.name, "file written again after failures");
                        s.write_failed = false;
                        s.failures = 0;
                        s.retry_at = None;
                        s.last_error = None;
                    }
                    s.rendered = true;
                    s.dirty = false;
                    if written != Written::Unchanged {
                        info!(secret = ?s.spec.name, file = ?path, ?written, "file written");
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
