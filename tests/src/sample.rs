//! One sample of `samples/<name>/` set up for a pod-level test: a fresh OpenBao (and
//! PostgreSQL when asked), the sample's `setup.sh` run against it, the Pod mutated by the real
//! injector, and a [`PodSetup`] with the Secrets, ConfigMaps and tokens the Pod needs.
//!
//! Like the testkit, every helper panics with a message saying what failed: a setup failure
//! is a test failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use vaultlet_testkit::cluster::Cluster;
use vaultlet_testkit::{OpenBao, Postgres, TempDir, TestPki};

use crate::podrun::{PodSetup, TokenRequest};
use crate::{bins, injector};

/// A sample's OpenBao (and PostgreSQL) with its `setup.sh` applied.
pub struct SampleEnv {
    /// The sample's name (`samples/<name>`).
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// OpenBao dev server the sample was set up against.
    pub bao: OpenBao,
    /// The local cluster: its API server reviews the Pods' service-account tokens.
    pub k8s: &'static Cluster,
    /// PostgreSQL, for database samples.
    pub pg: Option<Postgres>,
    /// The CAs of OpenBao's TLS listener and of its clients ([`SampleOptions::mtls`]).
    pub tls: Option<SampleTls>,
    temp: TempDir,
}

/// The CAs of a sample's mutual-TLS OpenBao.
#[derive(Debug)]
pub struct SampleTls {
    /// Signs OpenBao's server certificate (`VAULT_CA_CERT` for `setup.sh`).
    pub vault_ca: TestPki,
    /// The listener trusts client certificates it signs (`CLIENT_CA_CERT`/`CLIENT_CA_KEY`).
    pub clients: TestPki,
}

impl std::fmt::Debug for SampleEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleEnv")
            .field("name", &self.name)
            .field("bao", &self.bao)
            .finish_non_exhaustive()
    }
}

/// Options for [`SampleEnv::start`].
#[derive(Debug, Default, Clone)]
pub struct SampleOptions {
    /// Start PostgreSQL and pass `POSTGRES_URL`.
    pub postgres: bool,
    /// Extra environment for `setup.sh` (e.g. `DB_DEFAULT_TTL`).
    pub env: Vec<(String, String)>,
    /// An OpenBao that keeps its data across [`OpenBao::stop`] / [`OpenBao::start`].
    pub persistent: bool,
    /// An OpenBao with a TLS listener that requires client certificates, its server
    /// certificate valid for 127.0.0.1 and the address Pods use.
    pub mtls: bool,
}

impl SampleEnv {
    /// Starts OpenBao (and PostgreSQL) and runs `samples/<name>/setup.sh` against it.
    pub fn start(name: &str, opts: &SampleOptions) -> SampleEnv {
        let dir = bins::workspace_root().join("samples").join(name);
        assert!(
            dir.join("pod.yaml").is_file(),
            "samples/{name}/pod.yaml does not exist"
        );
        let temp = TempDir::with_prefix(format!("vaultlet-e2e-{name}-")).expect("temp dir");
        let k8s = Cluster::running();
        let (bao, tls) = if opts.mtls {
            let (bao, tls) = mtls_bao(k8s);
            (bao, Some(tls))
        } else if opts.persistent {
            (OpenBao::persistent_temp(), None)
        } else {
            (OpenBao::dev(), None)
        };
        let env = SampleEnv {
            name: name.into(),
            dir,
            bao,
            k8s,
            pg: opts.postgres.then(Postgres::start),
            tls,
            temp,
        };
        env.run_setup(&opts.env);
        env
    }

    fn run_setup(&self, extra: &[(String, String)]) {
        let out_dir = self.temp.path().join("out");
        std::fs::create_dir_all(&out_dir).expect("create OUT_DIR");
        let bao_dir = vaultlet_testkit::bao_bin()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let path = format!(
            "{}:{}",
            bao_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("bash");
        cmd.arg(self.dir.join("setup.sh"))
            .env("PATH", path)
            .env("BAO_ADDR", self.bao.addr())
            .env("BAO_TOKEN", self.bao.root_token())
            .env("KUBERNETES_HOST", self.k8s.api_url())
            .env("KUBERNETES_CA_CERT", self.k8s.ca_file())
            .env("KUBERNETES_REVIEWER_JWT", self.k8s.reviewer_token())
            .env("OUT_DIR", &out_dir)
            .envs(extra.iter().map(|(k, v)| (k, v)));
        if let Some(pg) = &self.pg {
            cmd.env("POSTGRES_URL", postgres_url(pg));
        }
        if let Some(tls) = &self.tls {
            cmd.env("VAULT_CA_CERT", tls.vault_ca.ca_cert())
                .env("CLIENT_CA_CERT", tls.clients.ca_cert())
                .env("CLIENT_CA_KEY", tls.clients.ca_key());
        }
        let out = cmd.output().expect("run setup.sh");
        assert!(
            out.status.success(),
            "samples/{}/setup.sh failed ({}):\n{}{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The sample's `pod.yaml` as JSON.
    pub fn pod(&self) -> Value {
        let text = std::fs::read_to_string(self.dir.join("pod.yaml")).expect("read pod.yaml");
        injector::parse_yaml(&text).expect("pod.yaml is YAML")
    }

    /// The injector flags for this sample: `--vault-addr` (and allowlist) of the test's
    /// OpenBao, `samples/<name>/injector.args` if present, then `extra`.
    pub fn injector_flags(&self, extra: &[&str]) -> Vec<String> {
        let mut flags = vec![
            "--vault-addr".to_string(),
            self.bao.addr(),
            "--allowed-vault-addrs".to_string(),
            self.bao.addr(),
        ];
        if let Ok(text) = std::fs::read_to_string(self.dir.join("injector.args")) {
            flags.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        flags.extend(extra.iter().map(|s| s.to_string()));
        flags
    }

    /// Mutates `pod` with the real `vaultlet-injector preview`.
    pub fn mutate(&self, pod: &Value, extra_flags: &[&str]) -> Value {
        let bin = bins::injector_bin().unwrap_or_else(|e| panic!("{e}"));
        let text = serde_json::to_string(pod).expect("serialise pod");
        let object = injector::mutate(&bin, &text, &self.injector_flags(extra_flags))
            .unwrap_or_else(|e| panic!("samples/{}: {e}", self.name));
        let mutated = injector::pod_of(&object);
        let mut label = self.name.clone();
        for flag in extra_flags {
            label.push('-');
            label.extend(flag.chars().filter(char::is_ascii_alphanumeric));
        }
        save_for_validation(&label, &mutated);
        mutated
    }

    /// A [`PodSetup`] for `mutated` with a work dir, the Secrets `setup.sh` wrote, the
    /// ConfigMaps and Secrets of the sample's YAML files, service-account tokens from the
    /// API server's TokenRequest, and the agent pointed at this OpenBao.
    pub fn pod_setup(&self, mutated: Value) -> PodSetup<'_> {
        let work = self.temp.path().join("node");
        let mut setup = PodSetup::new(mutated, work)
            .vault_addr(self.bao.addr())
            .token_minter(|r: &TokenRequest| {
                self.k8s
                    .ensure_service_account(&r.namespace, &r.service_account);
                self.k8s.token(
                    &r.namespace,
                    &r.service_account,
                    &r.audience,
                    r.expiration_secs,
                    None,
                )
            });
        for (name, data) in self.written_secrets() {
            setup = setup.secret(&name, data);
        }
        for (kind, name, data) in self.yaml_objects() {
            setup = match kind.as_str() {
                "ConfigMap" => setup.config_map(&name, data),
                _ => setup.secret(&name, data),
            };
        }
        setup
    }

    /// `$OUT_DIR/secrets/<secret>/<key>` as Secret data.
    pub fn written_secrets(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        let root = self.temp.path().join("out/secrets");
        let Ok(dirs) = std::fs::read_dir(&root) else {
            return out;
        };
        for dir in dirs.flatten() {
            let mut data = BTreeMap::new();
            for file in std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let value = std::fs::read_to_string(file.path()).expect("read secret file");
                data.insert(file.file_name().to_string_lossy().into_owned(), value);
            }
            out.insert(dir.file_name().to_string_lossy().into_owned(), data);
        }
        out
    }

    /// ConfigMaps and Secrets (`stringData`) defined in the sample's YAML files.
    fn yaml_objects(&self) -> Vec<(String, String, BTreeMap<String, String>)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let Ok(v) = injector::parse_yaml(&text) else {
                continue;
            };
            let kind = v["kind"].as_str().unwrap_or_default();
            let data = match kind {
                "ConfigMap" => &v["data"],
                "Secret" => &v["stringData"],
                _ => continue,
            };
            let map = data
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let name = v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            out.push((kind.to_string(), name, map));
        }
        out
    }

    /// Runs the `bao` CLI as root against this sample's OpenBao; returns stdout.
    pub fn bao(&self, args: &[&str]) -> String {
        self.bao.bao_ok(args)
    }

    /// A scratch directory that lives as long as the sample.
    pub fn scratch(&self) -> &Path {
        self.temp.path()
    }
}

/// A dev OpenBao with a listener requiring client certificates of a new client CA, serving a
/// certificate of a new server CA for 127.0.0.1 and the host address of the node's Pods.
fn mtls_bao(k8s: &Cluster) -> (OpenBao, SampleTls) {
    let vault_ca = TestPki::new("openbao-ca");
    let mut sans = vec!["IP:127.0.0.1".to_string()];
    sans.extend(k8s.host_for_pods().map(|h| format!("IP:{h}")));
    let sans: Vec<&str> = sans.iter().map(String::as_str).collect();
    let server = vault_ca.issue("openbao", "openbao", &sans);
    let clients = TestPki::new("client-ca");
    let bao = OpenBao::dev_mtls(&server, clients.ca_cert());
    (bao, SampleTls { vault_ca, clients })
}

/// `postgresql://postgres:PASS@127.0.0.1:PORT/postgres?sslmode=disable`.
pub fn postgres_url(pg: &Postgres) -> String {
    format!(
        "postgresql://{}:{}@127.0.0.1:{}/postgres?sslmode=disable",
        pg.superuser(),
        pg.superuser_password(),
        pg.port()
    )
}

/// Writes the mutated Pod to `$VAULTLET_VALIDATE_DIR/e2e-<label>.yaml` (JSON is YAML) when
/// that is set: scripts/test.sh validates every file there with kubernetes-validate.
fn save_for_validation(name: &str, pod: &Value) {
    if let Some(dir) = std::env::var_os("VAULTLET_VALIDATE_DIR") {
        let path = Path::new(&dir).join(format!("e2e-{name}.yaml"));
        let text = serde_json::to_string_pretty(pod).expect("serialise pod");
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}
