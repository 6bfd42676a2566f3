//! Auth method setup: AppRole (plain and response-wrapped secret-id) and Kubernetes.

use serde_json::json;

use super::{OpenBao, str_at};

/// Any CA certificate: OpenBao requires `kubernetes_ca_cert` when `disable_local_ca_jwt=true`,
/// even for an `http://` TokenReview endpoint, and never uses it then.
pub const TEST_CA_PEM: &str = include_str!("../test-ca.pem");

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

    /// Enables Kubernetes auth at `kubernetes/` (once) pointing at a TokenReview endpoint
    /// (`kubernetes_host=token_review_url`, `disable_local_ca_jwt=true`, a dummy CA) and creates
    /// `role` bound to service account `sa_name` in `namespace` with `policies`.
    pub fn enable_kubernetes(
        &self,
        token_review_url: &str,
        role: &str,
        sa_name: &str,
        namespace: &str,
        policies: &[&str],
    ) {
        self.enable_auth("kubernetes", "kubernetes");
        self.write(
            "auth/kubernetes/config",
            json!({
                "kubernetes_host": token_review_url,
                "kubernetes_ca_cert": TEST_CA_PEM,
                "disable_local_ca_jwt": true,
            }),
        );
        self.write(
            &format!("auth/kubernetes/role/{role}"),
            json!({
                "bound_service_account_names": [sa_name],
                "bound_service_account_namespaces": [namespace],
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
}
