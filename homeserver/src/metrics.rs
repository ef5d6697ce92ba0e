//! Prometheus metrics. One registry per server, every metric prefixed
//! `myelin_`. The HTTP middleware labels requests by the route template
//! (never the raw path, which would explode cardinality).

use std::sync::LazyLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use crate::state::AppState;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub sync_waiting: IntGauge,
    pub sync_woken: IntCounter,
    pub events_persisted: IntCounter,
    pub event_persist_seconds: HistogramVec,
    pub db_pool_size: IntGauge,
    pub db_pool_idle: IntGauge,
    pub sync_compute_seconds: HistogramVec,
    pub federation_transactions: IntCounterVec,
    pub federation_transaction_seconds: Histogram,
    pub federation_pdus_sent: IntCounter,
    pub federation_edus_sent: IntCounter,
    pub federation_destinations_backing_off: IntGauge,
}

/// Database errors seen by request handlers. Process-wide because errors
/// are counted where a database error becomes an API error, which has no
/// server state at hand; every registry of the process exports it.
pub static DATABASE_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "database_errors_total",
        "Database errors that failed a request",
    )
    .unwrap_or_else(|e| unreachable!("static metric options are valid: {e}"))
});

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("myelin".to_owned()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["endpoint", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route and method",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["endpoint", "method"],
        )?;
        let sync_waiting = IntGauge::new("sync_waiting", "Long-polling /sync requests waiting")?;
        let sync_woken = IntCounter::new(
            "sync_woken_total",
            "Long-polling /sync requests woken by new data before their timeout",
        )?;
        let events_persisted = IntCounter::new("events_persisted_total", "Room events persisted")?;
        let event_persist_seconds = HistogramVec::new(
            HistogramOpts::new(
                "event_persist_duration_seconds",
                "Time to authorise, sign and durably store an event",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["origin"],
        )?;
        let db_pool_size = IntGauge::new("db_pool_connections", "Open database connections")?;
        let db_pool_idle = IntGauge::new("db_pool_idle_connections", "Idle database connections")?;
        let sync_compute_seconds = HistogramVec::new(
            HistogramOpts::new(
                "sync_compute_duration_seconds",
                "Time to compute a /sync response, without the long-poll wait",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["kind"],
        )?;
        let federation_transactions = IntCounterVec::new(
            Opts::new(
                "federation_transactions_total",
                "Outbound federation transactions: sent, refused by the destination \
                 (dropped) or failed (retried after a back-off)",
            ),
            &["result"],
        )?;
        // Exported from the start, so that rates and alerts see zeroes.
        for result in ["sent", "refused", "failed"] {
            federation_transactions.with_label_values(&[result]);
        }
        let federation_transaction_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "federation_transaction_duration_seconds",
                "Time to send an outbound federation transaction",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let federation_pdus_sent =
            IntCounter::new("federation_pdus_sent_total", "Events sent to other servers")?;
        let federation_edus_sent =
            IntCounter::new("federation_edus_sent_total", "EDUs sent to other servers")?;
        let federation_destinations_backing_off = IntGauge::new(
            "federation_destinations_backing_off",
            "Servers our transactions cannot reach now, waiting to retry",
        )?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(sync_waiting.clone()))?;
        registry.register(Box::new(sync_woken.clone()))?;
        registry.register(Box::new(events_persisted.clone()))?;
        registry.register(Box::new(event_persist_seconds.clone()))?;
        registry.register(Box::new(db_pool_size.clone()))?;
        registry.register(Box::new(db_pool_idle.clone()))?;
        registry.register(Box::new(sync_compute_seconds.clone()))?;
        registry.register(Box::new(DATABASE_ERRORS.clone()))?;
        registry.register(Box::new(federation_transactions.clone()))?;
        registry.register(Box::new(federation_transaction_seconds.clone()))?;
        registry.register(Box::new(federation_pdus_sent.clone()))?;
        registry.register(Box::new(federation_edus_sent.clone()))?;
        registry.register(Box::new(federation_destinations_backing_off.clone()))?;
        // CPU seconds, resident memory, open files of this process: what
        // operators size machines by.
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            registry,
            http_requests,
            http_duration,
            sync_waiting,
            sync_woken,
            events_persisted,
            event_persist_seconds,
            db_pool_size,
            db_pool_idle,
            sync_compute_seconds,
            federation_transactions,
            federation_transaction_seconds,
            federation_pdus_sent,
            federation_edus_sent,
            federation_destinations_backing_off,
        })
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

/// Middleware: counts and times every request.
pub async fn track_http(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    let metrics = state.metrics();
    metrics
        .http_duration
        .with_label_values(&[endpoint.as_str(), method.as_str()])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .http_requests
        .with_label_values(&[
            endpoint.as_str(),
            method.as_str(),
            response.status().as_str(),
        ])
        .inc();
    response
}

/// `GET /metrics`.
pub async fn scrape(State(state): State<AppState>) -> Response {
    state.refresh_pool_metrics();
    match state.metrics().render() {
        Ok(text) => (
            [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            text,
        )
            .into_response(),
        Err(e) => crate::api::error::ApiError::internal("cannot render metrics", e).into_response(),
    }
}
