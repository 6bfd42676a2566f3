//! How much one review may hold, checked in one linear pass over the body before it is decoded.
//!
//! Decoding is where a review's memory goes: `{}` in `spec.containers` is 3 bytes of JSON and
//! kilobytes of a typed `Container`, and the mutation copies the Pod, so a 2 MiB body of empty
//! containers took 2.3 GB. This pass walks the JSON with serde's borrowing deserializer,
//! stores nothing but counters, and stops at the first list that is longer than a Pod needs.
//! A Pod the API server stores is at most about 1.5 MiB; real ones are far below every limit.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Containers, init containers and ephemeral containers of one Pod, together.
pub const MAX_CONTAINERS: usize = 100;
/// `env` entries of one container.
pub const MAX_ENV: usize = 1_000;
/// `envFrom` entries of one container.
pub const MAX_ENV_FROM: usize = 100;
/// `volumeMounts` of one container.
pub const MAX_MOUNTS: usize = 500;
/// `spec.volumes`.
pub const MAX_VOLUMES: usize = 500;
/// `metadata.annotations` or `metadata.labels` entries.
pub const MAX_METADATA_ENTRIES: usize = 1_000;
/// Entries of any other list or map.
pub const MAX_ENTRIES: usize = 10_000;
/// JSON values (every scalar, list and map) in the whole body.
pub const MAX_VALUES: usize = 100_000;

/// The first limit the body exceeds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooBig {
    /// A list or map with more entries than its limit.
    #[error(
        "{field} has more than {limit} entries; vaultlet reviews Pods up to that size \
         (split the workload, or mount a ConfigMap instead of listing entries)"
    )]
    Entries {
        /// Where, e.g. `spec.containers[0].env` or `spec.containers + initContainers`.
        field: String,
        /// The limit that was passed.
        limit: usize,
    },
    /// More JSON values in the whole body than [`MAX_VALUES`].
    #[error(
        "the admission request has more than {MAX_VALUES} JSON values; vaultlet reviews Pods up \
         to that size (move data out of the Pod spec, into a ConfigMap or Secret)"
    )]
    Values,
}

/// Why the pass stopped: a limit, or a body that is not JSON.
#[derive(Debug)]
pub enum Checked {
    /// A limit was passed.
    TooBig(TooBig),
    /// Not JSON (or nested deeper than serde_json's limit of 128).
    Json(serde_json::Error),
}

/// Walks `body` once; `Ok` when every list and map is within its limit.
pub fn check(body: &[u8]) -> Result<(), Checked> {
    let mut state = State::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = Walk {
        state: &mut state,
        at: At::Review,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match (result, state.too_big) {
        (_, Some(too_big)) => Err(Checked::TooBig(too_big)),
        (Ok(()), None) => Ok(()),
        (Err(e), None) => Err(Checked::Json(e)),
    }
}

#[derive(Default)]
struct State {
    values: usize,
    containers: usize,
    too_big: Option<TooBig>,
}

impl State {
    fn fail<E: de::Error>(&mut self, too_big: TooBig) -> E {
        let message = too_big.to_string();
        self.too_big = Some(too_big);
        E::custom(message)
    }
}

/// Where in an AdmissionReview a value is, as far as the limits care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Review,
    Request,
    /// `request.object` or `request.oldObject`.
    Object,
    Metadata,
    Spec,
    /// `spec.containers`, `spec.initContainers` or `spec.ephemeralContainers`.
    Containers(&'static str),
    Container(&'static str),
    /// A list or map with its own limit.
    Limited(Limited),
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limited {
    Annotations,
    Labels,
    Volumes,
    Env(&'static str),
    EnvFrom(&'static str),
    Mounts(&'static str),
}

impl At {
    fn child(self, key: &str) -> At {
        match (self, key) {
            (At::Review, "request") => At::Request,
            (At::Request, "object" | "oldObject") => At::Object,
            (At::Object, "metadata") => At::Metadata,
            (At::Object, "spec") => At::Spec,
            (At::Metadata, "annotations") => At::Limited(Limited::Annotations),
            (At::Metadata, "labels") => At::Limited(Limited::Labels),
            (At::Spec, "containers") => At::Containers("containers"),
            (At::Spec, "initContainers") => At::Containers("initContainers"),
            (At::Spec, "ephemeralContainers") => At::Containers("ephemeralContainers"),
            (At::Spec, "volumes") => At::Limited(Limited::Volumes),
            (At::Container(list), "env") => At::Limited(Limited::Env(list)),
            (At::Container(list), "envFrom") => At::Limited(Limited::EnvFrom(list)),
            (At::Container(list), "volumeMounts") => At::Limited(Limited::Mounts(list)),
            _ => At::Other,
        }
    }

    fn element(self) -> At {
        match self {
            At::Containers(list) => At::Container(list),
            _ => At::Other,
        }
    }

    /// The limit on this list's or map's entries, and its name in the error.
    fn limit(self) -> (usize, String) {
        match self {
            At::Containers(_) => (
                MAX_CONTAINERS,
                "spec.containers + initContainers + ephemeralContainers".into(),
            ),
            At::Limited(Limited::Annotations) => {
                (MAX_METADATA_ENTRIES, "metadata.annotations".into())
            }
            At::Limited(Limited::Labels) => (MAX_METADATA_ENTRIES, "metadata.labels".into()),
            At::Limited(Limited::Volumes) => (MAX_VOLUMES, "spec.volumes".into()),
            At::Limited(Limited::Env(list)) => (MAX_ENV, format!("spec.{list}[].env")),
            At::Limited(Limited::EnvFrom(list)) => (MAX_ENV_FROM, format!("spec.{list}[].envFrom")),
            At::Limited(Limited::Mounts(list)) => {
                (MAX_MOUNTS, format!("spec.{list}[].volumeMounts"))
            }
            _ => (MAX_ENTRIES, "a list or map of the admission request".into()),
        }
    }
}

/// One value at a position; counts it and its entries.
struct Walk<'s> {
    state: &'s mut State,
    at: At,
}

impl Walk<'_> {
    fn count<E: de::Error>(&mut self) -> Result<(), E> {
        self.state.values += 1;
        if self.state.values > MAX_VALUES {
            return Err(self.state.fail(TooBig::Values));
        }
        Ok(())
    }

    /// Counts one entry of the list or map at `self.at`; `n` is the entries so far.
    fn entry<E: de::Error>(&mut self, n: usize) -> Result<(), E> {
        let (limit, field) = self.at.limit();
        // The three container lists share one limit.
        let over = if matches!(self.at, At::Containers(_)) {
            self.state.containers += 1;
            self.state.containers > limit
        } else {
            n > limit
        };
        if over {
            return Err(self.state.fail(TooBig::Entries { field, limit }));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

macro_rules! scalar {
    ($($name:ident: $ty:ty),*) => {$(
        fn $name<E: de::Error>(mut self, _: $ty) -> Result<(), E> {
            self.count()
        }
    )*};
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    scalar!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str);

    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.count()
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.count()?;
        let element = self.at.element();
        let mut n = 0;
        loop {
            let more = seq.next_element_seed(Walk {
                state: self.state,
                at: element,
            })?;
            if more.is_none() {
                return Ok(());
            }
            n += 1;
            self.entry(n)?;
        }
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.count()?;
        let mut n = 0;
        while let Some(key) = map.next_key::<Key>()? {
            n += 1;
            self.entry(n)?;
            let at = match &key {
                Key::Known(k) => self.at.child(k),
                Key::Other => At::Other,
            };
            map.next_value_seed(Walk {
                state: self.state,
                at,
            })?;
        }
        Ok(())
    }
}

/// A map key: one of the few names the walk follows, or any other (not stored).
enum Key {
    Known(&'static str),
    Other,
}

const KNOWN_KEYS: &[&str] = &[
    "request",
    "object",
    "oldObject",
    "metadata",
    "spec",
    "annotations",
    "labels",
    "containers",
    "initContainers",
    "ephemeralContainers",
    "volumes",
    "env",
    "envFrom",
    "volumeMounts",
];

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_str<E: de::Error>(self, k: &str) -> Result<Key, E> {
                Ok(KNOWN_KEYS
                    .iter()
                    .find(|known| **known == k)
                    .map_or(Key::Other, |known| Key::Known(known)))
            }
        }
        de.deserialize_str(KeyVisitor)
    }
}

/// Reads `request.uid` of a body that failed [`check`], without decoding anything else, so
/// the denial can answer the right request.
pub fn request_uid(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Review {
        request: Request,
    }
    // Unknown fields are skipped with serde's `IgnoredAny`, which stores nothing.
    #[derive(serde::Deserialize)]
    struct Request {
        uid: String,
    }
    serde_json::from_slice::<Review>(body)
        .ok()
        .map(|r| r.request.uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn review(object: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "operation": "CREATE", "object": object, "oldObject": null}
        }))
        .expect("json")
    }

    fn too_big(body: &[u8]) -> TooBig {
        match check(body) {
            Err(Checked::TooBig(t)) => t,
            other => panic!("expected a limit, got {other:?}"),
        }
    }

    #[test]
    fn an_ordinary_pod_passes() {
        let pod = json!({"metadata": {"annotations": {"vaultlet.io/role": "web"}},
            "spec": {"containers": [{"name": "web", "env": [{"name": "A", "value": "1"}]}]}});
        check(&review(pod)).expect("within limits");
    }

    #[test]
    fn the_container_lists_share_one_limit() {
        let half = vec![json!({}); MAX_CONTAINERS / 2];
        let pod = json!({"spec": {"containers": half, "initContainers": half}});
        check(&review(pod)).expect("exactly at the limit");
        let pod = json!({"spec": {"containers": half, "initContainers": half,
            "ephemeralContainers": [{}]}});
        assert_eq!(
            too_big(&review(pod)),
            TooBig::Entries {
                field: "spec.containers + initContainers + ephemeralContainers".into(),
                limit: MAX_CONTAINERS
            }
        );
    }

    #[test]
    fn each_list_is_named_with_its_limit() {
        let env = vec![json!({"name": "A"}); MAX_ENV + 1];
        let pod = json!({"spec": {"initContainers": [{"name": "i", "env": env}]}});
        assert_eq!(
            too_big(&review(pod)).to_string(),
            format!(
                "spec.initContainers[].env has more than {MAX_ENV} entries; vaultlet reviews \
                 Pods up to that size (split the workload, or mount a ConfigMap instead of \
                 listing entries)"
            )
        );
        let annotations: serde_json::Map<String, Value> = (0..=MAX_METADATA_ENTRIES)
            .map(|i| (format!("a{i}"), json!("")))
            .collect();
        let pod = json!({"metadata": {"annotations": annotations}});
        assert_eq!(
            too_big(&review(pod)),
            TooBig::Entries {
                field: "metadata.annotations".into(),
                limit: MAX_METADATA_ENTRIES
            }
        );
        let volumes = vec![json!({}); MAX_VOLUMES + 1];
        assert!(matches!(
            too_big(&review(json!({"spec": {"volumes": volumes}}))),
            TooBig::Entries {
                limit: MAX_VOLUMES,
                ..
            }
        ));
        // The same key elsewhere is an ordinary list.
        let env = vec![json!(0); MAX_ENV + 1];
        check(&review(json!({"spec": {"env": env}}))).expect("not a container's env");
    }

    #[test]
    fn any_other_list_and_the_whole_body_are_bounded() {
        let long = vec![json!(0); MAX_ENTRIES + 1];
        let pod = json!({"metadata": {"managedFields": [{"fieldsV1": long}]}});
        assert!(matches!(
            too_big(&review(pod)),
            TooBig::Entries {
                limit: MAX_ENTRIES,
                ..
            }
        ));
        let lists: Vec<Value> = (0..MAX_VALUES / MAX_ENTRIES + 1)
            .map(|_| json!(vec![0; MAX_ENTRIES - 1]))
            .collect();
        assert_eq!(
            too_big(&review(json!({"metadata": {"managedFields": lists}}))),
            TooBig::Values
        );
    }

    #[test]
    fn not_json_is_a_json_error_and_the_uid_is_read_alone() {
        assert!(matches!(check(b"{\"request\": ["), Err(Checked::Json(_))));
        assert!(matches!(check(b"{} {}"), Err(Checked::Json(_))));
        let body = review(json!({"spec": {"containers": vec![json!({}); 1000]}}));
        assert_eq!(request_uid(&body).as_deref(), Some("u-1"));
        assert_eq!(request_uid(b"[]"), None);
    }
}
