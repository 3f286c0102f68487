#![allow(clippy::unwrap_used)]
//! Audit query benchmark: prints figures, asserts nothing but sanity.
//!
//! `cargo bench --bench audit_query` appends 100,000 records through the
//! real store (SQLite in a temporary directory, then a throw-away
//! `redis-server` on a unix socket) and times the filtered queries behind
//! `GET /v1/audit` (`AuditLog::query`, what the handler calls): one page of
//! namespace + application + event (limit 100), the same since a day ago,
//! and an unfiltered page. For each it prints p50/p99 of one call, the items
//! the call returned and whether it stopped early (a `next` cursor with
//! fewer than `limit` items: the Redis store filters in memory over at most
//! `MAX_SCAN` records per call), and the time to collect the first 100
//! items by following `next` as a client would.
//!
//! Records are spread over 30 days, 30% in `production`, 50 applications,
//! 70% ADMISSION. Durability is switched off while seeding (SQLite
//! `synchronous=OFF`, Redis without AOF) so that seeding takes seconds: the
//! queries read the same data either way. The seeding prints the latency of
//! one append without the fsync (the webhook's append adds it).
//!
//! Under `cargo test` (no `--bench` flag) it runs on 2,000 records.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use rollgate::audit::{AuditDecision, AuditEvent, AuditFilter, AuditLog, AuditRecord};
use rollgate::store::StoreConfig;

const APPLICATIONS: usize = 50;
const SPAN_DAYS: i64 = 30;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// A deterministic mix of records, oldest first.
fn mk_record(i: usize, n: usize, start: Timestamp) -> AuditRecord {
    // xorshift: the same trail on every run and store.
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    let span = SignedDuration::from_hours(24 * SPAN_DAYS);
    let at = start + span * (i as i32) / (n as i32);
    let event = match x % 10 {
        0..=6 => AuditEvent::Admission,
        7 => AuditEvent::TicketCreated,
        8 => AuditEvent::TicketApproved,
        _ => AuditEvent::GrantIssued,
    };
    let mut r = AuditRecord::new(event, at);
    r.namespace = Some(match (x >> 8) % 10 {
        0..=2 => "production".to_owned(),
        other => format!("team-{other}"),
    });
    let app = (x >> 16) as usize % APPLICATIONS;
    r.application_name = Some(if app == 0 {
        "checkout-api".to_owned()
    } else {
        format!("service-{app}")
    });
    r.username = Some(format!("user-{}", (x >> 24) % 40));
    if event == AuditEvent::Admission {
        r.decision = Some(if (x >> 32).is_multiple_of(4) {
            AuditDecision::Allowed
        } else {
            AuditDecision::Denied
        });
        r.request_uid = Some(format!("{x:x}"));
    }
    r.reason = Some("benchmark record with a reason of ordinary length".into());
    r
}

/// Appends the `n` records one by one, as the webhook does, and prints
/// how long that took and the latency of one append.
async fn seed(store: &str, log: &Arc<dyn AuditLog>, n: usize, start: Timestamp) {
    let wall = Instant::now();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        log.append(mk_record(i, n, start)).await.unwrap();
        samples.push(t.elapsed());
    }
    let took = wall.elapsed();
    samples.sort();
    println!(
        "{store:<7} seeded {n} records in {took:.1?}: append p50={:.1?} p99={:.1?}",
        percentile(&samples, 0.50),
        percentile(&samples, 0.99)
    );
}

async fn measure(
    store: &str,
    log: &Arc<dyn AuditLog>,
    name: &str,
    filter: &AuditFilter,
    iterations: usize,
) {
    let limit = filter.limit.unwrap_or(100);
    let mut samples = Vec::with_capacity(iterations);
    let mut page = log.query(filter).await.unwrap();
    for _ in 0..iterations {
        let t = Instant::now();
        page = log.query(filter).await.unwrap();
        samples.push(t.elapsed());
    }
    samples.sort();
    let early = page.items.len() < limit && page.next.is_some();

    // A client following `next` until it has `limit` items or none are left.
    let t = Instant::now();
    let mut items = 0;
    let mut calls = 0;
    let mut next = None;
    loop {
        let page = log
            .query(&AuditFilter {
                after: next,
                ..filter.clone()
            })
            .await
            .unwrap();
        calls += 1;
        items += page.items.len();
        next = page.next;
        if items >= limit || next.is_none() {
            break;
        }
    }
    let to_full = t.elapsed();
    println!(
        "{store:<7} {name:<34} p50={:>9.2?} p99={:>9.2?}  items={:<4}{}  first {limit}: {calls} call(s), {:.2?} ({} items)",
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        page.items.len(),
        if early { " STOPPED EARLY" } else { "" },
        to_full,
        items.min(limit),
    );
}

async fn run_queries(
    store: &str,
    log: &Arc<dyn AuditLog>,
    n: usize,
    iterations: usize,
    start: Timestamp,
) {
    let newest = start + SignedDuration::from_hours(24 * SPAN_DAYS);
    let selective = AuditFilter {
        namespace: Some("production".into()),
        application: Some("checkout-api".into()),
        event: Some(AuditEvent::Admission),
        limit: Some(100),
        ..AuditFilter::default()
    };
    let since = AuditFilter {
        since: Some(newest - SignedDuration::from_hours(24)),
        ..selective.clone()
    };
    let unfiltered = AuditFilter {
        limit: Some(100),
        ..AuditFilter::default()
    };
    let matching = (0..n)
        .map(|i| mk_record(i, n, start))
        .filter(|r| {
            r.namespace.as_deref() == Some("production")
                && r.application_name.as_deref() == Some("checkout-api")
                && r.event == Some(AuditEvent::Admission)
        })
        .count();
    println!("{store:<7} ({matching} of {n} records match ns+app+event)");
    measure(
        store,
        log,
        "ns+app+event, limit 100",
        &selective,
        iterations,
    )
    .await;
    measure(
        store,
        log,
        "ns+app+event, since 1 day, limit 100",
        &since,
        iterations,
    )
    .await;
    measure(store, log, "unfiltered, limit 100", &unfiltered, iterations).await;
    walk_whole_chain(store, log).await;
}

/// Times what reads the whole chain: `GET /v1/audit/verify` and the export.
async fn walk_whole_chain(store: &str, log: &Arc<dyn AuditLog>) {
    use futures::StreamExt as _;
    let pem = rollgate::grants::keys::generate_pem().unwrap();
    let key = rollgate::grants::SigningKey::from_pem(pem.as_bytes()).unwrap();
    let keys = rollgate::grants::KeySet::new(&key);
    let trail = rollgate::audit::AuditTrail::new(log.clone(), key, keys, "rollgate".into());
    let t = Instant::now();
    let report = trail.verify(None).await.unwrap();
    let verify = t.elapsed();
    assert!(report.ok, "{report:?}");
    let t = Instant::now();
    let mut bytes = 0;
    let mut export = std::pin::pin!(trail.export());
    while let Some(chunk) = export.next().await {
        bytes += chunk.unwrap().len();
    }
    println!(
        "{store:<7} whole chain: verify {verify:.2?} ({} records), export {:.2?} ({:.1} MB)",
        report.records,
        t.elapsed(),
        bytes as f64 / 1e6
    );
}

/// A `redis-server` of its own on a unix socket, without persistence.
struct Redis {
    dir: tempfile::TempDir,
    child: Child,
}

impl Redis {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { dir, child }
    }

    fn url(&self) -> String {
        format!(
            "redis+unix://{}",
            self.dir.path().join("redis.sock").display()
        )
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn open(config: StoreConfig) -> Arc<dyn AuditLog> {
    rollgate::store::open(&config).await.unwrap().audit
}

async fn sqlite(dir: &Path, n: usize, iterations: usize, start: Timestamp) {
    let path = dir.join("rollgate.db");
    let raw = rollgate::store::sqlite::SqliteStore::open(&path)
        .await
        .unwrap();
    raw.execute_raw("PRAGMA synchronous = OFF").await.unwrap();
    let log: Arc<dyn AuditLog> = Arc::new(raw);
    seed("sqlite", &log, n, start).await;
    // The store as rollgate opens it (synchronous=FULL), on the same file.
    let log = open(StoreConfig::Sqlite(path)).await;
    run_queries("sqlite", &log, n, iterations, start).await;
}

async fn redis(n: usize, iterations: usize, start: Timestamp) {
    let server = Redis::start();
    let log = open(StoreConfig::Redis(server.url())).await;
    seed("redis", &log, n, start).await;
    run_queries("redis", &log, n, iterations, start).await;
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (n, iterations) = if full { (100_000, 200) } else { (2_000, 5) };
    println!(
        "rollgate audit query benchmark ({} run): {n} records over {SPAN_DAYS} days",
        if full { "full" } else { "smoke" }
    );
    let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(sqlite(dir.path(), n, iterations, start));
    rt.block_on(redis(n, iterations, start));
}
