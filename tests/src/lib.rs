//! Runs mutated Pods on this machine the way a kubelet would, for the README demo and the
//! pod-level end-to-end tests.
//!
//! | module | what it does |
//! |---|---|
//! | [`podrun`] | the harness: volumes as directories, containers as processes, kubelet ordering |
//! | [`node`] | samples on the local cluster's real node: OpenBao for the Pods, workloads, log waits |
//! | [`injector`] | mutates a Pod with the real `vaultlet-injector preview` |
//! | [`bins`] | finds the built `vaultlet-agent` / `vaultlet-injector` binaries |
//! | [`sample`] | a `samples/<name>` set up against real OpenBao (and PostgreSQL) for a pod test |
//! | [`tokenreview_standin`] | the demo's TokenReview stand-in (the demo runs without a cluster; tests use the real one) |
//! | [`webhook`] | a second mutating webhook, for reinvocation tests on the local cluster |

pub mod bins;
pub mod injector;
pub mod node;
pub mod podrun;
pub mod sample;
pub mod tokenreview_standin;
pub mod webhook;
