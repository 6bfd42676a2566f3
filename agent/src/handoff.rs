//! Classic mode's handoff: the `init` agent leaves its token, leases and fetched data in
//! the state dir (one file, mode 0600, on the agent-only memory volume) and the sidecar
//! adopts them once, so the Pod gets one login and one set of dynamic credentials.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::fetch::{Fetched, Kv2Version, Lease};
use crate::renew::ttl_secs;
use crate::write::{WriteError, write_atomic};

/// File name of the handoff in the state dir.
const FILE: &str = "handoff.json";
/// Format version of the file; another version is ignored (the sidecar logs in itself).
const VERSION: u32 = 1;

/// What the init agent hands over. Holds the token and secret values: `Debug` shows neither.
#[derive(Serialize, Deserialize)]
pub struct Handoff {
    version: u32,
    /// Unix time of writing, to age the TTLs below.
    written_at: u64,
    token: String,
    token_ttl: u64,
    token_login_ttl: u64,
    token_renewable: bool,
    secrets: Vec<HandedSecret>,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff")
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct HandedSecret {
    name: String,
    path: String,
    data: Map<String, Value>,
    kv2: Option<(u64, String)>,
    lease: Option<(String, u64, bool)>,
    lease_requested: u64,
    expires_at: Option<u64>,
    /// Vault's answer as sent (consul-template requests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    raw: Option<String>,
}

/// The token as handed over: its TTL already aged by the time since the handoff.
#[derive(Debug)]
pub struct HandedToken {
    /// The token.
    pub secret: crate::client::Secret,
    /// Time left.
    pub ttl: Duration,
    /// TTL granted at login (to tell a capped renewal).
    pub login_ttl: Duration,
    /// Whether it can be renewed.
    pub renewable: bool,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

impl Handoff {
    /// A handoff of `token` and the fetched secrets (`(name, path, fetched, lease asked)`).
    pub fn new<'a>(
        token: &HandedToken,
        secrets: impl IntoIterator<Item = (&'a str, &'a str, &'a Fetched, Duration)>,
    ) -> Self {
        Self {
            version: VERSION,
            written_at: unix(SystemTime::now()),
            token: token.secret.expose().to_owned(),
            token_ttl: token.ttl.as_secs(),
            token_login_ttl: token.login_ttl.as_secs(),
            token_renewable: token.renewable,
            secrets: secrets
                .into_iter()
                .map(|(name, path, f, requested)| HandedSecret {
                    name: name.to_owned(),
                    path: path.to_owned(),
                    data: f.data.clone(),
                    kv2: f
                        .kv2_version
                        .as_ref()
                        .map(|v| (v.number, v.created.clone())),
                    lease: f
                        .lease
                        .as_ref()
                        .map(|l| (l.id.clone(), l.ttl.as_secs(), l.renewable)),
                    lease_requested: requested.as_secs(),
                    expires_at: f.expires_at.map(unix),
                    raw: f.raw.clone(),
                })
                .collect(),
        }
    }

    /// Writes the handoff (0600) into `state_dir`.
    pub fn write(&self, state_dir: &Path) -> Result<(), WriteError> {
        // Plain structs with string keys always serialise.
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        write_atomic(&path(state_dir), &bytes, 0o600, None).map(|_| ())
    }

    /// Takes the handoff out of `state_dir` (it is removed: adopted once). `None` when there
    /// is none, it does not parse, or it is of another version.
    pub fn take(state_dir: &Path) -> Option<Self> {
        let p = path(state_dir);
        let bytes = std::fs::read(&p).ok()?;
        let _ = std::fs::remove_file(&p);
        serde_json::from_slice::<Self>(&bytes)
            .ok()
            .filter(|h| h.version == VERSION)
    }

    fn age(&self) -> u64 {
        unix(SystemTime::now()).saturating_sub(self.written_at)
    }

    /// The token, if it still has time left (a token without TTL never expires).
    pub fn token(&self) -> Option<HandedToken> {
        let age = self.age();
        let ttl = match self.token_ttl {
            0 => 0,
            t if t > age => t - age,
            _ => return None,
        };
        Some(HandedToken {
            secret: crate::client::Secret::new(self.token.clone()),
            ttl: ttl_secs(ttl),
            login_ttl: ttl_secs(self.token_login_ttl),
            renewable: self.token_renewable,
        })
    }

    /// The fetched data of secret `name` at `path`, leases aged; `None` when not handed
    /// over or its lease ran out. Also returns the lease TTL asked for at fetch time.
    pub fn secret(&self, name: &str, path: &str) -> Option<(Fetched, Duration)> {
        let s = self
            .secrets
            .iter()
            .find(|s| s.name == name && s.path == path)?;
        let age = self.age();
        let lease = match &s.lease {
            None => None,
            Some((_, ttl, _)) if *ttl <= age => return None,
            Some((id, ttl, renewable)) => Some(Lease {
                id: id.clone(),
                ttl: ttl_secs(ttl - age),
                renewable: *renewable,
            }),
        };
        let fetched = Fetched {
            data: s.data.clone(),
            kv2_version: s.kv2.as_ref().map(|(number, created)| Kv2Version {
                number: *number,
                created: created.clone(),
            }),
            lease,
            expires_at: s
                .expires_at
                .and_then(|t| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(t))),
            raw: s.raw.clone(),
        };
        Some((fetched, ttl_secs(s.lease_requested)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Secret;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_through_a_0600_file_taken_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = HandedToken {
            secret: Secret::new("s.token"),
            ttl: Duration::from_secs(3600),
            login_ttl: Duration::from_secs(3600),
            renewable: true,
        };
        let fetched = Fetched {
            data: serde_json::from_str(r#"{"username":"u","password":"p"}"#).expect("data"),
            kv2_version: None,
            lease: Some(Lease {
                id: "database/creds/app/1".into(),
                ttl: Duration::from_secs(30),
                renewable: true,
            }),
            expires_at: None,
            raw: None,
        };
        let h = Handoff::new(
            &token,
            [(
                "db",
                "database/creds/app",
                &fetched,
                Duration::from_secs(30),
            )],
        );
        assert_eq!(format!("{h:?}"), "Handoff { secrets: 1, .. }");
        h.write(dir.path()).expect("write");
        let file = dir.path().join(FILE);
        assert_eq!(
            std::fs::metadata(&file).expect("file").permissions().mode() & 0o777,
            0o600
        );
        let back = Handoff::take(dir.path()).expect("handoff");
        assert!(!file.exists(), "taken once");
        assert!(Handoff::take(dir.path()).is_none());
        let t = back.token().expect("token");
        assert_eq!(t.secret, Secret::new("s.token"));
        assert!(t.ttl <= Duration::from_secs(3600) && t.ttl >= Duration::from_secs(3590));
        let (f, requested) = back.secret("db", "database/creds/app").expect("secret");
        assert_eq!(f.data, fetched.data);
        assert_eq!(requested, Duration::from_secs(30));
        assert!(back.secret("db", "database/creds/other").is_none());
    }

    #[test]
    fn expired_parts_are_not_adopted() {
        let mut h = Handoff::new(
            &HandedToken {
                secret: Secret::new("t"),
                ttl: Duration::from_secs(10),
                login_ttl: Duration::from_secs(10),
                renewable: true,
            },
            [],
        );
        h.written_at -= 60;
        assert!(h.token().is_none());
        h.token_ttl = 0;
        assert!(h.token().is_some(), "a token without TTL never expires");
    }
}
