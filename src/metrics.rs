//! Prometheus metrics: the names we export, recorded through the `metrics` facade so the
//! pipelines only say what happened, and rendered by the API's `/metrics`.
//!
//! Counters and latencies are recorded where things happen; gauges that describe stored
//! state (queue depth and age, tracking states, bundle refresh failures) are read from the
//! store at scrape time, so every node of a cluster reports the same truth.

use std::sync::OnceLock;
use std::time::Instant;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Messages received: `direction` in|out, `outcome` accepted|rejected, `reason` a short
/// stable word for rejections.
pub const MESSAGES: &str = "hisp_messages_total";
pub const SMTP_SESSIONS_ACTIVE: &str = "hisp_smtp_sessions_active";
pub const SMTP_SESSIONS: &str = "hisp_smtp_sessions_total";
/// Inbound RCPTs refused: `status` 5.7.1 (not a local domain: relaying) or 5.1.1 (no such
/// user).
pub const RCPT_REFUSED: &str = "hisp_smtp_rcpt_refused_total";
/// Certificate discovery: `result` hit|miss.
pub const DISCOVERY_LOOKUPS: &str = "hisp_discovery_lookups_total";
pub const DISCOVERY_SECONDS: &str = "hisp_discovery_seconds";
/// Private-key and bulk crypto per message: `op` seal|open.
pub const CRYPTO_SECONDS: &str = "hisp_crypto_seconds";
pub const QUEUE_DEPTH: &str = "hisp_queue_depth";
pub const QUEUE_OLDEST_SECONDS: &str = "hisp_queue_oldest_age_seconds";
/// Outbound tracking records by `state` (queued, sent, processed, dispatched, failed,
/// timed-out).
pub const TRACKING: &str = "hisp_tracking_records";
pub const HTTP_REQUESTS: &str = "hisp_http_requests_total";
/// Trust bundles, by `bundle` name, read from the store: anchors in force, failed refreshes
/// (all time and in a row), and the time of the last good one.
pub const BUNDLE_ANCHORS: &str = "hisp_bundle_anchors";
pub const BUNDLE_FAILURES: &str = "hisp_bundle_refresh_failures";
pub const BUNDLE_CONSECUTIVE_FAILURES: &str = "hisp_bundle_refresh_consecutive_failures";
pub const BUNDLE_LAST_SUCCESS: &str = "hisp_bundle_last_success_timestamp_seconds";

/// Latency buckets in seconds: sub-millisecond cache hits up to slow network lookups.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide recorder. Installed once; later calls (a second gateway in the same
/// process, as `hisp demo` runs) share it.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("the bucket list is not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness); ours still renders
        // whatever it was given.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!(
        MESSAGES,
        "Messages received, by direction, outcome and reason"
    );
    metrics::describe_gauge!(SMTP_SESSIONS_ACTIVE, "SMTP sessions open now");
    metrics::describe_counter!(SMTP_SESSIONS, "SMTP sessions accepted, by listener role");
    metrics::describe_counter!(
        RCPT_REFUSED,
        "Inbound recipients refused (relaying, unknown user)"
    );
    metrics::describe_counter!(
        DISCOVERY_LOOKUPS,
        "Certificate discovery lookups, cache hit or miss"
    );
    metrics::describe_histogram!(
        DISCOVERY_SECONDS,
        "Certificate discovery latency (cache misses)"
    );
    metrics::describe_histogram!(CRYPTO_SECONDS, "S/MIME seal and open time per message");
    metrics::describe_gauge!(QUEUE_DEPTH, "Recipients waiting in the delivery queue");
    metrics::describe_gauge!(
        QUEUE_OLDEST_SECONDS,
        "Age of the oldest waiting queue entry"
    );
    metrics::describe_gauge!(TRACKING, "Outbound tracking records by state");
    metrics::describe_counter!(HTTP_REQUESTS, "HTTP API requests by status class");
    metrics::describe_gauge!(BUNDLE_ANCHORS, "Anchors in force from each trust bundle");
    metrics::describe_gauge!(
        BUNDLE_FAILURES,
        "Failed refreshes of each trust bundle, all time"
    );
    metrics::describe_gauge!(
        BUNDLE_CONSECUTIVE_FAILURES,
        "Failed refreshes of each trust bundle since its last good one"
    );
    metrics::describe_gauge!(
        BUNDLE_LAST_SUCCESS,
        "Unix time of each bundle's last good refresh"
    );
}

pub fn message(direction: &'static str, outcome: &'static str, reason: String) {
    metrics::counter!(MESSAGES, "direction" => direction, "outcome" => outcome, "reason" => reason)
        .increment(1);
}

/// Times a piece of work into a histogram when dropped.
pub struct Timer {
    name: &'static str,
    label: (&'static str, &'static str),
    start: Instant,
}

impl Timer {
    pub fn start(name: &'static str, label: (&'static str, &'static str)) -> Timer {
        Timer {
            name,
            label,
            start: Instant::now(),
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        metrics::histogram!(self.name, self.label.0 => self.label.1)
            .record(self.start.elapsed().as_secs_f64());
    }
}

/// Counts an open SMTP session for as long as it lives.
pub struct SessionGauge;

impl SessionGauge {
    pub fn open(role: &'static str) -> SessionGauge {
        metrics::counter!(SMTP_SESSIONS, "role" => role).increment(1);
        metrics::gauge!(SMTP_SESSIONS_ACTIVE).increment(1.0);
        SessionGauge
    }
}

impl Drop for SessionGauge {
    fn drop(&mut self) {
        metrics::gauge!(SMTP_SESSIONS_ACTIVE).decrement(1.0);
    }
}
