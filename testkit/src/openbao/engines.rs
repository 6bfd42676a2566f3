//! Secrets engine setup: KV v1/v2, database (PostgreSQL) and PKI.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{OpenBao, str_at};
use crate::{Postgres, wait_until};

/// A KV path split into its mount (`"secret/"`), the rest and the engine version.
struct KvPath {
    mount: String,
    rest: String,
    v2: bool,
}

impl OpenBao {
    /// Mounts a KV engine of `version` (1 or 2) at `mount`; for KV v2, waits until the new
    /// mount has finished its upgrade and serves requests.
    pub fn enable_kv(&self, mount: &str, version: u8) {
        self.write(
            &format!("sys/mounts/{mount}"),
            json!({ "type": "kv", "options": { "version": version.to_string() } }),
        );
        if version == 2 {
            let config = format!("{}/config", mount.trim_end_matches('/'));
            wait_until(
                Duration::from_secs(10),
                &format!("KV v2 mount {mount} ready"),
                || {
                    self.try_api(Some(self.root_token()), "GET", &config, None)
                        .is_success()
                },
            );
        }
    }

    /// Writes `pairs` at KV `path` ("secret/app"), KV v1 or v2 alike, replacing the secret.
    /// Returns OpenBao's answer (KV v2: `data.version` is the new version).
    pub fn write_kv(&self, path: &str, pairs: &[(&str, &str)]) -> Value {
        let data: Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::from(*v)))
            .collect();
        self.write_kv_json(path, Value::Object(data))
    }

    /// [`write_kv`](Self::write_kv) with any JSON object as the secret's data.
    pub fn write_kv_json(&self, path: &str, data: Value) -> Value {
        let kv = self.kv_path(path);
        if kv.v2 {
            self.write(
                &format!("{}data/{}", kv.mount, kv.rest),
                json!({ "data": data }),
            )
        } else {
            self.write(path, data)
        }
    }

    /// The key/value data at KV `path` (v1 or v2; latest version).
    pub fn read_kv(&self, path: &str) -> Value {
        let kv = self.kv_path(path);
        if kv.v2 {
            self.read(&format!("{}data/{}", kv.mount, kv.rest))["data"]["data"].take()
        } else {
            self.read(path)["data"].take()
        }
    }

    /// Deletes the secret at KV `path` entirely (KV v2: metadata and all versions).
    pub fn delete_kv(&self, path: &str) {
        let kv = self.kv_path(path);
        if kv.v2 {
            self.delete(&format!("{}metadata/{}", kv.mount, kv.rest));
        } else {
            self.delete(path);
        }
    }

    /// True when a secrets engine is mounted at `path` (with trailing slash, "pki/").
    pub fn has_mount(&self, path: &str) -> bool {
        self.read("sys/mounts")["data"].get(path).is_some()
    }

    fn kv_path(&self, path: &str) -> KvPath {
        let info = self.read(&format!("sys/internal/ui/mounts/{path}"));
        let mount = str_at(&info, "/data/path");
        let v2 = info
            .pointer("/data/options/version")
            .and_then(Value::as_str)
            == Some("2");
        let rest = path
            .trim_start_matches('/')
            .strip_prefix(mount.as_str())
            .unwrap_or_else(|| panic!("KV path {path} is not under its mount {mount}"))
            .to_string();
        KvPath { mount, rest, v2 }
    }

    /// Mounts the database engine at `database/` (once), connects it to `pg` as its superuser
    /// and creates `role` whose credentials are a PostgreSQL login role with the generated
    /// password and `VALID UNTIL` the lease expiry (it can connect to database `postgres`
    /// and run queries; revocation drops it).
    /// TTLs are OpenBao durations ("10s", "1h").
    pub fn enable_database_postgres(
        &self,
        pg: &Postgres,
        role: &str,
        default_ttl: &str,
        max_ttl: &str,
    ) {
        if !self.has_mount("database/") {
            self.write("sys/mounts/database", json!({ "type": "database" }));
        }
        self.write(
            "database/config/postgres",
            json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": pg.connection_url_template(),
                "username": pg.superuser(),
                "password": pg.superuser_password(),
                "allowed_roles": "*",
            }),
        );
        let creation = "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';";
        self.write(
            &format!("database/roles/{role}"),
            json!({
                "db_name": "postgres",
                "creation_statements": [creation],
                "default_ttl": default_ttl,
                "max_ttl": max_ttl,
            }),
        );
    }

    /// Mounts PKI at `pki/` (max TTL 10 years), generates an internal root CA and creates
    /// `role` allowing `domain` and its subdomains (e.g. `pki/issue/<role>` with
    /// `common_name=app.<domain>`). Returns the root CA certificate PEM.
    pub fn enable_pki(&self, role: &str, domain: &str) -> String {
        if !self.has_mount("pki/") {
            self.write(
                "sys/mounts/pki",
                json!({ "type": "pki", "config": { "max_lease_ttl": "87600h" } }),
            );
        }
        let root = self.write(
            "pki/root/generate/internal",
            json!({ "common_name": format!("vaultlet test root ({domain})"), "ttl": "87600h" }),
        );
        self.write(
            &format!("pki/roles/{role}"),
            json!({
                "allowed_domains": [domain],
                "allow_subdomains": true,
                "allow_bare_domains": true,
                "allow_localhost": true,
                "allow_ip_sans": true,
                "max_ttl": "72h",
            }),
        );
        str_at(&root, "/data/certificate")
    }
}
