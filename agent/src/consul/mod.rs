//! consul-template secrets: their templates, the Vault requests those make, fetched as consul-template does.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};
use vaultlet_gotemplate::{SecretKind, SecretRequest, Template, kv2_data_path, kv2_list_path};

use crate::client::{Secret, VaultClient};
use crate::config::{DEFAULT_FILE_MODE, OutputFormat, SecretSpec, TemplateLanguage};
use crate::fetch::{FetchError, Fetched, interpret};

/// Renders of one template in a row that may stop at a path computed at render time (each
/// such stop fetches that path and renders again); beyond, the render is an error.
pub(crate) const MAX_ROUNDS: u32 = 32;

/// A consul-template secret: its parsed template and the requests (indices of the agent's
/// request entries) it has used so far.
#[derive(Debug, Clone)]
pub(crate) struct CtTemplate {
    pub(crate) template: Template,
    pub(crate) uses: Vec<usize>,
    /// Renders in a row that stopped at a computed path not fetched yet.
    pub(crate) rounds: u32,
}

/// One distinct Vault request of the consul-template secrets (shared by every template
/// making it, so two templates issuing the same certificate get the same one).
#[derive(Debug, Clone)]
pub(crate) struct CtRequest {
    pub(crate) req: SecretRequest,
    /// The consul-template secrets (indices) whose templates make this request.
    pub(crate) users: Vec<usize>,
}

/// What a job needs to fetch a request.
#[derive(Debug, Clone)]
pub(crate) struct CtJob {
    pub(crate) req: SecretRequest,
    pub(crate) mounts: Mounts,
}

/// KV mounts learnt from `sys/internal/ui/mounts/<path>`, (mount, is KV v2), shared by
/// every job: asked once per mount (the lock is held while one job asks, so jobs starting
/// together do not all ask).
#[derive(Debug, Clone, Default)]
pub(crate) struct Mounts(Arc<tokio::sync::Mutex<Vec<(String, bool)>>>);

fn known(mounts: &[(String, bool)], path: &str) -> Option<(String, bool)> {
    mounts
        .iter()
        .filter(|(mount, _)| {
            path.starts_with(mount.as_str()) || path == mount.trim_end_matches('/')
        })
        .max_by_key(|(mount, _)| mount.len())
        .cloned()
}

/// Parses a consul-template secret's template (a config error when it does not parse or
/// uses a refused function).
pub(crate) fn parse(spec: &SecretSpec) -> Result<Template, String> {
    let src = spec.template.as_deref().unwrap_or_default();
    Template::parse(src).map_err(|e| e.to_string())
}

/// `secret/app?version=2` -> (`secret/app`, Some(2)); other paths as they are.
fn split_version(path: &str) -> (&str, Option<u64>) {
    match path.split_once("?version=") {
        Some((p, v)) => match v.parse() {
            Ok(n) => (p, Some(n)),
            Err(_) => (path, None),
        },
        None => (path, None),
    }
}

/// The spec a request is scheduled under: named after the first secret using it (for logs
/// and metrics); writes carry their parameters (never polled), a pinned version its number
/// (never polled).
pub(crate) fn request_spec(owner: &str, req: &SecretRequest) -> SecretSpec {
    let (path, version) = split_version(&req.path);
    SecretSpec {
        name: owner.to_owned(),
        path: path.to_owned(),
        params: match req.kind {
            SecretKind::Write | SecretKind::PkiCert => req.data.clone(),
            SecretKind::Read | SecretKind::List => Default::default(),
        },
        version,
        template: None,
        language: TemplateLanguage::ConsulTemplate,
        format: OutputFormat::default(),
        file: String::new(),
        mode: DEFAULT_FILE_MODE,
        group: None,
        notify: Vec::new(),
        env: false,
    }
}

/// The key a request is handed over under in classic mode.
pub(crate) fn handoff_key(req: &SecretRequest) -> String {
    format!(
        "consul-template {:?} {} {}",
        req.kind,
        req.path,
        json!(req.data)
    )
}

/// The Vault path of `req`: KV v2 reads and lists get `data/` or `metadata/` inserted after
/// the mount, as consul-template does (the mount asked of `sys/internal/ui/mounts`).
pub(crate) async fn resolve(
    client: &VaultClient,
    token: &Secret,
    owner: &str,
    job: &CtJob,
) -> Result<String, FetchError> {
    let (path, _) = split_version(&job.req.path);
    if matches!(job.req.kind, SecretKind::Write | SecretKind::PkiCert) {
        return Ok(path.to_owned());
    }
    let mut mounts = job.mounts.0.lock().await;
    let (mount, v2) = match known(&mounts, path) {
        Some(known) => known,
        None => {
            let probe = format!("sys/internal/ui/mounts/{path}");
            match client.read(&probe, token).await {
                Ok(resp) => {
                    let data = resp.and_then(|r| r.data).unwrap_or_default();
                    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
                    let mount = text(data.get("path")).unwrap_or_default();
                    let v2 = text(data.get("type")).as_deref() == Some("kv")
                        && text(data.get("options").and_then(|o| o.get("version"))).as_deref()
                            == Some("2");
                    if !mount.is_empty() {
                        mounts.push((mount.clone(), v2));
                    }
                    (mount, v2)
                }
                // Vault answered (no permission, no such mount): not KV v2, as consul-template
                // decides; a network error is retried.
                Err(e) if e.status().is_some() => (String::new(), false),
                Err(e) => return Err(FetchError::vault(owner, &probe, e)),
            }
        }
    };
    drop(mounts);
    Ok(match (v2, job.req.kind) {
        (true, SecretKind::List) => kv2_list_path(path, &mount),
        (true, _) => kv2_data_path(path, &mount),
        (false, _) => path.to_owned(),
    })
}

/// Performs `job`'s request and keeps Vault's answer as sent for the template.
pub(crate) async fn fetch(
    client: &VaultClient,
    token: &Secret,
    owner: &str,
    job: &CtJob,
) -> Result<Fetched, FetchError> {
    let path = resolve(client, token, owner, job).await?;
    let (_, version) = split_version(&job.req.path);
    let full = match version {
        Some(v) => format!("{path}?version={v}"),
        None => path,
    };
    let (method, body) = match job.req.kind {
        SecretKind::Read => (Method::GET, None),
        SecretKind::List => (Method::from_bytes(b"LIST").unwrap_or(Method::GET), None),
        SecretKind::Write | SecretKind::PkiCert => (Method::PUT, Some(json!(job.req.data))),
    };
    let no_data = || FetchError::NoData {
        secret: owner.to_owned(),
        path: job.req.path.clone(),
    };
    let (text, resp) = client
        .call_text(method, &full, Some(token), body.as_ref())
        .await
        .map_err(|e| FetchError::vault(owner, &job.req.path, e))?
        .ok_or_else(no_data)?;
    let mut fetched = interpret(resp).ok_or_else(no_data)?;
    fetched.raw = Some(text);
    Ok(fetched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_specs() {
        assert_eq!(
            split_version("secret/app?version=2"),
            ("secret/app", Some(2))
        );
        assert_eq!(split_version("secret/app"), ("secret/app", None));
        assert_eq!(split_version("a?version=x"), ("a?version=x", None));
        let w = SecretRequest::new(SecretKind::PkiCert, "pki/issue/web", &["common_name=a"])
            .expect("request");
        let spec = request_spec("tls", &w);
        assert_eq!(
            spec.params.get("common_name").map(String::as_str),
            Some("a")
        );
        let r = SecretRequest::new(SecretKind::Read, "secret/app?version=3", &[]).expect("request");
        assert_eq!(request_spec("app", &r).version, Some(3));
        assert_ne!(handoff_key(&w), handoff_key(&r));
    }

    #[test]
    fn the_longest_known_mount_wins() {
        let m = vec![
            ("secret/".to_owned(), true),
            ("secret/team/".to_owned(), false),
        ];
        assert_eq!(known(&m, "secret/app"), Some(("secret/".into(), true)));
        assert_eq!(
            known(&m, "secret/team/x"),
            Some(("secret/team/".into(), false))
        );
        assert_eq!(known(&m, "secret"), Some(("secret/".into(), true)));
        assert_eq!(known(&m, "kv1/app"), None);
    }
}
