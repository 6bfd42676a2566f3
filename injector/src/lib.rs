//! vaultlet injector: a mutating admission webhook that injects the vaultlet agent into Pods.
//!
//! The core is the pure [`mutate::mutate`]; [`review`] is the AdmissionReview edge,
//! [`server`] the HTTPS wiring, [`preview`] the offline CLI over the same code path.

pub mod access;
pub mod advice;
pub mod annotations;
pub mod cli;
pub mod convert;
pub mod metrics;
pub mod mutate;
pub mod preview;
pub mod review;
pub mod server;
pub mod settings;
pub mod tls;

#[cfg(test)]
pub(crate) mod testutil;
