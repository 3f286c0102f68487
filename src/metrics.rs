//! Prometheus metrics, served on the admin listener at `/metrics`.
//! Names are DESIGN.md's (existing dashboards and alerts rely on them) and
//! live here as constants. Labels never carry tokens.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

pub const TICKET_CREATED_TOTAL: &str = "app_redeploy_ticket_created_total";
pub const TOKEN_CREATED_TOTAL: &str = "app_redeploy_token_created_total";
pub const TOKEN_EXPIRED_TOTAL: &str = "app_redeploy_token_expired_total";
pub const OPERATIONS_TOTAL: &str = "app_redeploy_operations_total";
pub const TOKEN_ACTIVE_COUNT: &str = "app_redeploy_token_active_count";
pub const DURATION_SECONDS: &str = "app_redeploy_duration_seconds";
pub const SUCCESS_RATE: &str = "app_redeploy_success_rate";
pub const ROLLOUT_DURATION_SECONDS: &str = "app_redeploy_rollout_duration_seconds";
pub const ADMISSION_REQUESTS_TOTAL: &str = "rollgate_admission_requests_total";
pub const ADMISSION_DURATION_SECONDS: &str = "rollgate_admission_duration_seconds";
pub const STORE_UP: &str = "rollgate_store_up";
pub const NOTIFICATIONS_TOTAL: &str = "rollgate_notifications_total";
pub const AUDIT_LOG_DROPPED_TOTAL: &str = "rollgate_audit_log_dropped_total";

/// Every metric rollgate exports, registered in one registry.
pub struct Metrics {
    registry: Registry,
    pub ticket_created_total: IntCounterVec,
    pub token_created_total: IntCounterVec,
    pub token_expired_total: IntCounterVec,
    pub operations_total: IntCounterVec,
    pub token_active_count: IntGauge,
    pub duration_seconds: HistogramVec,
    /// Completed share of the operations that ended within `time_window`.
    pub success_rate: GaugeVec,
    pub rollout_duration_seconds: HistogramVec,
    pub admission_requests_total: IntCounterVec,
    pub admission_duration_seconds: Histogram,
    pub store_up: IntGauge,
    pub notifications_total: IntCounterVec,
    /// Audit records not written to `audit.logFile` (queue full or write failed).
    pub audit_log_dropped_total: IntCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let ticket_created_total = counter(
            TICKET_CREATED_TOTAL,
            "Redeploy tickets filed.",
            &["application", "username", "env"],
        )?;
        let token_created_total = counter(
            TOKEN_CREATED_TOTAL,
            "Grants (tokens) issued on approval, by result.",
            &["application", "username", "result"],
        )?;
        let token_expired_total = counter(
            TOKEN_EXPIRED_TOTAL,
            "Grants that expired unrevoked.",
            &["application", "username"],
        )?;
        let operations_total = counter(
            OPERATIONS_TOTAL,
            "Redeploy operations by outcome.",
            &["application", "namespace", "username", "result"],
        )?;
        let notifications_total = counter(
            NOTIFICATIONS_TOTAL,
            "Outgoing notifications by receiver and result (sent, failed, dropped).",
            &["receiver", "result"],
        )?;
        let admission_requests_total = counter(
            ADMISSION_REQUESTS_TOTAL,
            "AdmissionReviews answered, by kind, operation and decision.",
            &["kind", "operation", "decision"],
        )?;
        let token_active_count = IntGauge::new(TOKEN_ACTIVE_COUNT, "Grants currently valid.")?;
        registry.register(Box::new(token_active_count.clone()))?;
        let store_up = IntGauge::new(
            STORE_UP,
            "1 when the store answered its last check, else 0.",
        )?;
        registry.register(Box::new(store_up.clone()))?;
        let duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                DURATION_SECONDS,
                "Redeploy operation duration, admission to outcome.",
            )
            .buckets(vec![
                5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
            ]),
            &["application", "namespace", "result"],
        )?;
        registry.register(Box::new(duration_seconds.clone()))?;
        let rollout_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                ROLLOUT_DURATION_SECONDS,
                "Completed rollouts: from the change showing in the workload to the rollout's end.",
            )
            .buckets(vec![
                5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
            ]),
            &["application", "namespace", "strategy"],
        )?;
        registry.register(Box::new(rollout_duration_seconds.clone()))?;
        let success_rate = GaugeVec::new(
            Opts::new(
                SUCCESS_RATE,
                "Share of the redeploy operations ended within time_window (1h, 24h) that completed.",
            ),
            &["application", "time_window"],
        )?;
        registry.register(Box::new(success_rate.clone()))?;
        let admission_duration_seconds = Histogram::with_opts(
            HistogramOpts::new(
                ADMISSION_DURATION_SECONDS,
                "Time to answer an AdmissionReview.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )?;
        registry.register(Box::new(admission_duration_seconds.clone()))?;
        let audit_log_dropped_total = IntCounter::new(
            AUDIT_LOG_DROPPED_TOTAL,
            "Audit records not written to the audit log file or stdout (queue full or write failed).",
        )?;
        registry.register(Box::new(audit_log_dropped_total.clone()))?;
        Ok(Self {
            registry,
            ticket_created_total,
            token_created_total,
            token_expired_total,
            operations_total,
            token_active_count,
            duration_seconds,
            success_rate,
            rollout_duration_seconds,
            admission_requests_total,
            admission_duration_seconds,
            store_up,
            notifications_total,
            audit_log_dropped_total,
        })
    }

    pub fn ticket_created(&self, application: &str, username: &str, env: &str) {
        self.ticket_created_total
            .with_label_values(&[application, username, env])
            .inc();
    }

    pub fn token_created(&self, application: &str, username: &str, result: &str) {
        self.token_created_total
            .with_label_values(&[application, username, result])
            .inc();
    }

    /// Counts one notification to `receiver`: `sent`, `failed` or `dropped`.
    pub fn notification(&self, receiver: &str, result: &str) {
        self.notifications_total
            .with_label_values(&[receiver, result])
            .inc();
    }

    pub fn active_tokens_changed(&self, delta: i64) {
        self.token_active_count.add(delta);
    }

    pub fn admission(&self, kind: &str, operation: &str, decision: &str, seconds: f64) {
        self.admission_requests_total
            .with_label_values(&[kind, operation, decision])
            .inc();
        self.admission_duration_seconds.observe(seconds);
    }

    /// The text exposition format for `/metrics`.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on a metric with invalid names, which
        // `new` would already have refused.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
