//! Prometheus metrics of the webhook (text exposition format).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::review::Verdict;

type Labels = Vec<(&'static str, &'static str)>;

/// Latency buckets in seconds, starting well below a millisecond.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// All metrics, cheap to update from any task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reviews: Family<Labels, Counter>,
    injections: Family<Labels, Counter>,
    denials: Family<Labels, Counter>,
    bad_requests: Family<Labels, Counter>,
    latency: Histogram,
    cert_reloads: Family<Labels, Counter>,
    cert_loaded: Gauge,
    shed: Family<Labels, Counter>,
    connections: Gauge,
    evictions: Counter,
    accept_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `vaultlet_injector` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vaultlet_injector");
        let reviews = Family::<Labels, Counter>::default();
        let injections = Family::<Labels, Counter>::default();
        let denials = Family::<Labels, Counter>::default();
        let bad_requests = Family::<Labels, Counter>::default();
        let latency = Histogram::new(LATENCY_BUCKETS.iter().copied());
        let cert_reloads = Family::<Labels, Counter>::default();
        let cert_loaded = Gauge::default();
        let shed = Family::<Labels, Counter>::default();
        let connections = Gauge::default();
        let evictions = Counter::default();
        let accept_errors = Counter::default();
        registry.register(
            "reviews",
            "AdmissionReviews answered, by outcome (injected, skipped, ignored, denied)",
            reviews.clone(),
        );
        registry.register("injections", "Pods injected, by mode", injections.clone());
        registry.register("denials", "Pods denied, by reason", denials.clone());
        registry.register(
            "bad_requests",
            "Request bodies rejected before review, by HTTP status",
            bad_requests.clone(),
        );
        registry.register(
            "review_duration_seconds",
            "Time to decode, mutate and encode one AdmissionReview",
            latency.clone(),
        );
        registry.register(
            "certificate_reloads",
            "Serving certificate reload attempts, by result",
            cert_reloads.clone(),
        );
        registry.register(
            "certificate_loaded",
            "1 when a serving certificate is loaded",
            cert_loaded.clone(),
        );
        registry.register(
            "shed",
            "Requests answered 503 because the injector was at a limit, by limit (bodies, reviews)",
            shed.clone(),
        );
        registry.register(
            "connections",
            "Open connections to the webhook listener",
            connections.clone(),
        );
        registry.register(
            "connection_evictions",
            "Idle webhook connections closed to make room under --max-connections",
            evictions.clone(),
        );
        registry.register(
            "accept_errors",
            "Failed accepts on the webhook or admin listener (e.g. out of file descriptors)",
            accept_errors.clone(),
        );
        Self {
            registry,
            reviews,
            injections,
            denials,
            bad_requests,
            latency,
            cert_reloads,
            cert_loaded,
            shed,
            connections,
            evictions,
            accept_errors,
        }
    }

    /// Records a request shed at `limit` (`bodies` or `reviews`).
    pub fn shed(&self, limit: &'static str) {
        self.shed.get_or_create(&vec![("limit", limit)]).inc();
    }

    /// The number of open webhook connections changed by `delta`.
    pub fn connections(&self, delta: i64) {
        self.connections.inc_by(delta);
    }

    /// Records an idle connection closed to make room for a new one.
    pub fn evicted(&self) {
        self.evictions.inc();
    }

    /// Records a failed accept.
    pub fn accept_error(&self) {
        self.accept_errors.inc();
    }

    /// Records one answered review.
    pub fn review(&self, verdict: &Verdict, seconds: f64) {
        self.reviews
            .get_or_create(&vec![("outcome", verdict.outcome())])
            .inc();
        match verdict {
            Verdict::Injected(mode) => {
                self.injections
                    .get_or_create(&vec![("mode", mode.as_str())])
                    .inc();
            }
            Verdict::Denied { reason, .. } => {
                self.denials.get_or_create(&vec![("reason", *reason)]).inc();
            }
            Verdict::Skipped(_) | Verdict::Ignored => {}
        }
        self.latency.observe(seconds);
    }

    /// Records a body rejected with an HTTP error status.
    pub fn bad_request(&self, status: u16) {
        let label = match status {
            413 => "413",
            408 => "408",
            _ => "400",
        };
        self.bad_requests
            .get_or_create(&vec![("status", label)])
            .inc();
    }

    /// Records a certificate (re)load attempt.
    pub fn cert_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.cert_reloads
            .get_or_create(&vec![("result", result)])
            .inc();
        if ok {
            self.cert_loaded.set(1);
        }
    }

    /// Renders the registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutate::InjectMode;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::new();
        m.review(&Verdict::Injected(InjectMode::NativeSidecar), 0.000_3);
        m.review(
            &Verdict::Denied {
                reason: "vault_addr",
                message: String::new(),
            },
            0.000_2,
        );
        m.bad_request(413);
        m.shed("bodies");
        m.connections(2);
        m.connections(-1);
        m.evicted();
        m.accept_error();
        let text = m.render();
        for needle in [
            "vaultlet_injector_reviews_total{outcome=\"injected\"} 1",
            "vaultlet_injector_injections_total{mode=\"native-sidecar\"} 1",
            "vaultlet_injector_denials_total{reason=\"vault_addr\"} 1",
            "vaultlet_injector_bad_requests_total{status=\"413\"} 1",
            "vaultlet_injector_review_duration_seconds_bucket{le=\"0.0005\"} 2",
            "vaultlet_injector_shed_total{limit=\"bodies\"} 1",
            "vaultlet_injector_connections 1",
            "vaultlet_injector_connection_evictions_total 1",
            "vaultlet_injector_accept_errors_total 1",
            "# EOF",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
    }
}
