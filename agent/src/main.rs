//! `vaultlet-agent` binary entry point.

fn main() {
    println!("vaultlet-agent: not implemented yet");
}
