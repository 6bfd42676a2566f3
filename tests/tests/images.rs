//! The node's image archives (`scripts/images.sh`) against the Dockerfiles that describe the
//! same images: user, entrypoint, command, environment and files of the last stage.

use serde_json::{Value, json};
use vaultlet_e2e::bins;
use vaultlet_testkit::cluster::Cluster;

#[test]
fn images_match_their_dockerfiles() {
    let images = Cluster::running().script_output(&["images-dir"]);
    for (image, dockerfile) in [
        ("agent", "agent/Dockerfile"),
        ("injector", "injector/Dockerfile"),
    ] {
        let archive = format!("{}/{image}.tar", images.trim());
        let described = std::process::Command::new("python3")
            .arg(bins::workspace_root().join("scripts/oci-image.py"))
            .args(["--describe", &archive])
            .output()
            .expect("run oci-image.py");
        assert!(described.status.success(), "{archive}");
        let described: Value =
            serde_json::from_slice(&described.stdout).expect("oci-image.py prints JSON");
        let expected = final_stage(&bins::workspace_root().join(dockerfile));
        assert_eq!(described["config"]["User"], expected.user, "{image} user");
        assert_eq!(
            described["config"]["Entrypoint"], expected.entrypoint,
            "{image} entrypoint"
        );
        assert_eq!(described["config"]["Cmd"], expected.cmd, "{image} cmd");
        assert_eq!(
            described["config"]["Env"],
            json!(expected.env),
            "{image} env"
        );
        let mut files: Vec<String> = described["files"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, f)| f["type"] == "file")
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let mut copied = expected.copied.clone();
        copied.sort();
        assert_eq!(files, copied, "{image} files");
    }
}

/// What the last stage of a Dockerfile says of the image.
struct Stage {
    user: Value,
    entrypoint: Value,
    cmd: Value,
    env: Vec<String>,
    copied: Vec<String>,
}

fn final_stage(path: &std::path::Path) -> Stage {
    let text = std::fs::read_to_string(path).expect("read Dockerfile");
    let last = text.rsplit("\nFROM ").next().unwrap_or_default();
    let mut stage = Stage {
        user: Value::Null,
        entrypoint: Value::Null,
        cmd: Value::Null,
        env: Vec::new(),
        copied: Vec::new(),
    };
    for line in last.lines() {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "USER" => stage.user = json!(rest.trim()),
            "ENTRYPOINT" => stage.entrypoint = serde_json::from_str(rest).expect("exec form"),
            "CMD" => stage.cmd = serde_json::from_str(rest).expect("exec form"),
            "ENV" => stage.env.push(rest.trim().to_string()),
            "COPY" => {
                let dest = rest.split_whitespace().last().unwrap_or_default();
                stage.copied.push(dest.to_string());
            }
            _ => {}
        }
    }
    stage
}
