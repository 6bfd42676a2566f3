//! Test fixtures shared by the unit tests.

use k8s_openapi::api::core::v1::Pod;

/// Builds a typed Pod from JSON.
pub fn mk_pod(v: serde_json::Value) -> Pod {
    serde_json::from_value(v).expect("valid Pod JSON")
}

/// Writes `object` as YAML into `$VAULTLET_VALIDATE_DIR/<name>.yaml` (when the variable is
/// set), for `scripts/validate-manifests.sh`.
pub fn emit_for_validation<T: serde::Serialize>(name: &str, object: &T) {
    let Some(dir) = std::env::var_os("VAULTLET_VALIDATE_DIR") else {
        return;
    };
    std::fs::create_dir_all(&dir).expect("create VAULTLET_VALIDATE_DIR");
    let yaml = serde_saphyr::to_string(object).expect("yaml");
    let file = std::path::Path::new(&dir).join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).expect("write manifest");
}
