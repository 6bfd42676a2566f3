//! The table of every `vaultlet.io/*` annotation ([`KNOWN`]), the Markdown reference
//! generated from it, and the nearest known key for a typo.

use super::PREFIX;

/// Whether an annotation applies to the whole pod or to one secret (`<key>-<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `vaultlet.io/<key>`.
    Pod,
    /// `vaultlet.io/<key>-<name>`, one per secret.
    Secret,
}

/// One row of the annotation reference.
#[derive(Debug, Clone, Copy)]
pub struct Known {
    /// Key after the prefix (`role`), or the per-secret stem (`secret`).
    pub key: &'static str,
    /// Pod-wide or per secret.
    pub scope: Scope,
    /// Default when absent.
    pub default: &'static str,
    /// What it does.
    pub meaning: &'static str,
    /// An example value.
    pub example: &'static str,
}

const fn pod(
    key: &'static str,
    default: &'static str,
    meaning: &'static str,
    example: &'static str,
) -> Known {
    Known {
        key,
        scope: Scope::Pod,
        default,
        meaning,
        example,
    }
}

const fn per_secret(
    key: &'static str,
    default: &'static str,
    meaning: &'static str,
    example: &'static str,
) -> Known {
    Known {
        key,
        scope: Scope::Secret,
        default,
        meaning,
        example,
    }
}

/// Every annotation the injector understands; anything else under `vaultlet.io/` is denied.
pub const KNOWN: &[Known] = &[
    pod(
        "inject",
        "(none)",
        "Opt-in, as a **label** only: the webhook's objectSelector sends only Pods with the label `vaultlet.io/inject: \"true\"`, and `preview` injects only those too. As an annotation it can only opt out: `false` leaves a labelled Pod unchanged.",
        "true",
    ),
    pod(
        "status",
        "(written by the injector)",
        "Set to `injected` by the webhook. Its presence makes admission a no-op, so mutation is idempotent. Do not set it yourself.",
        "injected",
    ),
    pod(
        "mode",
        "`--mode` (sidecar)",
        "`sidecar`: the agent keeps secrets fresh while the pod runs. `init-only`: render once before the app starts, nothing runs beside it.",
        "init-only",
    ),
    pod(
        "native-sidecar",
        "`--native-sidecars` (true)",
        "Sidecar mode only. `true`: one agent in `initContainers` with `restartPolicy: Always` and a postStart hook that returns once its secrets exist (the kubelet starts the app only then). `false`: classic init agent plus a sidecar agent.",
        "false",
    ),
    pod(
        "role",
        "(none; required for kubernetes auth)",
        "Vault role to log in with (kubernetes and jwt auth; for cert auth the certificate role, optional: Vault tries every role when absent).",
        "app",
    ),
    pod(
        "auth",
        "`--auth-method` (kubernetes)",
        "Login method: `kubernetes` (projected service-account token mounted into the agent only, reviewed by the API server), `jwt` (the same token, verified by Vault's `jwt` auth method through the issuer's OIDC discovery or keys), `cert` (the client certificate of `tls-client-secret`, over mutual TLS) or `approle`.",
        "approle",
    ),
    pod(
        "auth-path",
        "`--auth-path` (kubernetes) for the `--auth-method`; else the method's name (`kubernetes`, `jwt`, `cert`, `approle`)",
        "Mount path of the auth method, without `auth/`.",
        "k8s/cluster-a",
    ),
    pod(
        "approle-secret",
        "(none; required for approle auth)",
        "Name of a Secret in the pod's namespace with keys `role-id` and `secret-id`, mounted into the agent only.",
        "app-approle",
    ),
    pod(
        "approle-secret-id-wrapped",
        "false",
        "The `secret-id` key holds a response-wrapping token that the agent unwraps first.",
        "true",
    ),
    pod(
        "vault-addr",
        "`--vault-addr`",
        "Vault/OpenBao address. Must be the default or in the operator's `--allowed-vault-addrs` allowlist. The Pod must not choose where its agent finds it: `hostAliases` naming its host are denied, and so is a Pod whose own hostname (`spec.hostname`, else its name; with `spec.subdomain`, its full name) is that host, and so are the Pod's own resolvers (`dnsPolicy: None`, `dnsConfig` nameservers, searches or `ndots`) when the agent cannot verify Vault with trust the Pod did not choose (a plain `http://` address, or `tls-ca-*` / `tls-server-name` set). An IP address resolves nowhere; a name with a trailing dot never goes through the search list.",
        "https://vault.team-a.svc:8200",
    ),
    pod(
        "vault-namespace",
        "(none)",
        "Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`).",
        "team-a",
    ),
    pod(
        "tls-server-name",
        "(host of the address)",
        "Name to verify Vault's certificate against. Needs an `https://` address the operator lets Pods choose TLS for (as `tls-ca-secret`).",
        "vault.internal",
    ),
    pod(
        "sa-token-audience",
        "`--sa-token-audience` (vault)",
        "Audience of the projected service-account token (kubernetes and jwt auth); the Vault role must expect it (`audience` / `bound_audiences`).",
        "https://vault.example.com",
    ),
    pod(
        "tls-ca-secret",
        "`--vault-ca-configmap`, else the system roots",
        "Secret in the Pod's namespace whose key `ca.crt` is the CA that signs Vault's certificate; only that key is mounted, into the agent only. Needs an `https://` address the operator lets Pods choose TLS for: the default address unless `--pod-tls-default-addr=false`, others only when listed in `--pod-tls-vault-addrs`.",
        "vault-ca",
    ),
    pod(
        "tls-ca-configmap",
        "`--vault-ca-configmap`, else the system roots",
        "Like `tls-ca-secret`, from a ConfigMap (key `ca.crt`), with the same conditions. Set one of the two.",
        "vault-ca",
    ),
    pod(
        "tls-client-secret",
        "(none: no client certificate)",
        "A `kubernetes.io/tls` Secret (keys `tls.crt`, `tls.key`) in the Pod's namespace: the client certificate the agent presents to Vault for mutual TLS, and the credential of cert auth. Mounted into the agent only. Needs an `https://` address.",
        "app-vault-client",
    ),
    pod(
        "refresh-interval",
        "`--refresh-interval` (60s)",
        "How often static (KV) secrets are checked for a new version. At least 100ms.",
        "30s",
    ),
    pod(
        "init-deadline",
        "`--init-deadline` (120s)",
        "How long the first render may take before the agent gives up (native sidecar: the postStart hook fails and the kubelet restarts the agent). 1s to 1h.",
        "5m",
    ),
    pod(
        "secrets-dir",
        "/vault/secrets",
        "Absolute directory where the secrets volume is mounted, in the agent and the app containers. It must neither be, contain nor lie inside a path of the agent: `/vault/agent`, `/var/run/secrets`, `/vault/approle`, `/vault/ca`, `/vault/tls`, `/vaultlet/bin`, `/vaultlet-agent`.",
        "/etc/app/secrets",
    ),
    pod(
        "containers",
        "(all app containers)",
        "Comma-separated names of the app containers that get the secrets volume.",
        "web,worker",
    ),
    pod(
        "init-position",
        "`--init-position` (first)",
        "Where the agent goes among existing init containers. `first`: they all run after it and get the secrets mounted. `last`: they run before it, without secrets.",
        "last",
    ),
    pod(
        "cpu-request",
        "`--cpu-request` (10m)",
        "CPU request of each agent container (Kubernetes quantity).",
        "20m",
    ),
    pod(
        "cpu-limit",
        "`--cpu-limit` (none)",
        "CPU limit of each agent container.",
        "200m",
    ),
    pod(
        "memory-request",
        "`--memory-request` (16Mi)",
        "Memory request of each agent container.",
        "32Mi",
    ),
    pod(
        "memory-limit",
        "`--memory-limit` (64Mi)",
        "Memory limit of each agent container.",
        "128Mi",
    ),
    pod(
        "secrets-volume-size",
        "`--secrets-volume-size` (16Mi)",
        "sizeLimit of the memory-backed secrets volume.",
        "1Mi",
    ),
    pod(
        "revoke-on-shutdown",
        "false",
        "Revoke the agent's token (and its leases) when the agent stops.",
        "true",
    ),
    pod(
        "log-format",
        "text",
        "Agent log format: `text` or `json`.",
        "json",
    ),
    pod(
        "log-level",
        "info",
        "Agent log filter (tracing directive).",
        "debug",
    ),
    pod(
        "metrics-port",
        "(none: no metrics)",
        "Serve the agent's Prometheus metrics (`GET /metrics`) on this port, 1024-65535; it is declared on the running agent container as `vaultlet-metrics`. Needs a running agent (not `init-only`).",
        "9102",
    ),
    pod(
        "notify",
        "(none)",
        "Sent after any file changed, one per line: `signal:<SIGNAL>:<process>` (sets `shareProcessNamespace: true` on the pod), `[GET|POST|PUT ]http(s)://...`, or `exec:<command>` (refused unless the operator set `--allow-exec-notify` for an agent image that holds the command: the default image holds only the agent).",
        "signal:SIGHUP:nginx",
    ),
    pod(
        "set-run-as-ids",
        "`--set-run-as-ids` (true)",
        "`true`: the agent containers get `runAsUser`/`runAsGroup` (the Pod's, else 65532). `false`: left unset so the platform assigns them (OpenShift's restricted SCC); the app then reads the files through the Pod's `fsGroup`.",
        "false",
    ),
    pod(
        "group",
        "the pod's `fsGroup`, when set",
        "Numeric group id that owns the secret files.",
        "2000",
    ),
    pod(
        "on-env-change",
        "restart",
        "What the supervisor of an app with `env-<name>` secrets does when their values change: `restart` (SIGTERM, the Pod's `terminationGracePeriodSeconds`, SIGKILL, start again with the new values), `signal:<SIGNAL>` (e.g. `signal:SIGHUP`), or `none` (the new values apply at the app's next start). Not with `init-only`, where the values are read once.",
        "signal:SIGHUP",
    ),
    pod(
        "template-language",
        "handlebars",
        "Language of every `template-<name>`: `handlebars`, or `consul-template` (Go `text/template` with consul-template's Vault functions, as Vault Agent and vault-k8s render; see gotemplate/README.md). With `consul-template` each template names the Vault paths it reads, a `template-<name>` alone declares secret `<name>`, and `secret-<name>`, `params-<name>`, `version-<name>` and `format-<name>` are refused. Templates are parsed at admission: a syntax error or a refused function (`env`, `file`, ...) denies the Pod.",
        "consul-template",
    ),
    per_secret(
        "secret",
        "(none)",
        "Declares secret `<name>`: the Vault path to read (KV v1/v2 or any logical path). Words after the path (`key=value`) are parameters and make the fetch a write, e.g. `pki/issue/web common_name=a.example.com`.",
        "secret/data/app",
    ),
    per_secret(
        "template",
        "(none: `format-<name>` applies)",
        "Template in the Pod's `template-language`: Handlebars rendered with the secret's data (no HTML escaping), or a consul-template template.",
        "postgres://{{username}}:{{password}}@db/app",
    ),
    per_secret(
        "file",
        "`<name>`",
        "File path relative to the secrets dir; must stay inside it (no `..`, not absolute).",
        "config/db.url",
    ),
    per_secret(
        "env",
        "false",
        "`true`: the secret's env output (its template, or the default `KEY=value` lines) is loaded into the environment of the app containers the secrets are mounted into. Their `command` is wrapped by the agent binary's process supervisor (copied by the agent into the read-only volume `vaultlet-bin`); a container without `command` is denied. Variable names are checked here where the template spells them out, else by the agent at each render.",
        "true",
    ),
    per_secret("perms", "0440", "Octal file mode.", "0400"),
    per_secret(
        "format",
        "env",
        "Output without a template: `env` (`KEY=value` lines), `json` or `yaml`.",
        "json",
    ),
    per_secret(
        "params",
        "(none)",
        "Write parameters, one `key=value` per line; makes the fetch a write.",
        "common_name=web.example.com",
    ),
    per_secret(
        "version",
        "(latest)",
        "Pinned KV v2 version (a positive integer).",
        "3",
    ),
    per_secret(
        "notify",
        "(none)",
        "Like `notify`, but only when this secret's file changed.",
        "http://127.0.0.1:8080/-/reload",
    ),
];

/// The annotation reference as Markdown: the content of `docs/annotations.md`.
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Annotation reference\n\n\
         <!-- Generated from injector/src/annotations/known.rs (KNOWN); the test \
         `annotations::tests::doc_is_current` fails when this file is stale. \
         Regenerate with: VAULTLET_WRITE_DOCS=1 cargo test -p vaultlet-injector doc_is_current -->\n\n\
         Opt in with the **label** `vaultlet.io/inject: \"true\"`. Every other `vaultlet.io/*` key \
         is an annotation on the Pod (or the pod template of a workload). The webhook validates \
         them all at admission: an unknown key or a bad value denies the Pod with a message naming \
         the annotation and the value (for an unknown key, also the nearest known one).\n\n\
         `<name>` is a secret name: 1-63 lowercase letters, digits or `-`. Defaults in backticks \
         are the injector's settings (flag names; see `vaultlet-injector serve --help`).\n\n\
         ## Pod-wide\n\n",
    );
    out.push_str(&table(Scope::Pod));
    out.push_str("\n## Per secret\n\n");
    out.push_str(&table(Scope::Secret));
    out.push_str(
        "\n## Notes\n\n\
         - A `signal:` notification needs a shared process namespace: the injector sets \
         `shareProcessNamespace: true` on the pod. So does classic mode in a Job's pod, where the \
         agent exits once the app processes are gone.\n\
         - The agent runs as the pod's `runAsUser`/`runAsGroup` when set (else 65532), so files \
         and signals work for the app's user. It writes the files with the group \
         `vaultlet.io/group` or the pod's `fsGroup` (else its own) and mode \
         `vaultlet.io/perms-<name>`; when an app container with its own `runAsUser` could not \
         read them, or not receive a signal, the webhook admits the pod with a warning naming \
         the container, its user and the file mode.\n\
         - OpenShift-style clusters assign users and groups themselves: with \
         `vaultlet.io/set-run-as-ids: \"false\"` (or `--set-run-as-ids=false`) the agent \
         containers get no `runAsUser`/`runAsGroup`, run as the user the platform gives the \
         pod, and share the files through its `fsGroup` (see `samples/openshift`).\n\
         - `env-<name>`: the secret values are only in the app process's environment, never \
         in the Pod spec; `kubectl exec <pod> -- env` starts a new process, which does not \
         have them. On a change the app is restarted in place (`on-env-change`), not the \
         container: the container's `restartCount` does not move. A crashing app is started \
         again by the supervisor with the kubelet's backoff when the Pod's `restartPolicy` is \
         `Always`; otherwise the container exits with the app's code (Jobs see the app's \
         result).\n\
         - Multi-line values (`template-<name>`, `params-<name>`, `notify`) use a YAML block \
         scalar (`|`).\n\
         - Names starting with `vaultlet-` are the injector's: a Pod that declares such a volume \
         or container is denied, and so is one whose containers (app, init or ephemeral) list a \
         `vaultlet-*` volume in `volumeMounts` or `volumeDevices`. App containers get \
         `vaultlet-secrets` read-only from the injector (and `vaultlet-bin` read-only with \
         `env-<name>`); the agent's state, token and credentials stay in the agent.\n\
         - Denials quote what the Pod wrote (values, container and volume names, and keys \
         holding anything but letters, digits, `-`, `_`, `.` and `/`) with control characters \
         escaped, so a message or the injector's log line is always one line.\n",
    );
    out
}

fn table(scope: Scope) -> String {
    let mut out = String::from("| annotation | default | meaning | example |\n|---|---|---|---|\n");
    for k in KNOWN.iter().filter(|k| k.scope == scope) {
        let name = match scope {
            Scope::Pod => format!("{PREFIX}{}", k.key),
            Scope::Secret => format!("{PREFIX}{}-&lt;name&gt;", k.key),
        };
        out.push_str(&format!(
            "| `{name}` | {} | {} | `{}` |\n",
            k.default,
            k.meaning.replace('|', "\\|"),
            k.example.replace('|', "\\|")
        ));
    }
    out
}

/// Longest unknown key (after the prefix) a suggestion is looked for.
const MAX_SUGGEST_LEN: usize = 80;

/// The known annotation (with prefix) nearest to an unknown key `rest` (without the prefix),
/// when it is close enough to be a typo: `secrt-db` -> `vaultlet.io/secret-db`.
pub fn nearest(rest: &str) -> Option<String> {
    if rest.is_empty() || rest.len() > MAX_SUGGEST_LEN {
        return None;
    }
    let mut best: Option<(usize, String)> = None;
    let mut consider = |d: usize, candidate: String| {
        if best.as_ref().is_none_or(|(bd, _)| d < *bd) {
            best = Some((d, candidate));
        }
    };
    for k in KNOWN {
        match k.scope {
            Scope::Pod => consider(edit_distance(rest, k.key), k.key.to_owned()),
            // Every split into a stem and a secret name, on `-`, `_` or `.`.
            Scope::Secret => {
                for (i, _) in rest.match_indices(['-', '_', '.']) {
                    let (stem, name) = (&rest[..i], &rest[i + 1..]);
                    if !name.is_empty() {
                        consider(edit_distance(stem, k.key), format!("{}-{name}", k.key));
                    }
                }
            }
        }
    }
    let (d, candidate) = best?;
    let allowed = (rest.chars().count() / 3).clamp(1, 3);
    (d <= allowed).then(|| format!("{PREFIX}{candidate}"))
}

/// Levenshtein distance (insertions, deletions, substitutions) between two short strings.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}
