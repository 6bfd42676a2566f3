//! `vaultlet-pause`: the process of a Pod sandbox on the local cluster's node (the image the
//! containerd CRI plugin starts first in every Pod). As PID 1 of a Pod that shares its process
//! namespace it reaps orphans; SIGTERM or SIGINT ends it.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

fn main() {
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        signals.add(s);
    }
    if let Err(e) = signals.thread_block() {
        eprintln!("vaultlet-pause: cannot block signals: {e}");
        std::process::exit(1);
    }
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => reap(),
            Ok(_) => return,
            Err(e) => eprintln!("vaultlet-pause: sigwait: {e}"),
        }
    }
}

/// Collects every exited child; orphans of the Pod are re-parented to PID 1.
fn reap() {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}
