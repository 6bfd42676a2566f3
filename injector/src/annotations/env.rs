//! Admission checks of `vaultlet.io/env-<name>`: what can be known before the agent renders
//! (the output format, and variable names a template spells out).

use vaultlet_agent::config::OutputFormat;
use vaultlet_agent::config::supervise::literal_template_keys;
use vaultlet_agent::envfile::valid_key;

use super::{AnnotationError, PREFIX, PodRequest};

/// Denies env secrets whose output could never be env lines.
pub(super) fn check(req: &PodRequest) -> Result<(), AnnotationError> {
    for (name, s) in req.secrets.iter().filter(|(_, s)| s.env) {
        match (&s.template, s.format) {
            (None, Some(f)) if f != OutputFormat::Env => {
                return Err(AnnotationError::invalid(
                    &format!("{PREFIX}env-{name}"),
                    "true",
                    format!(
                        "secret {name:?} is rendered as {} (vaultlet.io/format-{name}), but the environment needs KEY=value lines; remove the format annotation or write a template",
                        if f == OutputFormat::Json {
                            "json"
                        } else {
                            "yaml"
                        }
                    ),
                ));
            }
            (Some(t), _) => {
                if let Some((line, key)) = literal_template_keys(t)
                    .into_iter()
                    .find(|(_, k)| !valid_key(k))
                {
                    return Err(AnnotationError::invalid(
                        &format!("{PREFIX}template-{name}"),
                        t,
                        format!(
                            "secret {name:?} is loaded into the environment (vaultlet.io/env-{name}), but template line {line} sets {key:?}, which is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*); rename it"
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}
