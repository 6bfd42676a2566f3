//! Where a redirect from Vault may lead: its own origin or a listed node, nothing else.

use std::fmt;

use reqwest::Url;
use reqwest::redirect::{Attempt, Policy};

use super::ClientError;
use crate::config::VaultConfig;

/// Most redirects one request may follow (a standby forwards to the active node once).
pub const MAX_REDIRECTS: usize = 5;

/// Largest answer read from Vault; a larger or endless one is an error, not a memory spike.
/// Vault's own storage refuses entries above about 1 MiB; PKI bundles and lists stay far below.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// One `scheme://host:port` a request may go to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn of(url: &Url) -> Self {
        Self {
            scheme: url.scheme().to_owned(),
            host: url.host_str().unwrap_or_default().to_ascii_lowercase(),
            port: url.port_or_known_default(),
        }
    }
}

/// The origins the agent's requests (token, login body) may reach: `vault.address` and
/// `vault.redirectAddresses`.
#[derive(Debug, Clone)]
pub struct Origins(Vec<Origin>);

/// A redirect the agent refused; names only the host and port, never the URL (whose path or
/// query could carry anything).
#[derive(Debug)]
pub struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl Origins {
    /// The allowed origins of a config; an address that does not parse is a config error.
    pub fn from_config(cfg: &VaultConfig) -> Result<Self, ClientError> {
        let parse = |a: &str, what: &str| {
            Url::parse(a)
                .map(|u| Origin::of(&u))
                .map_err(|e| ClientError::Build(format!("{what} {a:?} is not a URL: {e}")))
        };
        let mut all = vec![parse(&cfg.address, "vault.address")?];
        for a in &cfg.redirect_addresses {
            all.push(parse(a, "vault.redirectAddresses")?);
        }
        Ok(Self(all))
    }

    /// `Ok(())` when `url` may receive the request; else why not, naming its host.
    pub fn check(&self, url: &Url, hops: usize) -> Result<(), Refused> {
        let target = Origin::of(url);
        let host = match target.port {
            Some(p) => format!("{}:{p}", target.host),
            None => target.host.clone(),
        };
        if hops > MAX_REDIRECTS {
            return Err(Refused(format!(
                "Vault redirected more than {MAX_REDIRECTS} times (last to {host:?}); check vault.address points at a Vault node"
            )));
        }
        if self.0.contains(&target) {
            return Ok(());
        }
        let scheme = if self
            .0
            .iter()
            .any(|o| o.host == target.host && o.port == target.port)
        {
            format!(" with scheme {:?}", target.scheme)
        } else {
            String::new()
        };
        Err(Refused(format!(
            "Vault redirected to {host:?}{scheme}, which is not vault.address nor one of vault.redirectAddresses; the token and credentials go only there (list Vault's own nodes in vault.redirectAddresses)"
        )))
    }

    /// The reqwest policy enforcing [`check`](Self::check) on every redirect.
    pub fn policy(self) -> Policy {
        Policy::custom(move |attempt: Attempt<'_>| {
            match self.check(attempt.url(), attempt.previous().len()) {
                Ok(()) => attempt.follow(),
                Err(refused) => attempt.error(refused),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk(address: &str, listed: &[&str]) -> Origins {
        Origins::from_config(&VaultConfig {
            address: address.into(),
            redirect_addresses: listed.iter().map(|s| (*s).to_owned()).collect(),
            ..VaultConfig::default()
        })
        .expect("origins")
    }

    fn check(o: &Origins, url: &str) -> Result<(), String> {
        o.check(&Url::parse(url).expect("url"), 1)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn same_origin_and_listed_nodes_only() {
        let o = mk(
            "https://vault.vault.svc:8200",
            &["https://vault-1.vault.svc:8200"],
        );
        assert_eq!(check(&o, "https://vault.vault.svc:8200/v1/x"), Ok(()));
        assert_eq!(check(&o, "https://VAULT.vault.svc:8200/v1/x"), Ok(()));
        assert_eq!(check(&o, "https://vault-1.vault.svc:8200/v1/x"), Ok(()));
        assert_eq!(
            check(&o, "https://evil.example:8200/v1/x?token=1"),
            Err("Vault redirected to \"evil.example:8200\", which is not vault.address nor one of vault.redirectAddresses; the token and credentials go only there (list Vault's own nodes in vault.redirectAddresses)".into())
        );
        // Another port is another origin.
        assert!(check(&o, "https://vault.vault.svc:8201/v1/x").is_err());
    }

    #[test]
    fn no_downgrade_to_http() {
        let o = mk("https://vault.vault.svc", &[]);
        assert_eq!(check(&o, "https://vault.vault.svc:443/v1/x"), Ok(()));
        let err = check(&o, "http://vault.vault.svc:443/v1/x").expect_err("downgrade");
        assert!(
            err.starts_with("Vault redirected to \"vault.vault.svc:443\" with scheme \"http\""),
            "{err}"
        );
    }

    #[test]
    fn bounded_count_and_newlines_quoted() {
        let o = mk("http://127.0.0.1:8200", &[]);
        let url = Url::parse("http://127.0.0.1:8200/v1/x").expect("url");
        assert!(o.check(&url, MAX_REDIRECTS).is_ok());
        let err = o.check(&url, MAX_REDIRECTS + 1).expect_err("too many");
        assert_eq!(
            err.to_string(),
            "Vault redirected more than 5 times (last to \"127.0.0.1:8200\"); check vault.address points at a Vault node"
        );
    }
}
