//! Reading secrets from Vault: KV v1/v2, any logical path (read or write), lease renewal.

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use crate::client::{ClientError, Response, Secret, VaultClient};
use crate::config::SecretSpec;
use crate::renew::{MAX_TTL, ttl_secs};

/// Errors while fetching one secret; each names the secret.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Vault refused or failed the call.
    #[error("secret {secret:?}: {source}")]
    Vault {
        /// Secret name.
        secret: String,
        /// What Vault said.
        source: ClientError,
    },
    /// Nothing at the path (or the KV v2 version was deleted).
    #[error(
        "secret {secret:?}: nothing at {path:?} (deleted, or a wrong path); check the secret exists in Vault"
    )]
    NotFound {
        /// Secret name.
        secret: String,
        /// Vault path.
        path: String,
    },
    /// The answer had no data to render.
    #[error("secret {secret:?}: Vault's answer for {path:?} has no data")]
    NoData {
        /// Secret name.
        secret: String,
        /// Vault path.
        path: String,
    },
    /// Vault did not answer within a job's deadline.
    #[error("secret {secret:?}: no answer from Vault within {after:?}; retrying")]
    TimedOut {
        /// Secret name.
        secret: String,
        /// The deadline.
        after: Duration,
    },
    /// The latest KV v2 version is deleted or destroyed.
    #[error(
        "secret {secret:?}: version {version} at {path:?} is deleted; keeping the last good file"
    )]
    Deleted {
        /// Secret name.
        secret: String,
        /// Metadata path.
        path: String,
        /// The deleted version.
        version: u64,
    },
}

impl FetchError {
    pub(crate) fn vault(secret: &str, path: &str, source: ClientError) -> Self {
        if source.status() == Some(404) {
            Self::NotFound {
                secret: secret.into(),
                path: path.into(),
            }
        } else {
            Self::Vault {
                secret: secret.into(),
                source,
            }
        }
    }

    /// True when Vault refused the token (403): re-authenticating may help.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::Vault { source, .. } if source.is_forbidden())
    }
}

/// A lease on a dynamic secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Lease id, for `sys/leases/renew`.
    pub id: String,
    /// Time to live when issued or last renewed.
    pub ttl: Duration,
    /// Whether the lease can be renewed.
    pub renewable: bool,
}

/// One fetched secret: the fields to render plus what tells us when to fetch again.
#[derive(Clone, PartialEq)]
pub struct Fetched {
    /// The fields (for KV v2, the inner `data.data`).
    pub data: Map<String, Value>,
    /// KV v2 version, when the answer had the KV v2 shape.
    pub kv2_version: Option<Kv2Version>,
    /// The lease of a dynamic secret.
    pub lease: Option<Lease>,
    /// Expiry of an issued certificate (`data.expiration` of PKI answers).
    pub expires_at: Option<SystemTime>,
    /// Vault's whole answer as sent, kept for consul-template secrets only (their
    /// templates see `.Data`, `.LeaseID`, ... with numbers as Vault wrote them).
    pub raw: Option<String>,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched")
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .field("kv2_version", &self.kv2_version)
            .field("lease", &self.lease)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// One KV v2 version: its number and when it was written. Numbers start again at 1 when a
/// secret's metadata is deleted and the secret written anew, so only both tell versions apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv2Version {
    /// The version number.
    pub number: u64,
    /// Its `created_time` (RFC 3339, as Vault wrote it); empty when the answer had none.
    pub created: String,
}

impl Kv2Version {
    /// True when `other` is this version; a missing creation time on either side matches
    /// any (older servers, partial answers), so that never causes a read every interval.
    pub fn same_as(&self, other: &Kv2Version) -> bool {
        self.number == other.number
            && (self.created.is_empty()
                || other.created.is_empty()
                || self.created == other.created)
    }
}

/// What KV v2 metadata says about the latest version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv2Meta {
    /// The current version.
    pub current: Kv2Version,
    /// The current version is deleted or destroyed.
    pub deleted: bool,
}

/// The request path of a secret: a pinned KV v2 version becomes `?version=N`.
pub fn request_path(spec: &SecretSpec) -> String {
    match spec.version {
        Some(v) => format!("{}?version={v}", spec.path),
        None => spec.path.clone(),
    }
}

/// Maps a KV v2 data path to its metadata path: the first `/data/` segment becomes
/// `/metadata/` (`secret/data/app` -> `secret/metadata/app`).
pub fn kv2_metadata_path(path: &str) -> Option<String> {
    let idx = path.find("/data/")?;
    Some(format!(
        "{}/metadata/{}",
        &path[..idx],
        &path[idx + "/data/".len()..]
    ))
}

/// Interprets a Vault answer: KV v2 is detected by the `data.data` + `data.metadata` shape.
pub fn interpret(resp: Response) -> Option<Fetched> {
    let lease = (!resp.lease_id.is_empty()).then(|| Lease {
        id: resp.lease_id.clone(),
        ttl: ttl_secs(resp.lease_duration),
        renewable: resp.renewable,
    });
    let mut data = resp.data?;
    if let (Some(Value::Object(_)), Some(Value::Object(meta))) =
        (data.get("data"), data.get("metadata"))
    {
        let version = meta
            .get("version")
            .and_then(Value::as_u64)
            .map(|number| Kv2Version {
                number,
                created: created_time(meta.get("created_time")),
            });
        if let Some(Value::Object(inner)) = data.remove("data") {
            return Some(Fetched {
                data: inner,
                kv2_version: version,
                lease,
                expires_at: None,
                raw: None,
            });
        }
    }
    let expires_at = data
        .get("expiration")
        .and_then(Value::as_u64)
        .filter(|&s| s > 0)
        // Past what the clock can hold: as far as it can, which is "not for a long time".
        .map(|s| {
            SystemTime::UNIX_EPOCH
                .checked_add(Duration::from_secs(s))
                .unwrap_or_else(|| SystemTime::now() + MAX_TTL)
        });
    Some(Fetched {
        data,
        kv2_version: None,
        lease,
        expires_at,
        raw: None,
    })
}

/// Fetches one secret: a read, or a write when the spec has parameters.
pub async fn fetch(
    client: &VaultClient,
    token: &Secret,
    spec: &SecretSpec,
) -> Result<Fetched, FetchError> {
    let path = request_path(spec);
    let resp = if spec.params.is_empty() {
        client.read(&path, token).await
    } else {
        client.write(&path, Some(token), &json!(spec.params)).await
    }
    .map_err(|e| FetchError::vault(&spec.name, &spec.path, e))?;
    resp.and_then(interpret).ok_or_else(|| FetchError::NoData {
        secret: spec.name.clone(),
        path: spec.path.clone(),
    })
}

/// Reads KV v2 metadata (`current_version`, deletion) — one cheap call per check.
pub async fn kv2_meta(
    client: &VaultClient,
    token: &Secret,
    secret: &str,
    meta_path: &str,
) -> Result<Kv2Meta, FetchError> {
    let resp = client
        .read(meta_path, token)
        .await
        .map_err(|e| FetchError::vault(secret, meta_path, e))?;
    let data = resp
        .and_then(|r| r.data)
        .ok_or_else(|| FetchError::NoData {
            secret: secret.into(),
            path: meta_path.into(),
        })?;
    parse_kv2_meta(&data).ok_or_else(|| FetchError::NoData {
        secret: secret.into(),
        path: meta_path.into(),
    })
}

/// Pure part of [`kv2_meta`].
pub fn parse_kv2_meta(data: &Map<String, Value>) -> Option<Kv2Meta> {
    let current_version = data.get("current_version")?.as_u64()?;
    let version = data
        .get("versions")
        .and_then(|v| v.get(current_version.to_string()));
    let is_set = |field: &str| {
        version
            .and_then(|v| v.get(field))
            .is_some_and(|f| f.as_str().is_some_and(|s| !s.is_empty()) || f.as_bool() == Some(true))
    };
    Some(Kv2Meta {
        current: Kv2Version {
            number: current_version,
            created: created_time(version.and_then(|v| v.get("created_time"))),
        },
        deleted: is_set("deletion_time") || is_set("destroyed"),
    })
}

fn created_time(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// Renews a lease (`sys/leases/renew`), asking for `increment`; returns the granted lease.
pub async fn renew_lease(
    client: &VaultClient,
    token: &Secret,
    secret: &str,
    lease: &Lease,
    increment: Duration,
) -> Result<Lease, FetchError> {
    let body = json!({ "lease_id": lease.id, "increment": increment.as_secs() });
    let resp = client
        .call(
            reqwest::Method::PUT,
            "sys/leases/renew",
            Some(token),
            Some(&body),
        )
        .await
        .map_err(|e| FetchError::vault(secret, "sys/leases/renew", e))?;
    let resp = resp.ok_or_else(|| FetchError::NoData {
        secret: secret.into(),
        path: "sys/leases/renew".into(),
    })?;
    Ok(Lease {
        id: if resp.lease_id.is_empty() {
            lease.id.clone()
        } else {
            resp.lease_id
        },
        ttl: ttl_secs(resp.lease_duration),
        renewable: resp.renewable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_resp(json: &str) -> Response {
        serde_json::from_str(json).expect("response json")
    }

    #[test]
    fn metadata_paths() {
        assert_eq!(
            kv2_metadata_path("secret/data/app").as_deref(),
            Some("secret/metadata/app")
        );
        assert_eq!(
            kv2_metadata_path("kv/team/data/a/data/b").as_deref(),
            Some("kv/team/metadata/a/data/b")
        );
        assert_eq!(kv2_metadata_path("secret/app"), None);
        assert_eq!(kv2_metadata_path("database/creds/app"), None);
    }

    #[test]
    fn kv2_shape_is_detected() {
        let f = interpret(mk_resp(
            r#"{"data":{"data":{"user":"u","pw":"p"},"metadata":{"version":3,"created_time":"x"}},
                "lease_id":"","lease_duration":0,"renewable":false}"#,
        ))
        .expect("fetched");
        assert_eq!(
            f.kv2_version,
            Some(Kv2Version {
                number: 3,
                created: "x".into()
            })
        );
        assert_eq!(f.data.get("user"), Some(&json!("u")));
        assert!(f.lease.is_none());
    }

    #[test]
    fn kv1_and_dynamic_keep_leases() {
        let kv1 = interpret(mk_resp(
            r#"{"data":{"data":"not-an-object","k":"v"},"lease_id":"","lease_duration":2764800}"#,
        ))
        .expect("fetched");
        assert_eq!(kv1.kv2_version, None);
        assert!(kv1.lease.is_none());
        assert_eq!(kv1.data.len(), 2);
        let db = interpret(mk_resp(
            r#"{"data":{"username":"v-1","password":"p"},"lease_id":"database/creds/app/abc",
                "lease_duration":30,"renewable":true}"#,
        ))
        .expect("fetched");
        assert_eq!(
            db.lease,
            Some(Lease {
                id: "database/creds/app/abc".into(),
                ttl: Duration::from_secs(30),
                renewable: true
            })
        );
        assert!(!format!("{db:?}").contains("\"p\""));
    }

    #[test]
    fn pki_expiration_is_kept() {
        let f = interpret(mk_resp(
            r#"{"data":{"certificate":"C","private_key":"K","expiration":1700000000}}"#,
        ))
        .expect("fetched");
        assert_eq!(
            f.expires_at,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert!(interpret(mk_resp(r#"{"lease_id":""}"#)).is_none());
    }

    #[test]
    fn extreme_ttls_and_expirations_are_clamped() {
        let f = interpret(mk_resp(&format!(
            r#"{{"data":{{"expiration":{}}},"lease_id":"l","lease_duration":{},"renewable":true}}"#,
            u64::MAX,
            u64::MAX
        )))
        .expect("fetched");
        assert_eq!(f.lease.map(|l| l.ttl), Some(MAX_TTL));
        assert!(f.expires_at.expect("expiry") > SystemTime::now() + Duration::from_secs(3600));
    }

    #[test]
    fn pinned_version_path() {
        let mut spec: SecretSpec =
            serde_json::from_str(r#"{"name":"a","path":"secret/data/app","file":"a"}"#)
                .expect("spec");
        assert_eq!(request_path(&spec), "secret/data/app");
        spec.version = Some(2);
        assert_eq!(request_path(&spec), "secret/data/app?version=2");
    }

    #[test]
    fn kv2_metadata_deletion() {
        let meta = |deleted: &str| {
            serde_json::from_str::<Map<String, Value>>(&format!(
                r#"{{"current_version":2,"versions":{{"1":{{"deletion_time":"","destroyed":false}},
                   "2":{{"created_time":"2026-11-30T10:00:00Z","deletion_time":"{deleted}","destroyed":false}}}}}}"#
            ))
            .expect("json")
        };
        assert_eq!(
            parse_kv2_meta(&meta("")),
            Some(Kv2Meta {
                current: Kv2Version {
                    number: 2,
                    created: "2026-11-30T10:00:00Z".into()
                },
                deleted: false
            })
        );
        assert!(
            parse_kv2_meta(&meta("2026-01-01T00:00:00Z"))
                .expect("meta")
                .deleted
        );
        assert_eq!(parse_kv2_meta(&Map::new()), None);
    }

    #[test]
    fn versions_differ_by_number_or_creation_time() {
        let v = |number, created: &str| Kv2Version {
            number,
            created: created.into(),
        };
        assert!(v(1, "t1").same_as(&v(1, "t1")));
        assert!(!v(1, "t1").same_as(&v(1, "t2")), "deleted and written anew");
        assert!(!v(1, "t1").same_as(&v(2, "t1")));
        assert!(v(1, "").same_as(&v(1, "t1")));
        assert!(v(1, "t1").same_as(&v(1, "")));
    }
}
