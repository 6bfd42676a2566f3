//! `vaultlet-agent` binary entry point.

use std::process::ExitCode;

fn main() -> ExitCode {
    // One crypto provider for every TLS client in the process (reqwest is built without one).
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("vaultlet-agent: a TLS crypto provider was already installed");
    }
    vaultlet_agent::cli::main()
}
