//! vaultlet agent: authenticates to Vault/OpenBao, renders secret files, keeps them fresh.
//!
//! The [`config`] module is the typed contract between the injector and the agent and is
//! always built; everything else sits behind the default `runtime` feature.

pub mod config;
