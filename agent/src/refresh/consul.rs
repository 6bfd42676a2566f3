//! consul-template secrets in the loop: their requests as shared entries, rendering from them.

use std::time::{Instant, SystemTime};

use vaultlet_gotemplate::{Answers, Limits, Outcome, SecretRequest};

use super::{Agent, handed_path};
use crate::config::{SecretSpec, TemplateLanguage};
use crate::consul::{self, CtRequest, CtTemplate, MAX_ROUNDS};
use crate::handoff::Handoff;
use crate::render::{RenderFailure, check_env_output};
use crate::schedule::schedule;
use crate::schedule::{Role, SecretState};

/// The agent's entries for `specs`: one per secret, then one per distinct Vault request the
/// consul-template secrets make (known before the first render). A template that does not
/// parse, or uses a refused function, is a config error naming the secret.
pub(super) fn entries(specs: &[SecretSpec]) -> Result<Vec<SecretState>, RenderFailure> {
    let mut out: Vec<SecretState> = specs.iter().cloned().map(SecretState::new).collect();
    for (i, spec) in specs.iter().enumerate() {
        if spec.language != TemplateLanguage::ConsulTemplate {
            continue;
        }
        let template = consul::parse(spec).map_err(|reason| RenderFailure::Refused {
            secret: spec.name.clone(),
            reason,
        })?;
        let calls = template.secret_calls();
        // Rendered as soon as its answers are in (or at once, to learn computed paths).
        out[i].dirty = true;
        out[i].role = Role::Template(Box::new(CtTemplate {
            template,
            uses: Vec::new(),
            rounds: 0,
        }));
        for req in calls.into_iter().filter_map(|c| c.request) {
            register(&mut out, i, req);
        }
    }
    Ok(out)
}

/// Makes `user` use `req`: the entry of an identical request when there is one (one Vault
/// request for every template making it), else a new entry. Returns its index.
fn register(entries: &mut Vec<SecretState>, user: usize, req: SecretRequest) -> usize {
    let found = entries
        .iter()
        .position(|e| matches!(&e.role, Role::Request(r) if r.req == req));
    let idx = match found {
        Some(idx) => idx,
        None => {
            let mut entry = SecretState::new(consul::request_spec(&entries[user].spec.name, &req));
            entry.role = Role::Request(CtRequest {
                req,
                users: Vec::new(),
            });
            entries.push(entry);
            entries.len() - 1
        }
    };
    if let Role::Request(r) = &mut entries[idx].role
        && !r.users.contains(&user)
    {
        r.users.push(user);
    }
    if let Role::Template(t) = &mut entries[user].role
        && !t.uses.contains(&idx)
    {
        t.uses.push(idx);
    }
    idx
}

impl Agent {
    /// Renders consul-template secret `i` from the answers at hand. `None` while a request
    /// it needs has no answer yet (its first fetch runs, or failed and is retried: Vault
    /// Agent waits too); a path computed at render time becomes a new request first.
    pub(super) fn render_ct(&mut self, i: usize) -> Option<Result<Vec<u8>, String>> {
        let outcome = self.render_from_answers(i)?;
        let name = self.secrets[i].spec.name.clone();
        let Role::Template(t) = &mut self.secrets[i].role else {
            return None;
        };
        match outcome {
            Ok(Outcome::Rendered(out)) => {
                t.rounds = 0;
                let spec = &self.secrets[i].spec;
                if spec.env
                    && let Err(e) = check_env_output(spec, &serde_json::Map::new(), &out)
                {
                    return Some(Err(e.to_string()));
                }
                Some(Ok(out.into_bytes()))
            }
            Ok(Outcome::Missing(req)) => {
                t.rounds += 1;
                if t.rounds > MAX_ROUNDS {
                    t.rounds = 0;
                    return Some(Err(format!(
                        "secret {name:?}: the template computed more than {MAX_ROUNDS} Vault paths at render time (secret (printf ...) in a range?); name the paths as string literals"
                    )));
                }
                register(&mut self.secrets, i, req);
                None
            }
            Err(e) => Some(Err(format!(
                "secret {name:?}: cannot render the consul-template template: {e}"
            ))),
        }
    }

    /// Renders template `i` with the answers at hand; `None` while one of its requests has
    /// no answer yet.
    fn render_from_answers(&self, i: usize) -> Option<vaultlet_gotemplate::Result<Outcome>> {
        let Role::Template(t) = &self.secrets[i].role else {
            return None;
        };
        let mut answers = Answers::new();
        for &r in &t.uses {
            let entry = &self.secrets[r];
            let (Role::Request(req), Some(f)) = (&entry.role, &entry.fetched) else {
                return None;
            };
            answers.insert(req.req.clone(), Ok(f.raw.clone().unwrap_or_default()));
        }
        let limits = Limits {
            max_output: usize::try_from(self.cfg.paths.max_file_size).unwrap_or(usize::MAX),
            ..Limits::default()
        };
        Some(t.template.render_prefetched(&answers, limits))
    }

    /// Classic mode: adopts the handed-over answers of paths the templates compute at
    /// render time too (the static ones are adopted with every other entry), so a computed
    /// write is not issued again by the sidecar. Returns how many were adopted.
    pub(super) fn adopt_computed(&mut self, handoff: &Handoff, now: Instant) -> usize {
        let mut adopted = 0;
        let templates: Vec<usize> = (0..self.secrets.len())
            .filter(|&i| matches!(self.secrets[i].role, Role::Template(_)))
            .collect();
        for i in templates {
            for _ in 0..MAX_ROUNDS {
                let Some(Ok(Outcome::Missing(req))) = self.render_from_answers(i) else {
                    break;
                };
                let idx = register(&mut self.secrets, i, req);
                let entry = &mut self.secrets[idx];
                let Some((f, requested)) = handoff.secret(&entry.spec.name, &handed_path(entry))
                else {
                    break;
                };
                entry.due = schedule(&f, now, SystemTime::now());
                entry.lease_requested = requested;
                entry.fetched = Some(f);
                adopted += 1;
            }
        }
        adopted
    }

    /// Marks the consul-template secrets using request entry `i` for rendering.
    pub(super) fn mark_users(&mut self, i: usize) {
        if let Role::Request(r) = &self.secrets[i].role {
            for u in r.users.clone() {
                self.secrets[u].dirty = true;
            }
        }
    }

    /// Why consul-template secret `i` is not rendered yet (its requests' errors).
    pub(super) fn ct_pending(&self, i: usize) -> Option<String> {
        let Role::Template(t) = &self.secrets[i].role else {
            return None;
        };
        let errors: Vec<String> = t
            .uses
            .iter()
            .filter_map(|&r| self.secrets[r].last_error.clone())
            .collect();
        Some(if errors.is_empty() {
            format!(
                "secret {:?}: waiting for the Vault answers its template uses",
                self.secrets[i].spec.name
            )
        } else {
            errors.join("; ")
        })
    }
}
