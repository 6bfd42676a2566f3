//! Admission on a real Kubernetes API server (`scripts/cluster.sh install`): the chart's
//! webhook configuration, the API server's own validation, defaulting and Pod Security
//! admission, the real workload controllers, and the injector behind `webhook.url`.
//!
//! Needs the cluster up and the chart installed (scripts/test.sh does it first), the injector
//! built (`cargo build -p vaultlet-injector`).

use std::sync::{RwLock, RwLockReadGuard};
use std::time::Duration;

use serde_json::{Value, json};
use vaultlet_e2e::{bins, injector};
use vaultlet_testkit::cluster::{Cluster, Namespace};
use vaultlet_testkit::wait_until;

/// Deadline of any single wait on the cluster.
const WAIT: Duration = Duration::from_secs(60);

/// Tests that take the injector away hold this for writing; every other test reads.
static INJECTOR: RwLock<()> = RwLock::new(());

fn injector_up() -> RwLockReadGuard<'static, ()> {
    INJECTOR.read().unwrap_or_else(|e| e.into_inner())
}

const RESTRICTED: &[(&str, &str)] = &[("pod-security.kubernetes.io/enforce", "restricted")];

fn read_sample(path: &str) -> Value {
    let file = bins::workspace_root().join("samples").join(path);
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    injector::parse_yaml(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `object` moved into namespace `ns`.
fn in_namespace(mut object: Value, ns: &str) -> Value {
    object["metadata"]["namespace"] = json!(ns);
    object
}

/// The pod template of a workload (or the Pod itself).
fn pod_template(object: &Value) -> &Value {
    match object["kind"].as_str() {
        Some("Pod") => object,
        Some("CronJob") => &object["spec"]["jobTemplate"]["spec"]["template"],
        _ => &object["spec"]["template"],
    }
}

/// What `vaultlet-injector preview` (default settings, as the installed injector) makes of
/// `object`.
fn preview(object: &Value) -> Value {
    let bin = bins::injector_bin().unwrap_or_else(|e| panic!("{e}"));
    let text = injector::preview_text(&bin, &object.to_string(), &[])
        .unwrap_or_else(|e| panic!("preview failed: {e}"));
    injector::parse_yaml(&text).expect("preview prints YAML")
}

/// A Pod spec as compared here: the service-account token volume's random suffix
/// (`kube-api-access-xxxxx`) replaced; volumes and mounts in name order (the API server's
/// ServiceAccount admission adds its token volume before the webhook runs, after it for the
/// preview's dry run); and what a controller or the scheduler adds to a Pod (a DaemonSet's
/// tolerations and node affinity, a StatefulSet's hostname, the node it is bound to) left out.
fn comparable_spec(spec: &Value) -> Value {
    let text = spec.to_string();
    let mut normalized = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("kube-api-access-") {
        let (before, after) = rest.split_at(at + "kube-api-access-".len());
        normalized.push_str(before);
        normalized.push('*');
        rest = after.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    }
    normalized.push_str(rest);
    let mut spec: Value = serde_json::from_str(&normalized).expect("JSON stays JSON");
    if let Some(map) = spec.as_object_mut() {
        for key in [
            "tolerations",
            "affinity",
            "hostname",
            "subdomain",
            "nodeName",
        ] {
            map.remove(key);
        }
    }
    sort_by(&mut spec["volumes"], "name");
    for list in ["initContainers", "containers"] {
        if let Some(containers) = spec[list].as_array_mut() {
            for c in containers {
                sort_by(&mut c["volumeMounts"], "mountPath");
            }
        }
    }
    spec
}

fn sort_by(list: &mut Value, key: &str) {
    if let Some(items) = list.as_array_mut() {
        items.sort_by(|a, b| a[key].as_str().cmp(&b[key].as_str()));
    }
}

fn vaultlet_annotations(pod: &Value) -> Value {
    let annotations = pod["metadata"]["annotations"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.starts_with("vaultlet.io/"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<serde_json::Map<_, _>>()
        })
        .unwrap_or_default();
    Value::Object(annotations)
}

fn agents(pod: &Value) -> Vec<String> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|list| pod["spec"][list].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["name"].as_str().map(String::from))
        .filter(|n| n.starts_with("vaultlet-agent"))
        .collect()
}

/// The Pod the API server would store for `template` without the webhook: the preview's
/// template, unlabelled so no webhook sees it, through a server-side dry run for defaulting.
fn expected_pod(ns: &Namespace, template: &Value) -> Value {
    let mut metadata = template["metadata"].clone();
    if let Some(labels) = metadata["labels"].as_object_mut() {
        labels.remove("vaultlet.io/inject");
    }
    metadata["name"] = json!("expected");
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
                     "spec": template["spec"]});
    ns.cluster()
        .create_dry_run(&ns.name, &pod)
        .unwrap_or_else(|e| panic!("the preview's Pod is not valid for the API server: {e}"))
}

/// Creates `workload` in `ns`, waits for the Pod its controllers make, and checks that the
/// stored Pod carries exactly the injection `preview` shows for the workload.
fn check_workload(ns: &Namespace, workload: Value) {
    let cluster = ns.cluster();
    let workload = in_namespace(workload, &ns.name);
    let kind = workload["kind"].as_str().unwrap_or_default().to_string();
    let name = workload["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let previewed = preview(&workload);
    cluster
        .create(&ns.name, &workload)
        .unwrap_or_else(|e| panic!("{kind} {name} refused: {e}"));
    if kind == "CronJob" {
        // Not waiting for the schedule: a Job from the CronJob's template, as `kubectl create
        // job --from` does, goes through the same Job controller.
        cluster.kubectl_ok(&[
            "create",
            "job",
            "-n",
            &ns.name,
            &format!("{name}-manual"),
            &format!("--from=cronjob/{name}"),
        ]);
    }
    let pod = cluster.wait_for(
        &ns.name,
        "pods",
        WAIT,
        &format!("a Pod of {kind} {name}"),
        |pods| {
            pods.iter()
                .find(|p| {
                    p["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with(&name))
                })
                .cloned()
        },
    );
    let template = pod_template(&previewed);
    let expected = expected_pod(ns, template);
    assert_eq!(
        comparable_spec(&pod["spec"]),
        comparable_spec(&expected["spec"]),
        "{kind} {name}: the stored Pod's spec differs from what preview shows"
    );
    assert_eq!(
        vaultlet_annotations(&pod),
        vaultlet_annotations(template),
        "{kind} {name}: vaultlet annotations differ from preview"
    );
    assert_eq!(agents(&pod).len(), agents(template).len());
    assert!(!agents(&pod).is_empty(), "{kind} {name}: no agent injected");
}

/// Applies a sample's ServiceAccount and ConfigMap files into `ns`.
fn apply_sample_objects(ns: &Namespace, sample: &str) {
    for file in ["serviceaccount.yaml", "configmap.yaml"] {
        let path = bins::workspace_root()
            .join("samples")
            .join(sample)
            .join(file);
        if path.is_file() {
            let object = in_namespace(read_sample(&format!("{sample}/{file}")), &ns.name);
            ns.cluster()
                .create(&ns.name, &object)
                .unwrap_or_else(|e| panic!("{sample}/{file}: {e}"));
        }
    }
}

#[test]
fn every_sample_workload_is_admitted_as_preview_shows_under_restricted() {
    let _up = injector_up();
    let cluster = Cluster::running();
    let workloads = [
        ("nginx", "deployment.yaml"),
        ("approle", "deployment.yaml"),
        ("classic-sidecar", "deployment.yaml"),
        ("init-only", "deployment.yaml"),
        ("pki-tls", "deployment.yaml"),
        ("postgres-dynamic", "deployment.yaml"),
        ("jwt", "deployment.yaml"),
        ("cert-auth", "deployment.yaml"),
        ("job", "job.yaml"),
        ("cronjob", "cronjob.yaml"),
        ("env", "deployment.yaml"),
    ];
    for (sample, file) in workloads {
        let ns = cluster.namespace(&format!("e2e-{sample}"), RESTRICTED);
        apply_sample_objects(&ns, sample);
        check_workload(&ns, read_sample(&format!("{sample}/{file}")));
    }
}

#[test]
fn every_workload_kind_is_injected_through_its_controller() {
    let _up = injector_up();
    let cluster = Cluster::running();
    let ns = cluster.namespace("e2e-kinds", RESTRICTED);
    apply_sample_objects(&ns, "nginx");
    let deployment = read_sample("nginx/deployment.yaml");
    // A DaemonSet makes Pods only for Nodes: without the node it has nothing to show.
    let kinds: &[&str] = if cluster.node().is_some() {
        &["StatefulSet", "DaemonSet", "ReplicaSet"]
    } else {
        &["StatefulSet", "ReplicaSet"]
    };
    for &kind in kinds {
        let mut workload = deployment.clone();
        workload["kind"] = json!(kind);
        workload["metadata"]["name"] = json!(format!("web-{}", kind.to_lowercase()));
        let spec = workload["spec"].as_object_mut().expect("spec");
        spec.remove("strategy");
        if kind == "DaemonSet" {
            spec.remove("replicas");
        }
        if kind == "StatefulSet" {
            spec.insert("serviceName".into(), json!("web"));
        }
        check_workload(&ns, workload);
    }
}

#[test]
fn every_sample_pod_is_admitted_under_restricted() {
    let _up = injector_up();
    let cluster = Cluster::running();
    for sample in [
        "nginx",
        "approle",
        "classic-sidecar",
        "init-only",
        "pki-tls",
        "postgres-dynamic",
        "jwt",
        "cert-auth",
        "job",
        "cronjob",
        "env",
    ] {
        let ns = cluster.namespace(&format!("e2e-pod-{sample}"), RESTRICTED);
        apply_sample_objects(&ns, sample);
        let mut pod = in_namespace(read_sample(&format!("{sample}/pod.yaml")), &ns.name);
        // Owner references name objects of the sample's own namespace; not needed here.
        if let Some(meta) = pod["metadata"].as_object_mut() {
            meta.remove("ownerReferences");
        }
        let stored = cluster
            .create(&ns.name, &pod)
            .unwrap_or_else(|e| panic!("samples/{sample}/pod.yaml refused: {e}"));
        assert!(
            !agents(&stored).is_empty(),
            "samples/{sample}/pod.yaml: no agent injected"
        );
        let expected = expected_pod(&ns, &preview(&pod));
        assert_eq!(
            comparable_spec(&stored["spec"]),
            comparable_spec(&expected["spec"]),
            "samples/{sample}/pod.yaml: the stored Pod differs from preview"
        );
    }
}

/// A labelled Pod asking for one secret: what most tests here need.
fn app_pod(name: &str) -> Value {
    labelled_pod(
        name,
        json!({"vaultlet.io/role": "app", "vaultlet.io/secret-db": "secret/data/db"}),
    )
}

fn labelled_pod(name: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"vaultlet.io/inject": "true"},
            "annotations": annotations,
        },
        "spec": {
            "containers": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"]}],
        },
    })
}

#[test]
fn a_bad_annotation_fails_kubectl_with_the_injectors_message() {
    let _up = injector_up();
    let cluster = Cluster::running();
    let ns = cluster.namespace("e2e-deny", &[]);
    let pod = labelled_pod(
        "bad",
        json!({"vaultlet.io/role": "app", "vaultlet.io/secret-db": "secret/data/db",
               "vaultlet.io/perms-db": "0999"}),
    );
    let err = cluster
        .create(&ns.name, &pod)
        .expect_err("a Pod with vaultlet.io/perms-db: 0999 must be refused");
    assert_eq!(
        err,
        "Error from server: error when creating \"STDIN\": admission webhook \
         \"inject.vaultlet.io\" denied the request: vaultlet: annotation vaultlet.io/perms-db: \
         value \"0999\" is invalid: expected an octal mode like 0440"
    );
    assert!(cluster.get(&ns.name, "pod", "bad").is_none());
}

#[test]
fn an_unlabelled_pod_never_reaches_the_webhook() {
    let _up = injector_up();
    let cluster = Cluster::running();
    let ns = cluster.namespace("e2e-unlabelled", &[]);
    let annotations = json!({"vaultlet.io/role": "app", "vaultlet.io/secret-db": "secret/data/db"});
    let mut pod = labelled_pod("plain", annotations.clone());
    pod["metadata"]["labels"] = json!({"app": "plain"});
    // Other tests create labelled Pods at the same time: hold the injector for this one.
    drop(_up);
    let _only = INJECTOR.write().unwrap_or_else(|e| e.into_inner());
    let before = cluster.injector_reviews();
    let stored = cluster
        .create(&ns.name, &pod)
        .expect("unlabelled Pod created");
    assert_eq!(cluster.injector_reviews(), before, "the webhook was called");
    assert!(agents(&stored).is_empty());
    // The same Pod with the label does reach it: the counter can move.
    let stored = cluster
        .create(&ns.name, &labelled_pod("labelled", annotations))
        .expect("labelled Pod created");
    assert_eq!(agents(&stored), ["vaultlet-agent"]);
    assert!(cluster.injector_reviews() > before);
}

#[test]
fn with_the_injector_down_opted_in_pods_are_refused_and_others_created() {
    let _only = INJECTOR.write().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::running();
    let ns = cluster.namespace("e2e-outage", &[]);
    /// Starts the injector again however the test ends.
    struct StartAgain(&'static Cluster);
    impl Drop for StartAgain {
        fn drop(&mut self) {
            self.0.script(&["injector", "start"]);
        }
    }
    cluster.script(&["injector", "stop"]);
    let start_again = StartAgain(cluster);
    let refused = cluster.create(&ns.name, &app_pod("opted-in"));
    let mut plain = labelled_pod("plain", json!({}));
    plain["metadata"]["labels"] = json!({"app": "plain"});
    let created = cluster.create(&ns.name, &plain);
    drop(start_again);
    let err = refused.expect_err("an opted-in Pod must be refused while the injector is down");
    let url = cluster.injector_url();
    // The API server finds no endpoint of the Service, or (no node) nothing listening.
    let cause = if cluster.injector_in_cluster() {
        "no endpoints available for service \"vaultlet\"".to_string()
    } else {
        let host = url
            .trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap_or_default();
        format!("dial tcp {host}: connect: connection refused")
    };
    assert_eq!(
        err,
        format!(
            "Error from server (InternalError): error when creating \"STDIN\": Internal error \
             occurred: failed calling webhook \"inject.vaultlet.io\": failed to call webhook: \
             Post \"{url}?timeout=5s\": {cause}"
        )
    );
    created.expect("an unlabelled Pod is created while the injector is down");
}

#[test]
fn updating_an_injected_pod_does_not_inject_again() {
    let _up = injector_up();
    let cluster = Cluster::running();
    let ns = cluster.namespace("e2e-update", &[]);
    let stored = cluster.create(&ns.name, &app_pod("app")).expect("created");
    cluster.kubectl_ok(&["label", "pod", "-n", &ns.name, "app", "team=a"]);
    cluster.kubectl_ok(&["annotate", "pod", "-n", &ns.name, "app", "note=changed"]);
    let updated = cluster.get(&ns.name, "pod", "app").expect("pod exists");
    assert_eq!(updated["metadata"]["labels"]["team"], "a");
    // The scheduler may have bound it to the node meanwhile; nothing else changed.
    assert_eq!(
        comparable_spec(&updated["spec"]),
        comparable_spec(&stored["spec"])
    );
    assert_eq!(agents(&updated), ["vaultlet-agent"]);
}

/// A second mutating webhook (a small Python HTTPS server) that adds a container to every
/// labelled Pod of one namespace, registered after vaultlet's: the API server re-invokes
/// vaultlet's webhook (reinvocationPolicy IfNeeded), which must not inject a second agent.
#[test]
fn reinvocation_after_another_webhook_leaves_one_agent() {
    let _up = injector_up();
    let cluster = Cluster::running();
    let ns = cluster.namespace("e2e-reinvoke", &[]);
    let other = vaultlet_e2e::webhook::ExtraContainerWebhook::start(cluster, &ns.name);
    let before = cluster.injector_reviews();
    let stored = cluster.create(&ns.name, &app_pod("app")).expect("created");
    assert!(other.calls() >= 1, "the second webhook was not called");
    let names: Vec<&str> = stored["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(names.contains(&"extra"), "{names:?}");
    assert_eq!(agents(&stored), ["vaultlet-agent"]);
    // Called twice for this Pod (once more after the other webhook changed it).
    wait_until(Duration::from_secs(5), "two reviews", || {
        cluster.injector_reviews() >= before + 2.0
    });
}
