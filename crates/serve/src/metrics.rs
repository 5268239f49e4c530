//! Prometheus metrics: requests by route and status, and the batcher's batch sizes, queue and
//! inference times.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route {
    pub route: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RouteStatus, Counter>,
    pub request_seconds: Family<Route, Histogram>,
    pub batch_requests: Histogram,
    pub batch_tokens: Histogram,
    pub queue_seconds: Histogram,
    pub inference_seconds: Histogram,
    pub tokenization_seconds: Histogram,
    pub queue_size: Gauge,
}

/// 1 ms .. ~65 s.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("deberta");
        let requests = Family::<RouteStatus, Counter>::default();
        let request_seconds = Family::<Route, Histogram>::new_with_constructor(seconds as fn() -> Histogram);
        let batch_requests = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        let batch_tokens = Histogram::new(exponential_buckets(16.0, 2.0, 14));
        let (queue_seconds, inference_seconds, tokenization_seconds) = (seconds(), seconds(), seconds());
        let queue_size = Gauge::default();
        registry.register("requests", "HTTP requests by route and status", requests.clone());
        registry.register("request_duration_seconds", "HTTP request time by route", request_seconds.clone());
        registry.register("batch_requests", "Requests per model batch", batch_requests.clone());
        registry.register(
            "batch_tokens",
            "Padded tokens (longest row x rows) per model batch",
            batch_tokens.clone(),
        );
        registry.register(
            "queue_duration_seconds",
            "Time a request waits for the model",
            queue_seconds.clone(),
        );
        registry.register("inference_duration_seconds", "Model time per batch", inference_seconds.clone());
        registry.register(
            "tokenization_duration_seconds",
            "Tokenization time per request",
            tokenization_seconds.clone(),
        );
        registry.register("queue_size", "Requests waiting for the model", queue_size.clone());
        Metrics {
            registry,
            requests,
            request_seconds,
            batch_requests,
            batch_tokens,
            queue_seconds,
            inference_seconds,
            tokenization_seconds,
            queue_size,
        }
    }

    /// The Prometheus text exposition (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
