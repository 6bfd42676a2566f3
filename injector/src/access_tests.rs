//! Who can read the rendered files, and ids left to the platform, through the whole mutation.

use serde_json::{Value, json};

use crate::mutate::{AGENT_CONTAINER, Outcome, mutate};
use crate::settings::Settings;
use crate::testutil::mk_pod;

fn mk(annotations: Value, pod_sc: Value, app_sc: Value) -> Value {
    let mut a = json!({
        "vaultlet.io/role": "app",
        "vaultlet.io/secret-db": "database/creds/app",
    });
    if let (Some(a), Value::Object(extra)) = (a.as_object_mut(), annotations) {
        a.extend(extra);
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default",
                     "labels": {"vaultlet.io/inject": "true"}, "annotations": a},
        "spec": {
            "securityContext": pod_sc,
            "containers": [{"name": "web", "image": "app:1", "securityContext": app_sc}]
        }
    })
}

fn injected(v: Value, s: &Settings) -> crate::mutate::Injection {
    match mutate(&mk_pod(v), s).expect("allowed") {
        Outcome::Injected(i) => *i,
        Outcome::Skipped(skip) => panic!("skipped: {skip:?}"),
    }
}

fn warnings(v: Value) -> Vec<String> {
    injected(v, &Settings::defaults()).warnings
}

#[test]
fn an_app_user_that_cannot_read_the_files_is_named() {
    let w = warnings(mk(json!({}), json!({}), json!({"runAsUser": 1000})));
    assert_eq!(
        w,
        vec![
            "vaultlet.io/perms-db: container \"web\" runs as user 1000, its image's group and \
             cannot read db (mode 0440, owner 65532, group 65532); set \
             spec.securityContext.fsGroup (the files' group) or vaultlet.io/group to a group of \
             the container, or a mode readable by it such as vaultlet.io/perms-db: \"0444\""
                .to_owned()
        ]
    );
    // Owner-only files are unreadable through the group too.
    let w = warnings(mk(
        json!({"vaultlet.io/perms-db": "0400"}),
        json!({"fsGroup": 2000}),
        json!({"runAsUser": 1000}),
    ));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("runs as user 1000, its image's group (and groups 2000)")
            && w[0].contains("db (mode 0400, owner 65532, group 2000)"),
        "{w:?}"
    );
}

#[test]
fn readable_files_give_no_warning() {
    let cases = [
        // fsGroup: the files' group, and a group of every container.
        (
            json!({}),
            json!({"fsGroup": 2000}),
            json!({"runAsUser": 1000}),
        ),
        // The Pod's user is the agent's user.
        (json!({}), json!({"runAsUser": 1000}), json!({})),
        // The container's group is the files' group.
        (
            json!({}),
            json!({}),
            json!({"runAsUser": 1000, "runAsGroup": 65532}),
        ),
        // A supplemental group chosen as the files' group.
        (
            json!({"vaultlet.io/group": "3000"}),
            json!({"supplementalGroups": [3000]}),
            json!({"runAsUser": 1000}),
        ),
        // World-readable.
        (
            json!({"vaultlet.io/perms-db": "0444"}),
            json!({}),
            json!({"runAsUser": 1000}),
        ),
        // Not a container that gets the files.
        (
            json!({"vaultlet.io/containers": "other"}),
            json!({}),
            json!({"runAsUser": 1000}),
        ),
        // The image decides the user: nothing certain to say.
        (json!({}), json!({}), json!({})),
    ];
    for (i, (annotations, pod_sc, app_sc)) in cases.into_iter().enumerate() {
        let mut v = mk(annotations.clone(), pod_sc, app_sc);
        if annotations.get("vaultlet.io/containers").is_some() {
            v["spec"]["containers"]
                .as_array_mut()
                .expect("containers")
                .push(json!({"name": "other", "image": "x"}));
        }
        assert_eq!(warnings(v), Vec::<String>::new(), "case {i}");
    }
}

fn agent_sc(i: &crate::mutate::Injection) -> Value {
    let spec = i.pod.spec.as_ref().expect("spec");
    let agent = spec
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == AGENT_CONTAINER)
        .expect("agent");
    serde_json::to_value(&agent.security_context).expect("json")
}

#[test]
fn ids_can_be_left_to_the_platform() {
    // Default: explicit ids.
    let i = injected(mk(json!({}), json!({}), json!({})), &Settings::defaults());
    assert_eq!(agent_sc(&i)["runAsUser"], 65532);
    assert_eq!(agent_sc(&i)["runAsGroup"], 65532);

    // Per Pod, and as the injector's setting.
    let mut platform = Settings::defaults();
    platform.agent.set_run_as_ids = false;
    let per_pod = mk(
        json!({"vaultlet.io/set-run-as-ids": "false", "vaultlet.io/notify": "signal:SIGHUP:app"}),
        json!({"fsGroup": 1000680000}),
        json!({}),
    );
    for (what, v, s) in [
        ("annotation", per_pod.clone(), Settings::defaults()),
        ("setting", per_pod.clone(), platform.clone()),
    ] {
        let i = injected(v, &s);
        let sc = agent_sc(&i);
        assert!(sc.get("runAsUser").is_none(), "{what}: {sc}");
        assert!(sc.get("runAsGroup").is_none(), "{what}: {sc}");
        assert_eq!(sc["runAsNonRoot"], true, "{what}");
        // Files through fsGroup; signals reach the app, which gets the same platform user.
        assert_eq!(i.config.secrets[0].group, Some(1000680000), "{what}");
        assert_eq!(i.warnings, Vec::<String>::new(), "{what}");
    }
    // The annotation also turns the setting back on.
    let v = mk(
        json!({"vaultlet.io/set-run-as-ids": "true"}),
        json!({}),
        json!({}),
    );
    assert_eq!(agent_sc(&injected(v, &platform))["runAsUser"], 65532);

    // An app with its own user, no fsGroup: named, with the platform's ids.
    let v = mk(json!({}), json!({}), json!({"runAsUser": 1000}));
    let w = injected(v, &platform).warnings;
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("db (mode 0440, owner the platform's user, group the platform's group)"),
        "{w:?}"
    );
}
