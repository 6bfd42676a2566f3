//! Readiness: the `<stateDir>/ready` marker written once every secret has been rendered.

use std::path::Path;

/// True when the ready marker exists (what `vaultlet-agent probe` checks).
pub fn is_ready(state_dir: &Path) -> bool {
    state_dir.join("ready").is_file()
}

/// Writes the ready marker (creating the state dir).
pub fn mark_ready(state_dir: &Path) -> Result<(), crate::write::WriteError> {
    crate::write::write_atomic(&state_dir.join("ready"), b"ready\n", 0o644, None).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("agent");
        assert!(!is_ready(&state));
        mark_ready(&state).expect("mark");
        assert!(is_ready(&state));
    }
}
