//! End-to-end: links placed in the secrets volume cannot redirect the agent's writes; a
//! symlink at a file's name is replaced, a symlinked directory is refused, nothing outside
//! the secrets dir is written or changed.

mod common;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::time::Duration;

use common::{Harness, config, kv_policy, mode, read};
use serde_json::json;
use vaultlet_testkit::OpenBao;

#[test]
fn links_in_the_secrets_dir_redirect_no_write() {
    let bao = OpenBao::dev();
    bao.write_kv("secret/app", &[("user", "app")]);
    kv_policy(&bao, "app", &["app"]);
    let token = bao.create_token(&["app"], None);
    let h = Harness::new();

    // Outside the secrets dir: a victim file and a directory.
    let outside = h.dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir outside");
    let victim = outside.join("victim");
    std::fs::write(&victim, "user=app\n").expect("victim");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::create_dir_all(&h.secrets).expect("mkdir secrets");
    // A symlink at a file's final name, and a symlinked directory on another file's path.
    symlink(&victim, h.file("app.env")).expect("symlink file");
    symlink(&outside, h.file("sub")).expect("symlink dir");

    let mut cfg = config(
        &bao.addr(),
        h.token_auth(&token),
        json!([
            { "name": "app", "path": "secret/data/app", "file": "app.env" },
            { "name": "nested", "path": "secret/data/app", "file": "sub/db.env" },
        ]),
    );
    cfg["initDeadline"] = json!("2s");
    let (status, log, _) = h.init(&cfg, Duration::from_secs(30));

    // Nothing outside was written or changed.
    assert_eq!(read(&victim), "user=app\n");
    assert_eq!(mode(&victim), 0o644, "the victim's mode changed");
    let entries: Vec<_> = std::fs::read_dir(&outside)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("victim")], "{log}");

    // The link at the final name was replaced by the file.
    let meta = std::fs::symlink_metadata(h.file("app.env")).expect("meta");
    assert!(meta.file_type().is_file(), "app.env is still a link");
    assert_eq!(read(&h.file("app.env")), "user=app\n");

    // The file behind the symlinked directory is an error naming the path.
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("\"sub\" is a symbolic link"),
        "no clear error for the linked directory: {log}"
    );
}
