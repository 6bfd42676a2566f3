//! Real components on loopback for vaultlet's integration and end-to-end tests: OpenBao,
//! PostgreSQL, and the local Kubernetes control plane of `scripts/cluster.sh`.
//!
//! Everything here is synchronous (std processes, sockets and threads), so it works from a plain
//! `#[test]` as well as from a tokio test. Every helper panics with a message saying what failed,
//! because a testkit failure is a test failure.
//!
//! | piece | what it runs |
//! |---|---|
//! | [`OpenBao::dev`] | `bao server -dev` on `127.0.0.1:<free port>` |
//! | [`OpenBao::dev_mtls`] | the same plus a TLS listener requiring client certificates ([`TestPki`] makes them) |
//! | [`OpenBao::persistent`] | on-disk (single-node raft) server that survives [`OpenBao::stop`] / [`OpenBao::start`] |
//! | [`Postgres`] | PostgreSQL from `VAULTLET_PG_BIN` (as user `postgres` when root) for the database engine |
//! | [`HttpRecorder`] | records HTTP calls (the agent's `http://` notify target) |
//! | [`Forward`] | a TCP forwarder from the Pod bridge's host address to a loopback server |
//! | [`HostileServer`] | redirects, endless answers; records what reached it |
//! | [`HttpServer`] | a tiny HTTP/1 server with a handler function, for other stand-ins |
//! | [`cluster::Cluster`] | the local Kubernetes of `scripts/cluster.sh` (started by scripts/test.sh), through its `kubectl` |
//! | [`Process`] | any child (e.g. the agent binary) in its own process group, logging to a file |
//!
//! The binaries come from `source scripts/tools.sh` ([`bao_bin`], [`pg_bin_dir`]). Servers are
//! killed when their handle drops, and by a watchdog within ~1 s if the test process itself
//! is killed first. Logs stay in each server's temp dir; their tail is printed when a test
//! panics while the server is alive.
//!
//! [`OpenBao`] helpers, all with the root token unless named `*_with_token`:
//! - CLI: [`bao`](OpenBao::bao), [`bao_ok`](OpenBao::bao_ok), [`bao_with_token`](OpenBao::bao_with_token);
//! - HTTP: [`api`](OpenBao::api), [`api_with_token`](OpenBao::api_with_token),
//!   [`try_api`](OpenBao::try_api) (never panics on a status), [`read`](OpenBao::read),
//!   [`write`](OpenBao::write), [`delete`](OpenBao::delete);
//! - setup: [`policy`](OpenBao::policy), [`create_token`](OpenBao::create_token),
//!   [`write_kv`](OpenBao::write_kv) / [`read_kv`](OpenBao::read_kv) /
//!   [`delete_kv`](OpenBao::delete_kv) (KV v1 and v2), [`enable_kv`](OpenBao::enable_kv),
//!   [`enable_approle`](OpenBao::enable_approle), [`wrapped_secret_id`](OpenBao::wrapped_secret_id),
//!   [`enable_kubernetes`](OpenBao::enable_kubernetes),
//!   [`enable_database_postgres`](OpenBao::enable_database_postgres),
//!   [`enable_pki`](OpenBao::enable_pki);
//! - faults: [`stop`](OpenBao::stop), [`kill`](OpenBao::kill), [`start`](OpenBao::start)
//!   (persistent server), [`OpenBao::dev_on`] (bring a server up on a port chosen earlier).
//!
//! ```no_run
//! use vaultlet_testkit::{OpenBao, cluster::Cluster};
//!
//! let bao = OpenBao::dev();
//! bao.write_kv("secret/app", &[("password", "s3cret")]);
//! bao.policy("app", r#"path "secret/data/app" { capabilities = ["read"] }"#);
//! let (role_id, secret_id) = bao.enable_approle("app", &["app"]);
//!
//! // Kubernetes auth against the real API server of scripts/cluster.sh.
//! let k8s = Cluster::running();
//! k8s.ensure_service_account("default", "app-sa");
//! bao.enable_kubernetes(k8s, "app", "app-sa", "default", &["app"]);
//! let jwt = k8s.token("default", "app-sa", "vault", 3600, None);
//! # let _ = (role_id, secret_id, jwt);
//! ```

mod bao_agent;
mod bins;
pub mod cluster;
mod forward;
mod hostile;
pub mod http;
mod openbao;
mod pki;
mod postgres;
mod process;
mod server;
mod util;

pub use bao_agent::{BaoAgentRun, bao_agent_render};
pub use bins::{bao_bin, pg_bin_dir, workspace_root};
pub use forward::Forward;
pub use hostile::{Answer, HostileServer, RawHandler};
pub use nix::sys::signal::Signal;
pub use openbao::{ApiResponse, OpenBao};
pub use pki::{CertFiles, TestPki};
pub use postgres::Postgres;
pub use process::{Process, log_tail};
pub use server::{Handler, HttpRecorder, HttpServer, Request};
pub use tempfile::TempDir;
pub use util::{free_port, free_port_pair, random_hex, wait_until};
