//! `vaultlet-injector` binary entry point.

fn main() {
    println!("vaultlet-injector: not implemented yet");
}
