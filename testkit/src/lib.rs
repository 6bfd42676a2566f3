//! Real components on loopback for vaultlet's integration and end-to-end tests.
//!
//! Everything here is synchronous (std processes, sockets and threads), so it works from a plain
//! `#[test]` as well as from a tokio test. Every helper panics with a message saying what failed,
//! because a testkit failure is a test failure.
//!
//! | piece | what it runs |
//! |---|---|
//! | [`OpenBao::dev`] | `bao server -dev` on `127.0.0.1:<free port>` |
//! | [`OpenBao::persistent`] | a file-storage server that survives [`OpenBao::stop`] / [`OpenBao::start`] |
//! | [`TokenReviewServer`] | the one Kubernetes stand-in: `POST .../tokenreviews` for OpenBao's kubernetes auth |
//! | [`Postgres`] | PostgreSQL from `VAULTLET_PG_BIN` for the database secrets engine |
//! | [`HttpRecorder`] | records HTTP calls (the agent's `http://` notify target) |
//! | [`Process`] | any child (e.g. the agent binary) in its own process group, logging to a file |
//!
//! The binaries come from `source scripts/tools.sh` ([`bao_bin`], [`pg_bin_dir`]).
//!
//! ```no_run
//! use vaultlet_testkit::{OpenBao, TokenReviewServer};
//!
//! let bao = OpenBao::dev();
//! bao.write_kv("secret/app", &[("password", "s3cret")]);
//! bao.policy("app", r#"path "secret/data/app" { capabilities = ["read"] }"#);
//! let (role_id, secret_id) = bao.enable_approle("app", &["app"]);
//!
//! let k8s = TokenReviewServer::start();
//! bao.enable_kubernetes(&k8s.url(), "app", "app-sa", "default", &["app"]);
//! let jwt = k8s.sa_token("default", "app-sa", "uid-1", "vault", 3600);
//! # let _ = (role_id, secret_id, jwt);
//! ```

mod bins;
pub mod http;
mod openbao;
mod postgres;
mod process;
mod server;
mod tokenreview;
mod util;

pub use bins::{bao_bin, pg_bin_dir, workspace_root};
pub use nix::sys::signal::Signal;
pub use openbao::{ApiResponse, OpenBao, TEST_CA_PEM};
pub use postgres::Postgres;
pub use process::{Process, log_tail};
pub use server::{HttpRecorder, Request};
pub use tempfile::TempDir;
pub use tokenreview::TokenReviewServer;
pub use util::{free_port, random_hex, wait_until};
