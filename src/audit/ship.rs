//! Log shipping: every record this process appends is also written as one
//! JSON line to stdout or a file (`audit.logFile`, `--audit-log`), for log
//! shippers. [`ShippedLog`] wraps the store's [`AuditLog`] and hands each
//! appended record to a writer task through a bounded queue, so shipping
//! never holds up the webhook: when the queue is full the line is dropped
//! and counted in `rollgate_audit_log_dropped_total`. The trail itself stays
//! in the store; the lines are a copy, each the record exactly as exported.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use prometheus::IntCounter;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use super::{
    AdmissionLimits, AuditFilter, AuditLog, AuditPage, AuditRecord, LimitHit, VerifyReport,
};
use crate::error::Error;

/// Lines waiting for the writer; beyond this, new lines are dropped.
pub const QUEUE_LINES: usize = 4096;

/// Where shipped lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    /// Appended to, created if missing.
    File(PathBuf),
}

impl LogTarget {
    /// `-` is stdout; anything else a file path.
    pub fn parse(value: &str) -> Self {
        if value == "-" {
            Self::Stdout
        } else {
            Self::File(PathBuf::from(value))
        }
    }
}

impl std::fmt::Display for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stdout => f.write_str("stdout"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// An [`AuditLog`] that ships every record it appends.
pub struct ShippedLog {
    inner: Arc<dyn AuditLog>,
    lines: mpsc::Sender<String>,
    dropped: IntCounter,
}

impl ShippedLog {
    /// Opens `target` (so a file that cannot be written fails at start) and
    /// starts its writer task; returns the wrapped log and the task.
    pub async fn start(
        inner: Arc<dyn AuditLog>,
        target: &LogTarget,
        dropped: IntCounter,
    ) -> std::io::Result<(Self, tokio::task::JoinHandle<()>)> {
        let out: Box<dyn AsyncWrite + Unpin + Send> = match target {
            LogTarget::Stdout => Box::new(tokio::io::stdout()),
            LogTarget::File(path) => Box::new(
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await?,
            ),
        };
        Ok(Self::with_writer(
            inner,
            out,
            target.clone(),
            QUEUE_LINES,
            dropped,
        ))
    }

    /// Ships to `out` through a queue of `capacity` lines.
    fn with_writer(
        inner: Arc<dyn AuditLog>,
        out: Box<dyn AsyncWrite + Unpin + Send>,
        target: LogTarget,
        capacity: usize,
        dropped: IntCounter,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity);
        let task = tokio::spawn(write_lines(rx, out, target, dropped.clone()));
        let log = Self {
            inner,
            lines: tx,
            dropped,
        };
        (log, task)
    }

    fn ship(&self, record: &AuditRecord) {
        let Ok(line) = serde_json::to_string(record) else {
            self.dropped.inc();
            return;
        };
        if self.lines.try_send(line).is_err() {
            self.dropped.inc();
        }
    }
}

/// Writes queued lines, flushing whenever the queue runs empty. A failed
/// write drops the lines in hand (counted) and is logged once per failure streak.
async fn write_lines(
    mut rx: mpsc::Receiver<String>,
    out: Box<dyn AsyncWrite + Unpin + Send>,
    target: LogTarget,
    dropped: IntCounter,
) {
    let mut out = BufWriter::new(out);
    let mut failing = false;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut result = Ok(());
        for line in &batch {
            result = result.and(out.write_all(line.as_bytes()).await);
            result = result.and(out.write_all(b"\n").await);
        }
        result = result.and(out.flush().await);
        match result {
            Ok(()) => failing = false,
            Err(error) => {
                dropped.inc_by(batch.len() as u64);
                if !failing {
                    tracing::error!(%target, %error, "cannot write the audit log: records are dropped from it (the trail itself is stored)");
                }
                failing = true;
            }
        }
    }
}

#[async_trait]
impl AuditLog for ShippedLog {
    async fn append(&self, record: AuditRecord) -> Result<AuditRecord, Error> {
        let stored = self.inner.append(record).await?;
        self.ship(&stored);
        Ok(stored)
    }

    async fn append_admission(
        &self,
        record: AuditRecord,
        limits: &AdmissionLimits,
    ) -> Result<Result<AuditRecord, LimitHit>, Error> {
        let outcome = self.inner.append_admission(record, limits).await?;
        if let Ok(stored) = &outcome {
            self.ship(stored);
        }
        Ok(outcome)
    }

    async fn check_admission_limits(
        &self,
        namespace: &str,
        application: &str,
        limits: &AdmissionLimits,
    ) -> Result<Option<LimitHit>, Error> {
        self.inner
            .check_admission_limits(namespace, application, limits)
            .await
    }

    async fn query(&self, filter: &AuditFilter) -> Result<AuditPage, Error> {
        self.inner.query(filter).await
    }

    async fn get(&self, id: &str) -> Result<Option<AuditRecord>, Error> {
        self.inner.get(id).await
    }

    async fn read_from(&self, after: u64, limit: usize) -> Result<Vec<(u64, AuditRecord)>, Error> {
        self.inner.read_from(after, limit).await
    }

    async fn head(&self) -> Result<Option<AuditRecord>, Error> {
        self.inner.head().await
    }

    async fn append_after(
        &self,
        record: AuditRecord,
        head: Option<&AuditRecord>,
    ) -> Result<Option<AuditRecord>, Error> {
        let stored = self.inner.append_after(record, head).await?;
        if let Some(stored) = &stored {
            self.ship(stored);
        }
        Ok(stored)
    }

    async fn verify(&self) -> Result<VerifyReport, Error> {
        self.inner.verify().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::audit::AuditEvent;

    async fn mk_store() -> (tempfile::TempDir, Arc<dyn AuditLog>) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(&dir.path().join("db"))
            .await
            .unwrap();
        (dir, Arc::new(store))
    }

    fn mk_record() -> AuditRecord {
        AuditRecord::new(AuditEvent::TicketCreated, jiff::Timestamp::now())
    }

    #[tokio::test]
    async fn a_stalled_writer_never_blocks_appends_and_the_overflow_is_counted() {
        let (_dir, store) = mk_store().await;
        // A pipe nobody reads: the writer blocks on its first flush.
        let (stalled, _unread) = tokio::io::duplex(8);
        let dropped = IntCounter::new("dropped", "test").unwrap();
        let (log, _task) = ShippedLog::with_writer(
            store,
            Box::new(stalled),
            LogTarget::Stdout,
            4,
            dropped.clone(),
        );

        for _ in 0..20 {
            let appended = tokio::time::timeout(Duration::from_secs(5), log.append(mk_record()));
            appended
                .await
                .expect("appends never wait for the writer")
                .unwrap();
        }

        assert!(
            log.verify().await.unwrap().records == 20,
            "every record is stored"
        );
        // At most the queue and the batch in the writer's hands are kept.
        assert!(dropped.get() >= 20 - 4 - 4, "dropped {}", dropped.get());
    }

    #[tokio::test]
    async fn each_stored_record_is_written_as_one_line() {
        let (_dir, store) = mk_store().await;
        let (out, mut read) = tokio::io::duplex(1 << 16);
        let dropped = IntCounter::new("dropped", "test").unwrap();
        let (log, _task) =
            ShippedLog::with_writer(store, Box::new(out), LogTarget::Stdout, 16, dropped.clone());
        let first = log.append(mk_record()).await.unwrap();
        let head = log.head().await.unwrap();
        let second = log
            .append_after(mk_record(), head.as_ref())
            .await
            .unwrap()
            .unwrap();
        let stale = log.append_after(mk_record(), Some(&first)).await.unwrap();
        assert!(stale.is_none());

        let mut text = String::new();
        while text.lines().count() < 2 {
            let mut buf = [0u8; 4096];
            let n = tokio::io::AsyncReadExt::read(&mut read, &mut buf)
                .await
                .unwrap();
            text.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        let lines: Vec<AuditRecord> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines, [first, second], "a refused append ships nothing");
        assert_eq!(dropped.get(), 0);
    }
}
