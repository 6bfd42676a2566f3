//! Auth method setup: AppRole (plain and response-wrapped secret-id), Kubernetes and JWT.

use serde_json::json;

use super::{OpenBao, str_at};
use crate::cluster::Cluster;

impl OpenBao {
    /// Enables auth method `kind` at `path` unless something is mounted there already.
    pub fn enable_auth(&self, path: &str, kind: &str) {
        let mounts = self.read("sys/auth");
        if mounts["data"].get(format!("{path}/")).is_none() {
            self.write(&format!("sys/auth/{path}"), json!({ "type": kind }));
        }
    }

    /// Enables AppRole at `approle/` (once), creates `role` with `policies` and returns
    /// `(role_id, secret_id)`. Tune the role afterwards with
    /// `write("auth/approle/role/<role>", json!({"token_ttl": "5s"}))`.
    pub fn enable_approle(&self, role: &str, policies: &[&str]) -> (String, String) {
        self.enable_auth("approle", "approle");
        self.write(
            &format!("auth/approle/role/{role}"),
            json!({ "token_policies": policies }),
        );
        let role_id = str_at(
            &self.read(&format!("auth/approle/role/{role}/role-id")),
            "/data/role_id",
        );
        (role_id, self.approle_secret_id(role))
    }

    /// A fresh secret-id for AppRole `role`.
    pub fn approle_secret_id(&self, role: &str) -> String {
        let resp = self.write(&format!("auth/approle/role/{role}/secret-id"), json!({}));
        str_at(&resp, "/data/secret_id")
    }

    /// A response-wrapped secret-id for AppRole `role` (wrap TTL 300 s): the wrapping token,
    /// to be unwrapped with `sys/wrapping/unwrap`.
    pub fn wrapped_secret_id(&self, role: &str) -> String {
        self.wrapped_secret_id_ttl(role, "300s")
    }

    /// [`wrapped_secret_id`](Self::wrapped_secret_id) with a given wrap TTL (e.g. `"2s"`).
    pub fn wrapped_secret_id_ttl(&self, role: &str, wrap_ttl: &str) -> String {
        let resp = self.try_api_headers(
            Some(self.root_token()),
            "POST",
            &format!("auth/approle/role/{role}/secret-id"),
            &[("X-Vault-Wrap-TTL", wrap_ttl)],
            Some(&json!({})),
        );
        assert!(
            resp.is_success(),
            "wrapping a secret-id for role {role} answered {}: {}",
            resp.status,
            resp.body["errors"]
        );
        str_at(&resp.body, "/wrap_info/token")
    }

    /// AppRole login over the API; returns the client token.
    pub fn approle_login(&self, role_id: &str, secret_id: &str) -> String {
        let resp = self.try_api(
            None,
            "POST",
            "auth/approle/login",
            Some(&json!({ "role_id": role_id, "secret_id": secret_id })),
        );
        assert!(
            resp.is_success(),
            "approle login answered {}: {}",
            resp.status,
            resp.body["errors"]
        );
        str_at(&resp.body, "/auth/client_token")
    }

    /// Enables kubernetes auth (once) against the local cluster's API server, as an OpenBao
    /// outside the cluster is set up: its address and CA, and a reviewer token allowed to call
    /// TokenReview; then `role` for service account `namespace/sa_name` (audience `vault`, the
    /// injector's default) with `policies`.
    pub fn enable_kubernetes(
        &self,
        k8s: &Cluster,
        role: &str,
        sa_name: &str,
        namespace: &str,
        policies: &[&str],
    ) {
        self.enable_auth("kubernetes", "kubernetes");
        let ca = std::fs::read_to_string(k8s.ca_file()).expect("read the cluster CA");
        self.write(
            "auth/kubernetes/config",
            json!({
                "kubernetes_host": k8s.api_url(),
                "kubernetes_ca_cert": ca,
                "token_reviewer_jwt": k8s.reviewer_token(),
                "disable_local_ca_jwt": true,
            }),
        );
        self.write(
            &format!("auth/kubernetes/role/{role}"),
            json!({
                "bound_service_account_names": [sa_name],
                "bound_service_account_namespaces": [namespace],
                "audience": "vault",
                "token_policies": policies,
            }),
        );
    }

    /// Kubernetes login over the API; returns the full response (status and body), so a test
    /// can assert a denial too.
    pub fn kubernetes_login(&self, role: &str, jwt: &str) -> super::ApiResponse {
        self.try_api(
            None,
            "POST",
            "auth/kubernetes/login",
            Some(&json!({ "role": role, "jwt": jwt })),
        )
    }

    /// Enables JWT auth at `jwt/` (once), validating tokens through the local API server's
    /// OIDC discovery (`/.well-known/openid-configuration`, then its JWKS) with the cluster CA,
    /// as an OpenBao outside the cluster would; then `role` for service account
    /// `namespace/sa_name` (audience `audience`) with `policies`.
    ///
    /// The discovery endpoints are opened to anonymous clients the way Kubernetes documents
    /// it ([`Cluster::allow_anonymous_issuer_discovery`]).
    pub fn enable_jwt(
        &self,
        k8s: &Cluster,
        role: &str,
        (namespace, sa_name): (&str, &str),
        audience: &str,
        policies: &[&str],
    ) {
        k8s.allow_anonymous_issuer_discovery();
        self.enable_auth("jwt", "jwt");
        let ca = std::fs::read_to_string(k8s.ca_file()).expect("read the cluster CA");
        self.write(
            "auth/jwt/config",
            json!({
                "oidc_discovery_url": k8s.api_url(),
                "oidc_discovery_ca_pem": ca,
            }),
        );
        self.write(
            &format!("auth/jwt/role/{role}"),
            json!({
                "role_type": "jwt",
                "user_claim": "sub",
                "bound_audiences": [audience],
                "bound_subject": format!("system:serviceaccount:{namespace}:{sa_name}"),
                "token_policies": policies,
                "token_ttl": "1h",
            }),
        );
    }

    /// JWT login over the API; the full response, so a test can assert a denial too.
    pub fn jwt_login(&self, role: &str, jwt: &str) -> super::ApiResponse {
        self.try_api(
            None,
            "POST",
            "auth/jwt/login",
            Some(&json!({ "role": role, "jwt": jwt })),
        )
    }
}
