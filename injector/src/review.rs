//! The AdmissionReview edge: decodes a request body, dispatches Pod CREATEs to the mutation,
//! encodes the response. Bodies that are not AdmissionReviews are errors (HTTP 400/413).

use k8s_openapi::api::core::v1::Pod;
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube_core::{DynamicObject, Resource};

use crate::annotations::printable;
use crate::mutate::{self, InjectMode, Outcome, Skip};
use crate::settings::Settings;

pub mod bounds;

/// Largest request body accepted (the API server sends at most 3 MiB objects).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Why a body could not be reviewed; maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The body is larger than [`MAX_BODY`].
    #[error("request body is larger than {MAX_BODY} bytes")]
    TooLarge,
    /// The body is not an `admission.k8s.io/v1` AdmissionReview with a request.
    #[error("body is not an admission.k8s.io/v1 AdmissionReview request: {0}")]
    NotAReview(String),
}

impl ReviewError {
    /// HTTP status code for this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge => 413,
            Self::NotAReview(_) => 400,
        }
    }
}

/// What happened to one review (for metrics and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The agent was injected.
    Injected(InjectMode),
    /// An opted-in kind, allowed unchanged.
    Skipped(Skip),
    /// Not a Pod CREATE: allowed unchanged.
    Ignored,
    /// Denied; the reason label and the message sent to the user.
    Denied {
        /// Fixed metrics label.
        reason: &'static str,
        /// Message returned to the API client.
        message: String,
    },
}

impl Verdict {
    /// Label value for the reviews counter.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Injected(_) => "injected",
            Self::Skipped(_) => "skipped",
            Self::Ignored => "ignored",
            Self::Denied { .. } => "denied",
        }
    }
}

/// A reviewed request: the JSON response body and the verdict.
#[derive(Debug)]
pub struct Reviewed {
    /// Serialised AdmissionReview response.
    pub body: Vec<u8>,
    /// What was decided.
    pub verdict: Verdict,
    /// The request's uid, namespace and object name, for logs.
    pub about: About,
}

/// Which request a review answered, for logs: every line about a review carries these.
/// Namespace and name come from the request as the client wrote it (mutating admission runs
/// before the API server validates the object), so they are kept [`printable`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct About {
    /// AdmissionReview request uid.
    pub uid: String,
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object, or its generateName followed by `*`.
    pub name: String,
}

/// Reviews one request body.
pub fn review(body: &[u8], settings: &Settings) -> Result<Reviewed, ReviewError> {
    if body.len() > MAX_BODY {
        return Err(ReviewError::TooLarge);
    }
    // One linear pass that stores nothing, before anything is decoded into memory.
    match bounds::check(body) {
        Ok(()) => {}
        Err(bounds::Checked::Json(e)) => return Err(not_a_review(&e)),
        Err(bounds::Checked::TooBig(too_big)) => return too_big_denial(body, &too_big),
    }
    // Fast path: the webhook is registered for Pods, so decode straight into the typed Pod.
    let (response, verdict, about) = match serde_json::from_slice::<AdmissionReview<Pod>>(body) {
        Ok(review) => {
            let req = request(review)?;
            let about = describe(&req);
            let (response, verdict) = decide_pod(req, settings);
            (response, verdict, about)
        }
        Err(typed_error) => {
            let review: AdmissionReview<DynamicObject> =
                serde_json::from_slice(body).map_err(|e| not_a_review(&e))?;
            let req = request(review)?;
            let response = AdmissionResponse::from(&req);
            let (response, verdict) = if is_pod_create(&req) {
                // A Pod CREATE whose object is not a valid Pod.
                let message = format!(
                    "vaultlet: the Pod object could not be read: {}",
                    printable(&typed_error.to_string())
                );
                let verdict = Verdict::Denied {
                    reason: "object",
                    message: message.clone(),
                };
                (response.deny(message), verdict)
            } else {
                (response, Verdict::Ignored)
            };
            (response, verdict, describe(&req))
        }
    };
    let body = encode(response)
        .map_err(|e| ReviewError::NotAReview(format!("cannot encode the response: {e}")))?;
    Ok(Reviewed {
        body,
        verdict,
        about,
    })
}

/// The answer to a review that is larger than [`bounds`] allows: denied, by its uid alone.
fn too_big_denial(body: &[u8], too_big: &bounds::TooBig) -> Result<Reviewed, ReviewError> {
    let uid = bounds::request_uid(body)
        .ok_or_else(|| ReviewError::NotAReview("it has no request.uid".into()))?;
    let message = format!("vaultlet: {too_big}");
    let mut response = AdmissionResponse::invalid(&message);
    response.uid.clone_from(&uid);
    let body = encode(response)
        .map_err(|e| ReviewError::NotAReview(format!("cannot encode the response: {e}")))?;
    Ok(Reviewed {
        body,
        verdict: Verdict::Denied {
            reason: "too_big",
            message,
        },
        about: About {
            uid: printable(&uid).into_owned(),
            ..About::default()
        },
    })
}

/// A decoding error, whose text may quote the body (serde writes some values unescaped).
fn not_a_review(e: &impl std::fmt::Display) -> ReviewError {
    ReviewError::NotAReview(printable(&e.to_string()).into_owned())
}

fn request<T: Resource>(review: AdmissionReview<T>) -> Result<AdmissionRequest<T>, ReviewError> {
    review
        .try_into()
        .map_err(|_| ReviewError::NotAReview("it has no request".into()))
}

/// The response review as the API server reads it. kube-core builds the response, but its
/// `patch` would serialise as an array of numbers; the API server reads a base64 string (Go
/// `[]byte`), so the wire form is written here, in one pass.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct WireReview<'a> {
    api_version: &'a str,
    kind: &'a str,
    response: WireResponse<'a>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse<'a> {
    uid: &'a str,
    allowed: bool,
    status: &'a kube_core::Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<&'a Vec<String>>,
}

fn encode(response: AdmissionResponse) -> Result<Vec<u8>, serde_json::Error> {
    use base64::Engine;
    let patch = response
        .patch
        .as_ref()
        .map(|p| base64::engine::general_purpose::STANDARD.encode(p));
    let wire = WireReview {
        api_version: &response.types.api_version,
        kind: &response.types.kind,
        response: WireResponse {
            uid: &response.uid,
            allowed: response.allowed,
            status: &response.result,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            warnings: response.warnings.as_ref(),
        },
    };
    serde_json::to_vec(&wire)
}

fn describe<T: Resource>(req: &AdmissionRequest<T>) -> About {
    let namespace = req.namespace.clone().unwrap_or_default();
    let name = if req.name.is_empty() {
        req.object
            .as_ref()
            .and_then(|o| o.meta().generate_name.as_deref())
            .map(|g| format!("{g}*"))
            .unwrap_or_default()
    } else {
        req.name.clone()
    };
    About {
        uid: printable(&req.uid).into_owned(),
        namespace: printable(&namespace).into_owned(),
        name: printable(&name).into_owned(),
    }
}

fn is_pod_create<T: Resource>(req: &AdmissionRequest<T>) -> bool {
    req.kind.group.is_empty()
        && req.kind.kind == "Pod"
        && req.operation == Operation::Create
        && req.sub_resource.as_deref().unwrap_or("").is_empty()
}

fn decide_pod(mut req: AdmissionRequest<Pod>, settings: &Settings) -> (AdmissionResponse, Verdict) {
    let allow = AdmissionResponse::from(&req);
    let pod = req.object.take().filter(|_| is_pod_create(&req));
    let Some(pod) = pod else {
        return (allow, Verdict::Ignored);
    };
    let deny = |reason: &'static str, message: String| {
        let response = AdmissionResponse::from(&req).deny(&message);
        (response, Verdict::Denied { reason, message })
    };
    let shape = mutate::Shape::of(&pod);
    match mutate::mutate_owned(pod, settings) {
        Ok(Outcome::Skipped(skip)) => (allow, Verdict::Skipped(skip)),
        Ok(Outcome::Injected(injection)) => match shape.patch_json(&injection.pod) {
            Ok(patch) => {
                let mut response = allow;
                // `encode` writes it base64-encoded with patchType JSONPatch.
                response.patch = Some(patch);
                if !injection.warnings.is_empty() {
                    response.warnings = Some(injection.warnings);
                }
                (response, Verdict::Injected(injection.mode))
            }
            Err(e) => deny("object", format!("vaultlet: cannot build the patch: {e}")),
        },
        Err(d) => deny(d.reason(), d.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn mk_review(kind: &str, operation: &str, object: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "7f0b2c3e-0000-4000-8000-000000000001",
                "kind": {"group": "", "version": "v1", "kind": kind},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "default",
                "operation": operation,
                "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                "object": object,
                "oldObject": null,
                "dryRun": false
            }
        }))
        .expect("json")
    }

    fn mk_pod_object(annotations: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "web-", "namespace": "default",
                         "labels": {"vaultlet.io/inject": "true"}, "annotations": annotations},
            "spec": {"containers": [{"name": "web", "image": "nginx",
                                     "terminationMessagePath": "/dev/termination-log"}]}
        })
    }

    fn response(r: &Reviewed) -> Value {
        let v: Value = serde_json::from_slice(&r.body).expect("response json");
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(v["kind"], "AdmissionReview");
        assert_eq!(v["response"]["uid"], "7f0b2c3e-0000-4000-8000-000000000001");
        v["response"].clone()
    }

    #[test]
    fn pod_create_gets_a_base64_json_patch() {
        let object =
            mk_pod_object(json!({"vaultlet.io/role": "app", "vaultlet.io/secret-db": "kv/db"}));
        let r = review(
            &mk_review("Pod", "CREATE", object.clone()),
            &Settings::defaults(),
        )
        .expect("ok");
        assert_eq!(r.verdict, Verdict::Injected(InjectMode::NativeSidecar));
        assert_eq!(
            r.about,
            About {
                uid: "7f0b2c3e-0000-4000-8000-000000000001".into(),
                namespace: "default".into(),
                name: "web-*".into()
            }
        );
        let resp = response(&r);
        assert_eq!(resp["allowed"], true);
        assert_eq!(resp["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(resp["patch"].as_str().expect("patch is a string"))
            .expect("base64");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch");
        let mut doc = object;
        json_patch::patch(&mut doc, &patch).expect("applies to the raw object");
        assert_eq!(doc["spec"]["initContainers"][0]["name"], "vaultlet-agent");
        assert_eq!(
            doc["metadata"]["annotations"]["vaultlet.io/status"],
            "injected"
        );
        assert!(resp.get("warnings").is_none(), "{resp}");
    }

    #[test]
    fn advice_travels_as_admission_warnings() {
        let object = mk_pod_object(json!({"vaultlet.io/role": "app",
            "vaultlet.io/secret-db": "kv/db", "vaultlet.io/notify": "signal:SIGHUP:web"}));
        let r = review(&mk_review("Pod", "CREATE", object), &Settings::defaults()).expect("ok");
        let resp = response(&r);
        assert_eq!(resp["allowed"], true);
        let warnings = resp["warnings"].as_array().expect("warnings");
        assert_eq!(warnings.len(), 1, "{resp}");
        assert!(
            warnings[0].as_str().is_some_and(|w| w.contains("signal")),
            "{resp}"
        );
    }

    #[test]
    fn other_requests_pass_unchanged() {
        let s = Settings::defaults();
        let pod =
            mk_pod_object(json!({"vaultlet.io/role": "app", "vaultlet.io/secret-db": "kv/db"}));
        for (kind, op) in [
            ("Pod", "UPDATE"),
            ("Deployment", "CREATE"),
            ("Pod", "DELETE"),
        ] {
            let r = review(&mk_review(kind, op, pod.clone()), &s).expect("ok");
            assert_eq!(r.verdict, Verdict::Ignored, "{kind} {op}");
            let resp = response(&r);
            assert_eq!(resp["allowed"], true);
            assert!(resp.get("patch").is_none());
        }
        let no_opt_in = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
                               "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let r = review(&mk_review("Pod", "CREATE", no_opt_in), &s).expect("ok");
        assert_eq!(r.verdict, Verdict::Skipped(Skip::NotOptedIn));
    }

    #[test]
    fn invalid_annotations_are_denied_with_a_message() {
        let object = mk_pod_object(
            json!({"vaultlet.io/role": "app", "vaultlet.io/secret-db": "kv/db",
                                          "vaultlet.io/refresh-interval": "soon"}),
        );
        let r = review(&mk_review("Pod", "CREATE", object), &Settings::defaults()).expect("ok");
        let resp = response(&r);
        assert_eq!(resp["allowed"], false);
        let msg = resp["status"]["message"].as_str().expect("message");
        assert!(
            msg.contains("vaultlet.io/refresh-interval") && msg.contains("\"soon\""),
            "{msg}"
        );
        assert!(matches!(
            r.verdict,
            Verdict::Denied {
                reason: "invalid_annotation",
                ..
            }
        ));
    }

    #[test]
    fn bad_bodies() {
        let s = Settings::defaults();
        for body in [
            &b"garbage"[..],
            b"{}",
            b"[]",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
        ] {
            let err = review(body, &s).expect_err("not a review");
            assert_eq!(err.status(), 400, "{}", String::from_utf8_lossy(body));
        }
        let huge = vec![b' '; MAX_BODY + 1];
        assert_eq!(review(&huge, &s).expect_err("too large").status(), 413);
        // A Pod object that is not a Pod shape is denied, not a crash.
        let r = review(
            &mk_review(
                "Pod",
                "CREATE",
                json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"labels": {"vaultlet.io/inject": "true"}}, "spec": {"containers": 7}}),
            ),
            &s,
        );
        let resp = response(&r.expect("reviewed"));
        assert_eq!(resp["allowed"], false);
    }

    const STEMS: &[&str] = &[
        "secret-",
        "template-",
        "file-",
        "perms-",
        "format-",
        "params-",
        "version-",
        "notify-",
        "role",
        "auth",
        "mode",
        "native-sidecar",
        "vault-addr",
        "refresh-interval",
        "containers",
        "secrets-dir",
        "init-position",
        "cpu-request",
        "group",
        "notify",
        "inject",
        "status",
        "bogus",
        "secrets-volume-size",
        "init-deadline",
    ];

    fn annotation() -> impl Strategy<Value = (String, String)> {
        let key = (prop::sample::select(STEMS), "[a-z0-9-]{0,4}").prop_map(|(stem, suffix)| {
            let suffix = if stem.ends_with('-') {
                suffix
            } else {
                String::new()
            };
            format!("vaultlet.io/{stem}{suffix}")
        });
        let value = prop_oneof![
            Just("true".to_owned()),
            Just("kv/data/app".to_owned()),
            Just("pki/issue/web common_name=a.b".to_owned()),
            Just("0440".to_owned()),
            Just("30s".to_owned()),
            Just("../x".to_owned()),
            Just("signal:SIGHUP:nginx".to_owned()),
            ".{0,40}",
        ];
        (key, value)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = review(&body, &Settings::defaults());
        }

        #[test]
        fn arbitrary_annotations_are_answered_and_idempotent(
            pairs in prop::collection::btree_map(annotation().prop_map(|p| p.0), ".{0,30}", 0..8),
            extra in prop::collection::vec(annotation(), 0..6),
        ) {
            let mut annotations: serde_json::Map<String, Value> =
                pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            for (k, v) in extra {
                annotations.insert(k, Value::String(v));
            }
            let object = mk_pod_object(Value::Object(annotations.clone()));
            let s = Settings::defaults();
            let r = review(&mk_review("Pod", "CREATE", object.clone()), &s).expect("a review is always answered");
            let resp = response(&r);
            let parsed = crate::annotations::parse(
                annotations.iter().filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_owned())))
                    .collect::<std::collections::BTreeMap<_, _>>().iter().map(|(k, v)| (*k, v)),
            );
            if let Verdict::Injected(_) = r.verdict {
                prop_assert!(parsed.is_ok());
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(resp["patch"].as_str().unwrap_or_default()).expect("base64");
                let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch");
                let mut doc = object;
                json_patch::patch(&mut doc, &patch).expect("applies");
                let again = review(&mk_review("Pod", "CREATE", doc), &s).expect("answered");
                prop_assert_eq!(again.verdict, Verdict::Skipped(Skip::AlreadyInjected));
            } else if let Verdict::Denied { message, .. } = &r.verdict {
                prop_assert_eq!(resp["allowed"].as_bool(), Some(false));
                prop_assert!(message.starts_with("vaultlet: "));
            }
        }
    }
}
