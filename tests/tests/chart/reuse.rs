//! Connections between the API server and the injector. The API server pools its connections
//! to a webhook and reuses an idle one for the next review (Go's transport keeps idle
//! connections 90 s and pings an idle HTTP/2 connection after 30 s); a Pod is refused when the
//! injector closes a connection just as the API server reuses it. So the injector keeps idle
//! connections longer than the API server does and closes them only when it drains, in a way
//! the client does not reuse (`Connection: close`, HTTP/2 GOAWAY).

use std::time::Duration;

use serde_json::json;
use vaultlet_testkit::cluster::Cluster;

use super::{install_isolated, labelled_pod, pod_metric};

/// Pods created one after another for one release, with every refusal kept.
struct Creator<'a> {
    cluster: &'a Cluster,
    ns: String,
    release: &'a str,
    created: usize,
    failures: Vec<String>,
}

impl<'a> Creator<'a> {
    fn new(cluster: &'a Cluster, ns: &str, release: &'a str) -> Self {
        Self {
            cluster,
            ns: ns.to_owned(),
            release,
            created: 0,
            failures: Vec::new(),
        }
    }

    /// Creates one labelled Pod (never scheduled); `when` says what came before it.
    fn create(&mut self, when: &str) {
        let name = format!("app-{}", self.created + self.failures.len() + 1);
        let mut pod = labelled_pod();
        pod["metadata"]["name"] = json!(name);
        pod["metadata"]["labels"]["vaultlet.io/e2e-release"] = json!(self.release);
        pod["spec"]["nodeSelector"] = json!({"vaultlet.io/no-such-node": "true"});
        match self.cluster.create(&self.ns, &pod) {
            Ok(stored) if stored["spec"]["initContainers"][0]["name"] == "vaultlet-agent" => {
                self.created += 1
            }
            Ok(_) => self.failures.push(format!("{name} ({when}): not injected")),
            Err(e) => self.failures.push(format!("{name} ({when}): {e}")),
        }
    }
}

/// Webhook connections open on the release's injector Pods now.
fn open_connections(cluster: &Cluster, ns: &str, release: &str) -> f64 {
    let fullname = format!("{release}-vaultlet");
    cluster
        .list(ns, "pods")
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["metadata"]["name"].as_str())
        .filter(|n| n.starts_with(&fullname))
        .map(|n| pod_metric(cluster, ns, n, "vaultlet_injector_connections"))
        .sum()
}

/// Idle gaps between two creations, around every threshold: the injector's old idle timeout
/// (10 s, which refused 1-2 Pods in 11 on this cluster), HTTP/2's 30 s ping, Go's 90 s.
const GAPS: [u64; 6] = [5, 9, 11, 20, 45, 95];

/// Pods created after each idle gap, and during and right after a rollout of the injector, are
/// all admitted; and the API server's pooled connections are still open after 45 s of quiet.
#[test]
fn pods_created_after_idle_gaps_and_during_a_rollout_are_never_refused() {
    let cluster = Cluster::running();
    assert!(cluster.node().is_some(), "needs the node");
    let ns = cluster.namespace("e2e-chart-gaps", &[]);
    let release = "aa-gaps";
    let _release = install_isolated(cluster, &ns, release, &["--wait", "--timeout", "180s"]);
    let deployment = format!("deployment/{release}-vaultlet");
    let apps = cluster.namespace("e2e-chart-gaps-apps", &[]);
    let mut creator = Creator::new(cluster, &apps.name, release);
    creator.create("the first");
    let mut open_after_quiet = Vec::new();
    for gap in GAPS {
        std::thread::sleep(Duration::from_secs(gap));
        if gap > 30 {
            open_after_quiet.push((gap, open_connections(cluster, &ns.name, release)));
        }
        creator.create(&format!("after {gap} s of quiet"));
        if gap == 20 {
            // A rollout: Pods created while replicas drain, then right after it.
            cluster.kubectl_ok(&["rollout", "restart", "-n", &ns.name, &deployment]);
            let status = std::thread::scope(|s| {
                let rollout = s.spawn(|| {
                    cluster.kubectl(
                        &[
                            "rollout",
                            "status",
                            "-n",
                            &ns.name,
                            &deployment,
                            "--timeout=180s",
                        ],
                        None,
                    )
                });
                while !rollout.is_finished() {
                    creator.create("during the rollout");
                    std::thread::sleep(Duration::from_millis(500));
                }
                rollout.join().expect("rollout thread")
            });
            status.unwrap_or_else(|e| panic!("rollout of {deployment}: {e}"));
            creator.create("right after the rollout");
        }
    }
    assert_eq!(
        creator.failures,
        Vec::<String>::new(),
        "{} Pods created",
        creator.created
    );
    // The 45 s gap came after the rollout's creations: their connections stayed open (the
    // API server's client closes its own at 90 s, so after 95 s none may be left).
    let open_45 = open_after_quiet
        .iter()
        .find(|(gap, _)| *gap == 45)
        .map(|(_, open)| *open);
    assert!(
        open_45.is_some_and(|open| open >= 1.0),
        "no webhook connection open after 45 s of quiet: {open_after_quiet:?}"
    );
}

/// Rolling the injector (`kubectl rollout restart`, then deleting one of its Pods) while Pods
/// are created continuously: with `failurePolicy: Fail`, every creation must still succeed and
/// be injected, because a stopping injector turns unready and keeps answering for its drain
/// delay while the endpoints change.
#[test]
fn rolling_the_injector_refuses_no_pod() {
    let cluster = Cluster::running();
    assert!(cluster.node().is_some(), "needs the node");
    let ns = cluster.namespace("e2e-chart-roll", &[]);
    let release = "aa-roll";
    let _release = install_isolated(cluster, &ns, release, &["--wait", "--timeout", "180s"]);
    let deployment = format!("deployment/{release}-vaultlet");
    let apps = cluster.namespace("e2e-chart-roll-apps", &[]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let creator = {
        let stop = std::sync::Arc::clone(&stop);
        let mut creator = Creator::new(cluster, &apps.name, release);
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                creator.create("during the roll");
            }
            creator
        })
    };
    let rolled_out = || {
        cluster.kubectl_ok(&[
            "rollout",
            "status",
            "-n",
            &ns.name,
            &deployment,
            "--timeout=180s",
        ])
    };
    cluster.kubectl_ok(&["rollout", "restart", "-n", &ns.name, &deployment]);
    rolled_out();
    let victim = cluster
        .list(&ns.name, "pods")
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .find_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .expect("an injector Pod");
    cluster.kubectl_ok(&["delete", "pod", "-n", &ns.name, &victim, "--wait=true"]);
    rolled_out();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let Creator {
        created, failures, ..
    } = creator.join().expect("creator thread");
    assert_eq!(failures, Vec::<String>::new(), "{created} Pods created");
    assert!(
        created >= 20,
        "only {created} Pods were created during the roll"
    );
}
