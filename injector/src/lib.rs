//! vaultlet injector: a mutating admission webhook that injects the vaultlet agent into Pods.
//!
//! The core is the pure [`mutate::mutate`]; [`review`] is the AdmissionReview edge,
//! [`server`] the HTTPS wiring, [`preview`] the offline CLI over the same code path.

pub mod annotations;
pub mod cli;
pub mod mutate;
pub mod preview;
pub mod settings;

#[cfg(test)]
pub(crate) mod testutil;
