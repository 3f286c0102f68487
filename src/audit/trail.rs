//! [`AuditTrail`]: the audit log with its signed checkpoints. It makes
//! checkpoints (periodically and on demand) and appends them to the chain,
//! verifies the chain with every checkpoint's signature and against the
//! checkpoints it holds, and streams the export. It remembers the latest
//! checkpoint this process wrote or saw, so cutting records off the tail is
//! detected even when the auditor supplies none.
//!
//! The I/O is the store's ([`AuditLog`]); signing and checking are
//! [`checkpoint`](super::checkpoint)'s and [`chain`](super::chain)'s.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;

use super::chain::{ChainWalker, GENESIS_HASH, VerifyReport};
use super::checkpoint::{
    self, Checkpoint, CheckpointClaims, CheckpointRejection, CheckpointSource, CheckpointVerifier,
};
use super::{AuditEvent, AuditLog, AuditRecord, WALK_BATCH, walk};
use crate::grants::{KeySet, SigningKey};

/// Attempts at appending a checkpoint while other records keep coming.
const CHECKPOINT_ATTEMPTS: u32 = 16;

/// Why a checkpoint or a verification could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("audit store")]
    Store(#[from] crate::error::Error),
    #[error("cannot sign the checkpoint")]
    Sign(#[source] jsonwebtoken::errors::Error),
    #[error("the checkpoint given is not valid: {0}")]
    Rejected(CheckpointRejection),
    #[error("{0}; run `rollgate audit verify` to see what changed")]
    Diverged(String),
    #[error("other records kept coming: gave up the checkpoint after {0} attempts")]
    Contention(u32),
}

/// A checkpoint request's outcome: the CHECKPOINT record at the head of the
/// chain, and whether this call appended it (`false`: the head already was
/// one, which attests the same records).
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpointed {
    pub record: AuditRecord,
    pub created: bool,
}

/// The audit log with its checkpoints. Cheap to clone; clones share what
/// they remember.
#[derive(Clone)]
pub struct AuditTrail {
    log: Arc<dyn AuditLog>,
    key: SigningKey,
    issuer: String,
    verifier: CheckpointVerifier,
    latest: Arc<Mutex<Option<Checkpoint>>>,
}

impl std::fmt::Debug for AuditTrail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditTrail")
            .field("issuer", &self.issuer)
            .field("latest", &self.latest())
            .finish_non_exhaustive()
    }
}

impl AuditTrail {
    /// Checkpoints over `log`, signed with `key` as `issuer` (`grants.issuer`)
    /// and checked against `keys` (the signing key and the old verification keys).
    pub fn new(log: Arc<dyn AuditLog>, key: SigningKey, keys: KeySet, issuer: String) -> Self {
        Self {
            log,
            key,
            verifier: CheckpointVerifier::new(keys, Some(issuer.clone())),
            issuer,
            latest: Arc::default(),
        }
    }

    /// The log underneath.
    pub fn log(&self) -> &Arc<dyn AuditLog> {
        &self.log
    }

    /// The latest checkpoint this process wrote or saw.
    pub fn latest(&self) -> Option<Checkpoint> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Keeps `checkpoint` when it covers more records than the one held.
    fn remember(&self, mut checkpoint: Checkpoint) {
        checkpoint.source = CheckpointSource::Memory;
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if latest
            .as_ref()
            .is_none_or(|held| checkpoint.covers() > held.covers())
        {
            *latest = Some(checkpoint);
        }
    }

    /// Makes a checkpoint of the chain as it is at `now` and appends it as a
    /// CHECKPOINT record (by `username`, for `reason`), unless the newest
    /// record already is a checkpoint: that one is answered instead, so
    /// racing replicas never stack two. Refuses when the chain no longer
    /// holds the checkpoint this process remembers: a new checkpoint must
    /// not bless records cut off or rewritten.
    pub async fn checkpoint(
        &self,
        username: Option<&str>,
        reason: &str,
        now: jiff::Timestamp,
    ) -> Result<Checkpointed, Error> {
        let made = self.make(username, reason, now, false).await?;
        Ok(made.expect("without only_if_new a checkpoint is always made or found"))
    }

    /// Like [`checkpoint`](Self::checkpoint), but `None` for an empty trail:
    /// the periodic checkpoint.
    pub async fn checkpoint_if_new(
        &self,
        reason: &str,
        now: jiff::Timestamp,
    ) -> Result<Option<Checkpointed>, Error> {
        self.make(None, reason, now, true).await
    }

    async fn make(
        &self,
        username: Option<&str>,
        reason: &str,
        now: jiff::Timestamp,
        only_if_new: bool,
    ) -> Result<Option<Checkpointed>, Error> {
        for _ in 0..CHECKPOINT_ATTEMPTS {
            let head = self.log.head().await?;
            self.check_memory(head.as_ref()).await?;
            if let Some(head) = head
                .as_ref()
                .filter(|h| h.event == Some(AuditEvent::Checkpoint))
            {
                if let Ok(claims) = self.verifier.verify_record(head) {
                    self.remember(Checkpoint {
                        claims,
                        jws: head.checkpoint.clone().unwrap_or_default(),
                        record: Some((head.id.clone(), head.hash.clone())),
                        source: CheckpointSource::Trail,
                    });
                }
                return Ok(Some(Checkpointed {
                    record: head.clone(),
                    created: false,
                }));
            }
            if head.is_none() && only_if_new {
                return Ok(None);
            }
            let claims = CheckpointClaims {
                iss: self.issuer.clone(),
                records: head.as_ref().map_or(0, |h| h.id.parse().unwrap_or(0)),
                head: head
                    .as_ref()
                    .map_or_else(|| GENESIS_HASH.to_owned(), |h| h.hash.clone()),
                iat: now.as_second(),
            };
            let jws = checkpoint::sign(&self.key, &claims).map_err(Error::Sign)?;
            let mut record = AuditRecord::new(AuditEvent::Checkpoint, now);
            record.username = username.map(str::to_owned);
            record.reason = Some(reason.to_owned());
            record.checkpoint = Some(jws.clone());
            record.checkpoint_records = Some(claims.records);
            record.checkpoint_head = Some(claims.head.clone());
            if let Some(stored) = self.log.append_after(record, head.as_ref()).await? {
                self.remember(Checkpoint {
                    claims,
                    jws,
                    record: Some((stored.id.clone(), stored.hash.clone())),
                    source: CheckpointSource::Memory,
                });
                return Ok(Some(Checkpointed {
                    record: stored,
                    created: true,
                }));
            }
            // Another record came first; give its replica a moment.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Err(Error::Contention(CHECKPOINT_ATTEMPTS))
    }

    /// The chain still holds what the remembered checkpoint attests: the
    /// records up to its head and its own CHECKPOINT record.
    async fn check_memory(&self, head: Option<&AuditRecord>) -> Result<(), Error> {
        let Some(held) = self.latest() else {
            return Ok(());
        };
        let head_id: u64 = head.map_or(0, |h| h.id.parse().unwrap_or(0));
        if head_id < held.covers() {
            return Err(Error::Diverged(format!(
                "the trail ends at record {head_id} but {} covers {} records: records were cut off the tail",
                held.describe(),
                held.covers()
            )));
        }
        let mut expected = vec![];
        if held.claims.records > 0 {
            expected.push((held.claims.records.to_string(), held.claims.head.clone()));
        }
        expected.extend(held.record.clone());
        for (id, hash) in expected {
            let stored = self.log.get(&id).await?;
            if stored.as_ref().map(|r| r.hash.as_str()) != Some(hash.as_str()) {
                return Err(Error::Diverged(format!(
                    "record {id} is not the one {} attests: the trail was rewritten",
                    held.describe()
                )));
            }
        }
        Ok(())
    }

    /// Walks the whole chain: links, hashes, every CHECKPOINT record's
    /// signature and attestation, and the chain against `supplied` (a
    /// checkpoint JWS from the auditor) and the checkpoint this process
    /// remembers. A valid newer checkpoint found in the trail is remembered.
    pub async fn verify(&self, supplied: Option<&str>) -> Result<VerifyReport, Error> {
        let mut held = Vec::new();
        if let Some(jws) = supplied {
            let claims = self.verifier.verify(jws.trim()).map_err(Error::Rejected)?;
            held.push(Checkpoint {
                claims,
                jws: jws.trim().to_owned(),
                record: None,
                source: CheckpointSource::Supplied,
            });
        }
        held.extend(self.latest());
        let walker = ChainWalker::with_checkpoints(self.verifier.clone(), held);
        let walker = walk(self.log.as_ref(), walker).await?;
        let latest = walker.latest_checkpoint().cloned();
        let report = walker.finish();
        if report.ok
            && let Some(latest) = latest
        {
            self.remember(latest);
        }
        Ok(report)
    }

    /// Every record, oldest first, as JSON lines (the export), read from the
    /// store a batch at a time as the stream is polled.
    pub fn export(
        &self,
    ) -> impl Stream<Item = Result<Bytes, crate::error::Error>> + Send + 'static {
        let log = self.log.clone();
        futures::stream::try_unfold(Some(0u64), move |after| {
            let log = log.clone();
            async move {
                let Some(after) = after else {
                    return Ok(None);
                };
                let batch = log.read_from(after, WALK_BATCH).await?;
                let next = match batch.last() {
                    Some((seq, _)) if batch.len() == WALK_BATCH => Some(*seq),
                    _ => None,
                };
                let mut chunk = Vec::with_capacity(batch.len() * 512);
                for (_, record) in &batch {
                    serde_json::to_writer(&mut chunk, record)?;
                    chunk.push(b'\n');
                }
                Ok(Some((Bytes::from(chunk), next)))
            }
        })
    }

    /// Makes a checkpoint every `every` while records were appended since
    /// the last one (on any replica). Runs until dropped.
    pub async fn run_periodic(self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let reason = "periodic (audit.checkpointInterval)";
            let made = self.checkpoint_if_new(reason, jiff::Timestamp::now());
            match tokio::time::timeout(Duration::from_secs(60), made).await {
                Ok(Ok(Some(Checkpointed {
                    record,
                    created: true,
                }))) => tracing::info!(
                    id = %record.id,
                    records = ?record.checkpoint_records,
                    "audit checkpoint appended"
                ),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %crate::error::error_chain(&e), "cannot make an audit checkpoint")
                }
                Err(_) => tracing::warn!("an audit checkpoint took over 60 s: skipped"),
            }
        }
    }
}
