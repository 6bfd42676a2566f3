//! Rendering from answers fetched beforehand, for async callers: render, fetch what was
//! missing, render again (consul-template's own loop).

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::{Limits, SecretRequest, SecretSource, Template};

/// Vault's answers by request: the JSON body, or the error the fetch gave.
pub type Answers = HashMap<SecretRequest, std::result::Result<String, String>>;

/// The result of [`Template::render_prefetched`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every call was answered: the output.
    Rendered(String),
    /// A call computed at render time has no answer yet: fetch it, add it and render again.
    Missing(SecretRequest),
}

struct Prefetched<'a> {
    answers: &'a Answers,
    missing: Option<SecretRequest>,
}

impl SecretSource for Prefetched<'_> {
    fn fetch(&mut self, req: &SecretRequest) -> std::result::Result<String, String> {
        match self.answers.get(req) {
            Some(answer) => answer.clone(),
            None => {
                self.missing = Some(req.clone());
                Err("not fetched yet".into())
            }
        }
    }
}

impl Template {
    /// Renders with the answers in `answers` only, without blocking on Vault.
    ///
    /// Fetch the requests of [`secret_calls`](Template::secret_calls) first; calls whose
    /// path is computed come back one at a time as [`Outcome::Missing`].
    pub fn render_prefetched(&self, answers: &Answers, limits: Limits) -> Result<Outcome> {
        let mut source = Prefetched {
            answers,
            missing: None,
        };
        let result = self.render(&mut source, limits);
        match (result, source.missing) {
            (Ok(out), _) => Ok(Outcome::Rendered(out)),
            (Err(Error::Source { .. }), Some(req)) => Ok(Outcome::Missing(req)),
            (Err(e), _) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetches_computed_paths_one_round_at_a_time() {
        let t = Template::parse(
            "{{ range secrets \"kv/list\" }}{{ with secret (printf \"kv/list/%s\" .) }}{{ .Data.v }};{{ end }}{{ end }}",
        )
        .expect("parses");
        let mut answers = Answers::new();
        for call in t.secret_calls() {
            if let Some(req) = call.request {
                answers.insert(req, Ok(r#"{"data":{"keys":["b","a"]}}"#.into()));
            }
        }
        let mut rounds = 0;
        let out = loop {
            rounds += 1;
            match t
                .render_prefetched(&answers, Limits::default())
                .expect("renders")
            {
                Outcome::Rendered(out) => break out,
                Outcome::Missing(req) => {
                    let body = format!(
                        r#"{{"data":{{"v":"{}"}}}}"#,
                        req.path.replace("kv/list/", "v-")
                    );
                    answers.insert(req, Ok(body));
                }
            }
        };
        assert_eq!(out, "v-a;v-b;");
        assert_eq!(rounds, 3);
    }

    #[test]
    fn a_failed_fetch_is_an_error_naming_the_path() {
        let t = Template::parse("{{ with secret \"kv/gone\" }}{{ end }}").expect("parses");
        let mut answers = Answers::new();
        for call in t.secret_calls() {
            answers.insert(
                call.request.expect("static"),
                Err("permission denied".into()),
            );
        }
        let err = t
            .render_prefetched(&answers, Limits::default())
            .expect_err("fails");
        assert_eq!(
            err.to_string(),
            "template:1:9: secret \"kv/gone\": permission denied"
        );
    }
}
