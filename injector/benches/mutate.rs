//! In-process cost of the admission path: annotation parsing, mutation, patch, whole review.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use vaultlet_injector::mutate::{self, Outcome};
use vaultlet_injector::settings::Settings;
use vaultlet_injector::{annotations, review};

fn main() {
    divan::main();
}

fn pod_json() -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "checkout-7d9f8b6c5d-", "namespace": "shop",
            "labels": {"app": "checkout", "vaultlet.io/inject": "true"},
            "annotations": {
                "vaultlet.io/role": "checkout",
                "vaultlet.io/secret-db": "database/creds/checkout",
                "vaultlet.io/template-db": "DATABASE_URL=postgres://{{username}}:{{password}}@db/checkout\n",
                "vaultlet.io/secret-stripe": "secret/data/shop/stripe",
                "vaultlet.io/file-stripe": "stripe.env",
                "vaultlet.io/notify": "http://127.0.0.1:8080/-/reload"
            }
        },
        "spec": {
            "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
            "containers": [
                {"name": "checkout", "image": "registry.example.com/shop/checkout:2.14.3",
                 "env": [{"name": "LOG_LEVEL", "value": "info"}],
                 "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}},
                {"name": "exporter", "image": "registry.example.com/shop/exporter:0.9.1"}
            ]
        }
    })
}

fn review_body() -> Vec<u8> {
    review_of(pod_json())
}

/// An AdmissionReview of `pod`, as the API server sends it.
fn review_of(pod: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod, "oldObject": null, "dryRun": false
        }
    }))
    .unwrap_or_default()
}

#[divan::bench]
fn parse_annotations(bencher: divan::Bencher) {
    let pod: Pod = serde_json::from_value(pod_json()).unwrap_or_default();
    let map: BTreeMap<String, String> = pod.metadata.annotations.unwrap_or_default();
    bencher.bench(|| annotations::parse(divan::black_box(&map)).is_ok());
}

#[divan::bench]
fn mutate_pod(bencher: divan::Bencher) {
    let pod: Pod = serde_json::from_value(pod_json()).unwrap_or_default();
    let settings = Settings::defaults();
    bencher.bench(|| mutate::mutate(divan::black_box(&pod), &settings).is_ok());
}

#[divan::bench]
fn mutate_and_patch(bencher: divan::Bencher) {
    let pod: Pod = serde_json::from_value(pod_json()).unwrap_or_default();
    let settings = Settings::defaults();
    bencher.bench(|| match mutate::mutate(divan::black_box(&pod), &settings) {
        Ok(Outcome::Injected(i)) => mutate::patch(&pod, &i.pod).map(|p| p.0.len()).unwrap_or(0),
        _ => 0,
    });
}

#[divan::bench]
fn whole_review(bencher: divan::Bencher) {
    let body = review_body();
    let settings = Settings::defaults();
    bencher
        .counter(divan::counter::BytesCount::new(body.len()))
        .bench(|| review::review(divan::black_box(&body), &settings).map(|r| r.body.len()));
}

/// The API server's second call (`reinvocationPolicy: IfNeeded`, after a later webhook changed
/// the Pod): the Pod is already injected and is let through unchanged.
#[divan::bench]
fn whole_review_reinvoked(bencher: divan::Bencher) {
    let settings = Settings::defaults();
    let mut pod = pod_json();
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap_or_default();
    if let Ok(Outcome::Injected(i)) = mutate::mutate(&typed, &settings)
        && let Ok(patch) = mutate::patch(&typed, &i.pod)
    {
        let _ = json_patch::patch(&mut pod, &patch);
    }
    let body = review_of(pod);
    bencher
        .counter(divan::counter::BytesCount::new(body.len()))
        .bench(|| review::review(divan::black_box(&body), &settings).map(|r| r.body.len()));
}
