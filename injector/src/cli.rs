//! Command-line interface: `serve`, `preview` and `convert`.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;

use crate::preview::{self, Output};
use crate::settings::{LogArgs, ServerArgs, Settings, TlsArgs};

/// Top-level command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "vaultlet-injector",
    version,
    about = "Injects the vaultlet agent into Pods"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the HTTPS admission webhook.
    Serve(Box<ServeArgs>),
    /// Print a Pod or workload as the webhook would mutate it.
    Preview(Box<PreviewArgs>),
    /// Rewrite vault-k8s (vault.hashicorp.com/ or openbao.org/) annotated workloads for vaultlet.
    Convert(ConvertArgs),
}

/// `convert` arguments.
#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// Manifests (multi-document YAML or JSON, Lists, any workload kind); a directory reads
    /// its `*.yaml`, `*.yml` and `*.json` files in name order; `-` for stdin.
    #[arg(short = 'f', long = "file", default_value = "-")]
    pub file: PathBuf,
    /// Only print the report (stderr); write no manifests.
    #[arg(long)]
    pub check: bool,
    /// The vault-k8s injector's default template (vault-helm
    /// `injector.agentDefaults.template`) for workloads without
    /// `agent-inject-default-template`.
    #[arg(long, value_enum, default_value = "map")]
    pub default_template: DefaultTemplate,
}

/// vault-k8s's default template types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DefaultTemplate {
    /// `key: value` lines of the secret's data.
    Map,
    /// The secret's data as JSON.
    Json,
}

/// Runs `convert`: manifests on stdout, the report on stderr; fails when a workload was
/// refused.
pub fn run_convert(args: &ConvertArgs) -> anyhow::Result<()> {
    let mut input = String::new();
    if args.file.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut input)
            .context("reading stdin")?;
    } else if args.file.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&args.file)
            .with_context(|| format!("reading directory {}", args.file.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            })
            .collect();
        files.sort();
        for f in files {
            let text =
                std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            input.push_str("\n---\n");
            input.push_str(&text);
        }
    } else {
        input = std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?;
    }
    let defaults = crate::convert::Defaults {
        json_template: args.default_template == DefaultTemplate::Json,
    };
    let out = crate::convert::convert(&input, defaults)?;
    for line in &out.report {
        eprintln!("{line}");
    }
    eprintln!(
        "{} workload(s) converted, {} refused",
        out.converted, out.refused
    );
    if !args.check {
        print!("{}", out.manifests);
    }
    if out.refused > 0 {
        anyhow::bail!(
            "{} workload(s) refused and left unchanged; fix what the report says and convert again",
            out.refused
        );
    }
    Ok(())
}

/// `serve` arguments.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Listener.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Certificate.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
    /// Mutation settings.
    #[command(flatten)]
    pub settings: Settings,
}

/// `preview` arguments.
#[derive(Debug, clap::Args)]
pub struct PreviewArgs {
    /// File with one Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob
    /// (YAML or JSON); `-` for stdin.
    #[arg(short = 'f', long = "file", default_value = "-")]
    pub file: PathBuf,
    /// Print the JSON Patch instead of the mutated object.
    #[arg(long)]
    pub patch: bool,
    /// Mutation settings.
    #[command(flatten)]
    pub settings: Settings,
}

/// Runs `preview`: prints the result, or fails with the webhook's denial message.
pub fn run_preview(args: &PreviewArgs) -> anyhow::Result<()> {
    args.settings.validate()?;
    let input = if args.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading stdin")?;
        s
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    let output = if args.patch {
        Output::Patch
    } else {
        Output::Yaml
    };
    let rendered = preview::preview(&input, &args.settings, output)?;
    for w in &rendered.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(skip) = rendered.skipped {
        eprintln!("note: left unchanged: {}", skip.explain());
    }
    print!("{}", rendered.text);
    Ok(())
}
