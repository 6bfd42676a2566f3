//! vaultlet agent: authenticates to Vault/OpenBao, renders secret files, keeps them fresh.
//!
//! The [`config`] module is the typed contract between the injector and the agent and is
//! always built, like [`envfile`] (the env dialect, whose key check the injector shares);
//! everything else sits behind the default `runtime` feature.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod config;
pub mod envfile;

#[cfg(feature = "runtime")]
pub mod auth;
#[cfg(feature = "runtime")]
pub mod cli;
#[cfg(feature = "runtime")]
pub mod client;
#[cfg(feature = "runtime")]
pub(crate) mod consul;
#[cfg(feature = "runtime")]
pub mod exit;
#[cfg(feature = "runtime")]
pub mod fetch;
#[cfg(feature = "runtime")]
pub mod handoff;
#[cfg(feature = "runtime")]
pub mod metrics;
#[cfg(feature = "runtime")]
pub mod notify;
#[cfg(feature = "runtime")]
pub mod probe;
#[cfg(feature = "runtime")]
pub mod refresh;
#[cfg(feature = "runtime")]
pub mod render;
#[cfg(feature = "runtime")]
pub mod renew;
#[cfg(feature = "runtime")]
pub(crate) mod schedule;
#[cfg(feature = "runtime")]
pub mod supervise;
#[cfg(feature = "runtime")]
pub(crate) mod tasks;
#[cfg(feature = "runtime")]
pub(crate) mod token;
#[cfg(feature = "runtime")]
pub mod write;
