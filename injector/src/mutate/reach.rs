//! Where the agent finds Vault and how it knows it is Vault: the allowlist of addresses means
//! little if the Pod can make the address resolve elsewhere (`hostAliases`, its own resolvers)
//! and have the agent accept that server (plain HTTP, or a CA or server name the Pod chose).
//!
//! The rule: `hostAliases` and the Pod's own hostname (which the kubelet writes into its
//! `/etc/hosts`) never name the Vault host; a CA or server name chosen by the Pod
//! only for addresses the operator allows it for; and the Pod's own resolvers (`dnsPolicy:
//! None`, `dnsConfig`) only where the agent verifies Vault's certificate against trust the Pod
//! did not choose. IP addresses resolve nowhere, so only names are checked.

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Deny, invalid};
use crate::annotations::PodRequest;
use crate::settings::Settings;

/// The host of a Vault address as resolution sees it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct VaultHost {
    /// Lowercase, without a trailing dot.
    name: String,
    /// An IP literal: no name resolution, so nothing the Pod's DNS settings can change.
    ip: bool,
    /// Written with a trailing dot: resolved as is, never through the search list.
    absolute: bool,
}

impl VaultHost {
    /// The host of `scheme://host[:port][/]` (the form `validate_vault_address` admits).
    pub(super) fn of(address: &str) -> Self {
        let rest = address.split_once("://").map_or(address, |(_, r)| r);
        let authority = rest.trim_end_matches('/');
        let (host, bracketed) = match authority.strip_prefix('[') {
            Some(v6) => (v6.split(']').next().unwrap_or(v6), true),
            None => match authority.rsplit_once(':') {
                Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (h, false),
                _ => (authority, false),
            },
        };
        let absolute = host.ends_with('.');
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        let ip = bracketed || name.parse::<std::net::IpAddr>().is_ok();
        Self { name, ip, absolute }
    }

    fn is(&self, hostname: &str) -> bool {
        hostname
            .trim_end_matches('.')
            .eq_ignore_ascii_case(&self.name)
    }
}

/// Checks what the Pod decides about reaching and verifying Vault at `address` (the address
/// the agent will use, already checked against the allowlist).
pub(super) fn check(
    req: &PodRequest,
    s: &Settings,
    pod: &ObjectMeta,
    spec: &PodSpec,
    address: &str,
) -> Result<(), Deny> {
    check_pod_trust(req, s, address)?;
    let host = VaultHost::of(address);
    if host.ip {
        return Ok(());
    }
    check_host_aliases(spec, &host, address)?;
    check_own_hostname(spec, pod, &host, address)?;
    check_resolvers(req, spec, &host, address)
}

/// The kubelet maps the Pod's hostname (`spec.hostname`, else its name) and, with
/// `spec.subdomain`, `<hostname>.<subdomain>.<namespace>.svc.<cluster domain>` to the Pod's
/// own address in its `/etc/hosts`.
fn check_own_hostname(
    spec: &PodSpec,
    pod: &ObjectMeta,
    host: &VaultHost,
    address: &str,
) -> Result<(), Deny> {
    let (field, hostname) = match (spec.hostname.as_deref(), pod.name.as_deref()) {
        (Some(h), _) if !h.is_empty() => ("spec.hostname", h),
        (_, Some(n)) if !n.is_empty() => ("metadata.name", n),
        _ => return Ok(()),
    };
    let subdomain = spec.subdomain.as_deref().filter(|d| !d.is_empty());
    // The cluster domain is the kubelet's; without the namespace, any under the subdomain.
    let under_subdomain = subdomain.is_some_and(|d| {
        let prefix = match pod.namespace.as_deref() {
            Some(ns) => format!("{hostname}.{d}.{ns}.svc."),
            None => format!("{hostname}.{d}."),
        };
        host.name.starts_with(&prefix.to_ascii_lowercase())
    });
    if host.is(hostname) || under_subdomain {
        let (what, fix) = match subdomain {
            Some(d) if under_subdomain => (
                format!("{field} {hostname:?} with spec.subdomain {d:?}"),
                "change spec.hostname or spec.subdomain",
            ),
            _ => (
                format!("{field} {hostname:?}"),
                "give the Pod another hostname",
            ),
        };
        return Err(Deny::Reach(format!(
            "the Pod's {what} names the host of the Vault address {address}, and the kubelet \
             maps it to the Pod's own address in /etc/hosts, so the agent would talk to the Pod \
             instead of Vault; {fix}"
        )));
    }
    Ok(())
}

/// The TLS annotations by which a Pod chooses what the agent accepts as Vault.
fn pod_trust(req: &PodRequest) -> Option<(&'static str, &str)> {
    [
        ("tls-ca-secret", &req.tls_ca_secret),
        ("tls-ca-configmap", &req.tls_ca_configmap),
        ("tls-server-name", &req.tls_server_name),
    ]
    .into_iter()
    .find_map(|(k, v)| v.as_deref().map(|v| (k, v)))
}

fn check_pod_trust(req: &PodRequest, s: &Settings, address: &str) -> Result<(), Deny> {
    let Some((key, value)) = pod_trust(req) else {
        return Ok(());
    };
    if s.pod_tls_allowed(address) {
        return Ok(());
    }
    let setting = if s.is_default_addr(address) {
        "--pod-tls-default-addr=false, chart value injector.podTlsDefaultAddr"
    } else {
        "it is not in --pod-tls-vault-addrs, chart value injector.podTlsVaultAddrs"
    };
    Err(invalid(
        key,
        value,
        format!(
            "the operator does not let Pods choose how the agent verifies the Vault address \
             {address} ({setting}); remove the annotation (the agent then trusts the \
             injector's --vault-ca-configmap or the system roots), or ask the platform team \
             to allow it for this address"
        ),
    )
    .into())
}

fn check_host_aliases(spec: &PodSpec, host: &VaultHost, address: &str) -> Result<(), Deny> {
    for (i, alias) in spec.host_aliases.iter().flatten().enumerate() {
        if let Some((j, name)) = alias
            .hostnames
            .iter()
            .flatten()
            .enumerate()
            .find(|(_, n)| host.is(n))
        {
            return Err(Deny::Reach(format!(
                "spec.hostAliases[{i}].hostnames[{j}] is {name:?}, the host of the Vault \
                 address {address}: the Pod must not choose where its agent finds Vault; \
                 remove {name:?} from spec.hostAliases"
            )));
        }
    }
    Ok(())
}

/// The first of the Pod's DNS settings that changes how the Vault host resolves.
fn own_resolution(spec: &PodSpec, host: &VaultHost) -> Option<&'static str> {
    if spec.dns_policy.as_deref() == Some("None") {
        return Some("spec.dnsPolicy: None");
    }
    let dns = spec.dns_config.as_ref()?;
    if dns.nameservers.as_ref().is_some_and(|n| !n.is_empty()) {
        return Some("spec.dnsConfig.nameservers");
    }
    // An absolute name (trailing dot) never goes through the search list.
    if host.absolute {
        return None;
    }
    if dns.searches.as_ref().is_some_and(|s| !s.is_empty()) {
        return Some("spec.dnsConfig.searches");
    }
    let ndots = dns.options.iter().flatten().any(|o| {
        o.name
            .as_deref()
            .is_some_and(|n| n.trim().eq_ignore_ascii_case("ndots"))
    });
    ndots.then_some("spec.dnsConfig.options ndots")
}

fn check_resolvers(
    req: &PodRequest,
    spec: &PodSpec,
    host: &VaultHost,
    address: &str,
) -> Result<(), Deny> {
    let Some(field) = own_resolution(spec, host) else {
        return Ok(());
    };
    let (why, fix) = if !address.to_ascii_lowercase().starts_with("https://") {
        (
            "the address is plain HTTP, so the agent cannot tell Vault from another server"
                .to_owned(),
            "use an https:// Vault address".to_owned(),
        )
    } else if let Some((key, _)) = pod_trust(req) {
        (
            format!("the agent verifies Vault with the Pod's own vaultlet.io/{key}"),
            format!("remove vaultlet.io/{key}"),
        )
    } else {
        // Verified against the operator's CA (or the system roots): a server elsewhere fails
        // the handshake before the agent sends anything.
        return Ok(());
    };
    Err(Deny::Reach(format!(
        "{field} lets the Pod choose where {:?}, the host of the Vault address {address}, \
         resolves, and {why}; remove {field} or {fix}",
        host.name
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_addresses() {
        let host = |name: &str, ip, absolute| VaultHost {
            name: name.into(),
            ip,
            absolute,
        };
        for (addr, want) in [
            (
                "https://Vault.Vault.svc:8200/",
                host("vault.vault.svc", false, false),
            ),
            (
                "http://vault.example.com",
                host("vault.example.com", false, false),
            ),
            (
                "https://vault.example.com.:8200",
                host("vault.example.com", false, true),
            ),
            ("http://10.0.0.1:8200", host("10.0.0.1", true, false)),
            ("https://[fd00::1]:8200", host("fd00::1", true, false)),
        ] {
            assert_eq!(VaultHost::of(addr), want, "{addr}");
        }
    }
}
