//! `vaultlet.io/template-language: consul-template`: templates declare their secrets and are parsed at admission.

use vaultlet_gotemplate::Template;

use super::{AnnotationError, PREFIX, PodRequest, SecretRequest};

/// Per-secret stems that only make sense for a secret read from one path.
const PATH_ONLY: &[&str] = &["secret", "params", "version", "format"];

/// Declares every `template-<name>` as a secret and refuses the path-only annotations.
pub(super) fn declare(
    req: &mut PodRequest,
    per_secret: &[(&str, &str, &str, &str)],
) -> Result<(), AnnotationError> {
    if let Some(&(key, stem, _, value)) = per_secret.iter().find(|p| PATH_ONLY.contains(&p.1)) {
        return Err(AnnotationError::invalid(
            key,
            value,
            format!(
                "with vaultlet.io/template-language: consul-template the template names the Vault paths it reads, so vaultlet.io/{stem}-<name> has no meaning; move the path (and its parameters) into the template's secret call and remove {key}"
            ),
        ));
    }
    for &(_, _, name, _) in per_secret.iter().filter(|p| p.1 == "template") {
        req.secrets
            .insert(name.to_owned(), SecretRequest::default());
    }
    Ok(())
}

/// Parses every consul-template template: syntax errors and refused functions deny the Pod.
pub(super) fn check_templates(req: &PodRequest) -> Result<(), AnnotationError> {
    for (name, s) in &req.secrets {
        let key = format!("{PREFIX}template-{name}");
        let Some(t) = &s.template else {
            return Err(AnnotationError::invalid(
                &key,
                "",
                "with vaultlet.io/template-language: consul-template every secret is declared by its template; add the template",
            ));
        };
        Template::parse(t).map_err(|e| AnnotationError::invalid(&key, t, e.to_string()))?;
    }
    Ok(())
}
