//! The hash chain, pure: `hash = SHA-256(canonical JSON of the record without
//! its "hash" field)`, where the record includes `prevHash`, the previous
//! record's hash (64 zeros for the first). Canonical JSON is compact, with
//! object keys sorted, as `json.dumps(r, sort_keys=True, separators=(",",":"),
//! ensure_ascii=False)` writes it, so anyone can verify an export offline.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::checkpoint::{Checkpoint, CheckpointSource, CheckpointVerifier};
use super::{AuditEvent, AuditRecord};

/// `prevHash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash an entry gets in a walk when the store cannot read it back.
pub const UNREADABLE: &str = "unreadable";

/// Result of walking the chain (`GET /v1/audit/verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub ok: bool,
    pub records: u64,
    /// Hash of the last record (the genesis hash when empty).
    pub head: String,
    /// Id of the first record that breaks the chain (for records cut off
    /// the tail, the first missing one).
    pub first_bad_id: Option<String>,
    /// The checkpoint the chain was checked against: the one supplied, else
    /// the latest this process wrote or saw, else the trail's newest.
    pub checkpoint: Option<CheckpointSummary>,
    /// What is wrong, for a person; `None` when `ok`.
    pub problem: Option<String>,
}

/// A checkpoint as a [`VerifyReport`] names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointSummary {
    /// Id of the CHECKPOINT record carrying it, when known.
    pub id: Option<String>,
    /// Records it attests.
    pub records: u64,
    /// Hash of the last record it attests.
    pub head: String,
    /// RFC 3339.
    pub issued_at: String,
    pub source: CheckpointSource,
}

impl From<&Checkpoint> for CheckpointSummary {
    fn from(c: &Checkpoint) -> Self {
        Self {
            id: c.record.as_ref().map(|(id, _)| id.clone()),
            records: c.claims.records,
            head: c.claims.head.clone(),
            issued_at: jiff::Timestamp::from_second(c.claims.iat)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            source: c.source,
        }
    }
}

/// The hash `record` must carry, given its fields and `prevHash`.
pub fn record_hash(record: &AuditRecord) -> String {
    let mut value = serde_json::to_value(record).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.remove("hash");
    }
    let mut canonical = Vec::with_capacity(1024);
    write_canonical(&value, &mut canonical);
    hex::encode(Sha256::digest(&canonical))
}

/// Links `record` after a record whose hash is `prev_hash`: sets `prevHash` and `hash`.
pub fn link(record: &mut AuditRecord, prev_hash: &str) {
    record.prev_hash = prev_hash.to_owned();
    record.hash = record_hash(record);
}

/// Incremental chain check over records in append order: links, hashes,
/// CHECKPOINT records (what they attest always; their signatures when made
/// [`with_checkpoints`](Self::with_checkpoints)), and the checkpoints held.
#[derive(Debug, Clone)]
pub struct ChainWalker {
    head: String,
    records: u64,
    last_id: u64,
    /// The first bad record's id and what is wrong with it.
    first_bad: Option<(String, String)>,
    signatures: Option<CheckpointVerifier>,
    held: Vec<Checkpoint>,
    latest: Option<Checkpoint>,
}

impl Default for ChainWalker {
    fn default() -> Self {
        Self {
            head: GENESIS_HASH.to_owned(),
            records: 0,
            last_id: 0,
            first_bad: None,
            signatures: None,
            held: Vec::new(),
            latest: None,
        }
    }
}

impl ChainWalker {
    /// A walker that also verifies every CHECKPOINT record's signature with
    /// `verifier`, and checks the chain against each of `held`: it must hold
    /// the records they attest, unchanged, and their CHECKPOINT records when
    /// known; fewer means records were cut off the tail.
    pub fn with_checkpoints(verifier: CheckpointVerifier, held: Vec<Checkpoint>) -> Self {
        Self {
            signatures: Some(verifier),
            held,
            ..Self::default()
        }
    }

    /// Checks the next record: it must point at the previous hash and its own
    /// hash must match its content.
    pub fn push(&mut self, record: &AuditRecord) {
        let problem = if record_hash(record) != record.hash {
            Some(if record.hash == UNREADABLE {
                format!(
                    "record {} cannot be read: it is not a well-formed record",
                    record.id
                )
            } else {
                format!(
                    "record {} was edited: its hash does not match its content",
                    record.id
                )
            })
        } else if record.prev_hash != self.head {
            Some(format!(
                "record {} does not follow the record before it (its prevHash is not that record's hash): \
                 a record was deleted, inserted or reordered here",
                record.id
            ))
        } else if record.event == Some(AuditEvent::Checkpoint) {
            self.check_checkpoint(record).err()
        } else {
            None
        };
        self.records += 1;
        self.head = record.hash.clone();
        self.last_id = record.id.parse().unwrap_or(self.last_id + 1);
        let held = self.held.iter().find_map(|h| {
            if self.records == h.claims.records && self.head != h.claims.head {
                Some(format!(
                    "record {} is not the record {} attests: the trail up to it was rewritten",
                    record.id,
                    h.describe()
                ))
            } else if self.records == h.claims.records + 1
                && h.record
                    .as_ref()
                    .is_some_and(|(_, hash)| *hash != record.hash)
            {
                Some(format!(
                    "record {} should be {}, but differs: the trail was rewritten",
                    record.id,
                    h.describe()
                ))
            } else {
                None
            }
        });
        if self.first_bad.is_none()
            && let Some(problem) = problem.or(held)
        {
            self.first_bad = Some((record.id.clone(), problem));
        }
    }

    /// A CHECKPOINT record attests exactly the records before it, and its
    /// signature verifies (when this walker checks signatures). A valid one
    /// becomes the trail's latest checkpoint.
    fn check_checkpoint(&mut self, record: &AuditRecord) -> Result<(), String> {
        if record.checkpoint_records != Some(self.records)
            || record.checkpoint_head.as_deref() != Some(self.head.as_str())
        {
            return Err(format!(
                "checkpoint record {} attests {} records but {} precede it",
                record.id,
                record
                    .checkpoint_records
                    .map_or_else(|| "no".to_owned(), |n| n.to_string()),
                self.records
            ));
        }
        let Some(verifier) = &self.signatures else {
            return Ok(());
        };
        let claims = verifier.verify_record(record).map_err(|rejection| {
            format!(
                "checkpoint record {} is not a valid checkpoint: {rejection}",
                record.id
            )
        })?;
        if self.first_bad.is_none() {
            self.latest = Some(Checkpoint {
                claims,
                jws: record.checkpoint.clone().unwrap_or_default(),
                record: Some((record.id.clone(), record.hash.clone())),
                source: CheckpointSource::Trail,
            });
        }
        Ok(())
    }

    /// The newest CHECKPOINT record whose signature verified, with nothing
    /// wrong before it.
    pub fn latest_checkpoint(&self) -> Option<&Checkpoint> {
        self.latest.as_ref()
    }

    pub fn finish(self) -> VerifyReport {
        let mut first_bad = self.first_bad;
        if first_bad.is_none()
            && let Some(short) = self
                .held
                .iter()
                .filter(|h| self.records < h.covers())
                .max_by_key(|h| h.covers())
        {
            let missing = self.last_id + 1;
            first_bad = Some((
                missing.to_string(),
                format!(
                    "the trail ends after {} records but {} covers {}: records were cut off the tail, \
                     from record {missing} on",
                    self.records,
                    short.describe(),
                    short.covers()
                ),
            ));
        }
        let checked = [CheckpointSource::Supplied, CheckpointSource::Memory]
            .iter()
            .find_map(|source| {
                self.held
                    .iter()
                    .filter(|h| h.source == *source)
                    .max_by_key(|h| h.covers())
            })
            .or(self.latest.as_ref());
        let (first_bad_id, problem) = first_bad.unzip();
        VerifyReport {
            ok: first_bad_id.is_none(),
            records: self.records,
            head: self.head,
            first_bad_id,
            checkpoint: checked.map(CheckpointSummary::from),
            problem,
        }
    }
}

/// Verifies records given in append order.
pub fn verify<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> VerifyReport {
    let mut walker = ChainWalker::default();
    for r in records {
        walker.push(r);
    }
    walker.finish()
}

/// Feeds an export (`GET /v1/audit/export`: one JSON record per line,
/// oldest first) to `walker`, for offline verification. Blank lines are
/// skipped; a line that is not a record breaks the chain there.
pub fn walk_lines(
    lines: impl std::io::BufRead,
    mut walker: ChainWalker,
) -> std::io::Result<ChainWalker> {
    for (n, line) in lines.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<AuditRecord>(&line) {
            Ok(record) => walker.push(&record),
            Err(_) => walker.push(&AuditRecord {
                id: format!("on line {}", n + 1),
                hash: UNREADABLE.into(),
                ..AuditRecord::default()
            }),
        }
    }
    Ok(walker)
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(key, out);
                out.push(b':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_str(text: &str, out: &mut Vec<u8>) {
    if serde_json::to_writer(&mut *out, text).is_err() {
        out.extend_from_slice(b"null");
    }
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    // serde_json writes scalars compactly and deterministically.
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
