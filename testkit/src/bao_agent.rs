//! `bao agent` as the reference renderer of consul-template templates (Vault Agent's engine):
//! one run that logs in with a token file, renders every template once and exits
//! (`exit_after_auth`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::{OpenBao, bao_bin};

/// What one `bao agent` run left: its output directory, how it ended (`None`: it was still
/// running at the deadline and was killed) and its log.
#[derive(Debug)]
pub struct BaoAgentRun {
    /// Where each template's file was written, named as the template.
    pub out: PathBuf,
    /// The exit status, `None` when it did not end in time.
    pub status: Option<ExitStatus>,
    /// stdout and stderr.
    pub log: String,
}

impl BaoAgentRun {
    /// True when every template rendered and the agent exited 0.
    pub fn rendered(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Renders `templates` (name, template file) with one `bao agent` run against `bao` with its
/// root token, in `dir` (files under `dir/out`); `extra` lines go into every `template`
/// stanza (e.g. `error_on_missing_key = true`). A template that fails to execute makes the
/// agent retry: the run is killed after `within`.
pub fn bao_agent_render(
    bao: &OpenBao,
    templates: &[(String, PathBuf)],
    dir: &Path,
    extra: &str,
    within: Duration,
) -> BaoAgentRun {
    let out = dir.join("out");
    std::fs::create_dir_all(&out).expect("mkdir out");
    let token = dir.join("token");
    std::fs::write(&token, bao.root_token()).expect("write token");
    let mut hcl = format!(
        "vault {{ address = \"{}\" }}\nauto_auth {{\n  method \"token_file\" {{ config {{ token_file_path = \"{}\" }} }}\n}}\nexit_after_auth = true\n",
        bao.addr(),
        token.display()
    );
    for (name, src) in templates {
        hcl.push_str(&format!(
            "template {{\n  source = \"{}\"\n  destination = \"{}\"\n  {extra}\n}}\n",
            src.display(),
            out.join(name).display()
        ));
    }
    let config = dir.join("agent.hcl");
    std::fs::write(&config, hcl).expect("write bao agent config");
    let log = dir.join("bao-agent.log");
    let log_file = std::fs::File::create(&log).expect("bao agent log");
    let mut child = Command::new(bao_bin())
        .arg("agent")
        .arg(format!("-config={}", config.display()))
        .env_remove("BAO_ADDR")
        .env_remove("VAULT_ADDR")
        .env_remove("BAO_TOKEN")
        .env_remove("VAULT_TOKEN")
        .stdout(log_file.try_clone().expect("log fd"))
        .stderr(log_file)
        .spawn()
        .expect("run bao agent");
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for bao agent") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    BaoAgentRun {
        out,
        status,
        log: std::fs::read_to_string(&log).unwrap_or_default(),
    }
}
