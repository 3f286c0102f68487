//! [`AuditLog`] on Redis: a stream with entry `<seq>-0` per record, appended
//! by a compare-and-append script on the chain head (the hash is computed
//! here, by [`chain::link`]), and read back in order for `verify` and the
//! export; queries are in `audit_query.rs`.

use std::time::Duration;

use async_trait::async_trait;

use super::{
    APPEND_ATTEMPTS, AUDIT, AUDIT_APP_PREFIX, AUDIT_INDEXED, AUDIT_NS_PREFIX, AUDIT_OP_PREFIX,
    AUDIT_TURN, Head, OPEN_OPERATIONS, OPERATION_LEASE_PREFIX, RATE_PREFIX, RedisStore,
    USES_PREFIX, eval, scripts,
};
use crate::audit::chain::{self, GENESIS_HASH};
use crate::audit::{
    AdmissionLimits, AuditFilter, AuditLog, AuditPage, AuditRecord, LimitHit, RateCheck,
};
use crate::rollout::OperationMark;
use crate::store::Error;

pub(super) type Entry = (String, Vec<String>);

pub(super) fn seq_of(entry_id: &str) -> Option<u64> {
    entry_id.split('-').next()?.parse().ok()
}

/// The record an entry holds, with its seq.
pub(super) fn record_of(entry: &Entry) -> Result<(u64, AuditRecord), Error> {
    let (id, fields) = entry;
    let body = fields
        .chunks(2)
        .find(|kv| kv[0] == "record")
        .and_then(|kv| kv.get(1))
        .map_or("", String::as_str);
    let record = serde_json::from_str(body)?;
    Ok((seq_of(id).unwrap_or(0), record))
}

/// What one compare-and-append call answered.
enum Appended {
    Stored,
    /// The chain's head is not the one the record was linked to (or another
    /// replica holds the turn): it is this one.
    Moved(Head),
    Limited(LimitHit),
}

impl RedisStore {
    /// One compare-and-append of `record`, linked here after `head` (see
    /// `scripts::APPEND_AUDIT`), with optional limits.
    async fn append_once(
        &self,
        record: &mut AuditRecord,
        head: &Head,
        limits: &AdmissionLimits,
    ) -> Result<Appended, Error> {
        let op_key = match record.operation_id.as_deref() {
            Some(op) => format!("{AUDIT_OP_PREFIX}{op}"),
            None => format!("{AUDIT_OP_PREFIX}-"),
        };
        let uses_key = format!(
            "{USES_PREFIX}{}",
            limits.grant_uses.as_ref().map_or("-", |u| u.jti.as_str())
        );
        let rate_key = format!(
            "{RATE_PREFIX}{}/{}",
            record.namespace.as_deref().unwrap_or_default(),
            record.application_name.as_deref().unwrap_or_default()
        );
        let (ns_key, app_key) = match (&record.namespace, &record.application_name) {
            (Some(ns), Some(app)) => (
                format!("{AUDIT_NS_PREFIX}{ns}"),
                format!("{AUDIT_APP_PREFIX}{ns}/{app}"),
            ),
            (Some(ns), None) => (
                format!("{AUDIT_NS_PREFIX}{ns}"),
                format!("{AUDIT_APP_PREFIX}-"),
            ),
            _ => (
                format!("{AUDIT_NS_PREFIX}-"),
                format!("{AUDIT_APP_PREFIX}-"),
            ),
        };
        let lease_key = format!(
            "{OPERATION_LEASE_PREFIX}{}",
            record.operation_id.as_deref().unwrap_or("-")
        );
        let keys = [
            AUDIT,
            AUDIT_TURN,
            &op_key,
            &uses_key,
            &rate_key,
            &ns_key,
            &app_key,
            AUDIT_INDEXED,
            OPEN_OPERATIONS,
            &lease_key,
        ];
        let mark = match (&record.operation_id, OperationMark::of(record)) {
            (None, _) => "0",
            (Some(_), OperationMark::None) => "1",
            (Some(_), OperationMark::Open) => "2",
            (Some(_), OperationMark::Close) => "3",
        };
        let (max_uses, uses_expire) = limits
            .grant_uses
            .as_ref()
            .map_or((0, 0), |u| (u.max, u.expires_at));
        let rate = limits.rate.unwrap_or(RateCheck {
            limit: 0,
            window_secs: 0,
            now: 0,
        });
        // `id` is part of the hash, so the record is chained for the seq
        // it expects to get; the script refuses it if the head moved.
        record.id = (head.seq + 1).to_string();
        chain::link(record, &head.hash);
        let mut cmd = eval(&scripts::APPEND_AUDIT, &keys);
        cmd.arg(&record.id)
            .arg(&record.prev_hash)
            .arg(GENESIS_HASH)
            .arg(&record.hash)
            .arg(serde_json::to_string(&record)?)
            .arg(&*self.replica)
            .arg(mark)
            .arg(max_uses)
            .arg(uses_expire)
            .arg(rate.limit)
            .arg(rate.window_secs)
            .arg(rate.now)
            .arg(if record.namespace.is_some() { "1" } else { "0" })
            .arg(
                if record.namespace.is_some() && record.application_name.is_some() {
                    "1"
                } else {
                    "0"
                },
            )
            .arg(record.operation_id.as_deref().unwrap_or_default());
        let (outcome, first, second): (i64, String, String) =
            self.write(&scripts::APPEND_AUDIT, cmd).await?;
        if outcome == 2 {
            let number = second.parse::<i64>().unwrap_or_default();
            return Ok(Appended::Limited(match first.as_str() {
                "used_up" => LimitHit::UsedUp { max: max_uses },
                _ => LimitHit::RateLimited {
                    limit: rate.limit,
                    window_secs: rate.window_secs,
                    next_at: number,
                },
            }));
        }
        let seq = first.parse().map_err(|_| {
            Error::Redis(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "the audit head has a malformed id",
            )))
        })?;
        let answered = Head { seq, hash: second };
        Ok(if outcome == 1 {
            Appended::Stored
        } else {
            Appended::Moved(answered)
        })
    }

    /// Compare-and-append with optional limits, relinking and retrying while
    /// other replicas append.
    async fn append_with(
        &self,
        mut record: AuditRecord,
        limits: &AdmissionLimits,
    ) -> Result<Result<AuditRecord, LimitHit>, Error> {
        let mut head = self.head.lock().await;
        for _ in 0..APPEND_ATTEMPTS {
            match self.append_once(&mut record, &head, limits).await? {
                Appended::Stored => {
                    *head = Head {
                        seq: head.seq + 1,
                        hash: record.hash.clone(),
                    };
                    return Ok(Ok(record));
                }
                Appended::Limited(hit) => return Ok(Err(hit)),
                Appended::Moved(moved) => {
                    if moved.seq == head.seq && moved.hash == head.hash {
                        // Linked right but another replica holds the turn: let it go first.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    *head = moved;
                }
            }
        }
        Err(Error::ChainContention(APPEND_ATTEMPTS))
    }

    /// The newest entry of the stream, with its seq.
    async fn last_entry(&self) -> Result<Option<(u64, AuditRecord)>, Error> {
        let entries: Vec<Entry> = self
            .command(
                redis::cmd("XREVRANGE")
                    .arg(AUDIT)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1),
            )
            .await?;
        Ok(entries.first().map(readable))
    }
}

/// The record an entry holds with its seq; one that does not parse is a
/// record with only its seq as id and an unreadable hash.
fn readable(entry: &Entry) -> (u64, AuditRecord) {
    record_of(entry).unwrap_or_else(|_| {
        let seq = seq_of(&entry.0).unwrap_or(0);
        let record = AuditRecord {
            id: seq.to_string(),
            hash: chain::UNREADABLE.into(),
            ..AuditRecord::default()
        };
        (seq, record)
    })
}

#[async_trait]
impl AuditLog for RedisStore {
    async fn append(&self, record: AuditRecord) -> Result<AuditRecord, Error> {
        match self
            .append_with(record, &AdmissionLimits::default())
            .await?
        {
            Ok(record) => Ok(record),
            // No limits were asked for, so none can be hit.
            Err(_) => Err(Error::ChainContention(0)),
        }
    }

    async fn append_admission(
        &self,
        record: AuditRecord,
        limits: &AdmissionLimits,
    ) -> Result<Result<AuditRecord, LimitHit>, Error> {
        self.append_with(record, limits).await
    }

    async fn query(&self, filter: &AuditFilter) -> Result<AuditPage, Error> {
        self.query_page(filter).await
    }

    async fn get(&self, id: &str) -> Result<Option<AuditRecord>, Error> {
        let Ok(seq) = id.parse::<u64>() else {
            return Ok(None);
        };
        let entry_id = format!("{seq}-0");
        let entries: Vec<Entry> = self
            .command(
                redis::cmd("XRANGE")
                    .arg(AUDIT)
                    .arg(&entry_id)
                    .arg(&entry_id),
            )
            .await?;
        entries
            .first()
            .map(|e| record_of(e).map(|(_, r)| r))
            .transpose()
    }

    async fn read_from(&self, after: u64, limit: usize) -> Result<Vec<(u64, AuditRecord)>, Error> {
        let entries: Vec<Entry> = self
            .command(
                redis::cmd("XRANGE")
                    .arg(AUDIT)
                    .arg(format!("({after}-0"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(limit),
            )
            .await?;
        Ok(entries.iter().map(readable).collect())
    }

    async fn head(&self) -> Result<Option<AuditRecord>, Error> {
        Ok(self.last_entry().await?.map(|(_, record)| record))
    }

    async fn append_after(
        &self,
        mut record: AuditRecord,
        after: Option<&AuditRecord>,
    ) -> Result<Option<AuditRecord>, Error> {
        let expected = match after {
            Some(h) => Head {
                seq: h.id.parse().unwrap_or(u64::MAX),
                hash: h.hash.clone(),
            },
            None => Head::default(),
        };
        let mut head = self.head.lock().await;
        match self
            .append_once(&mut record, &expected, &AdmissionLimits::default())
            .await?
        {
            Appended::Stored => {
                *head = Head {
                    seq: expected.seq + 1,
                    hash: record.hash.clone(),
                };
                Ok(Some(record))
            }
            Appended::Moved(moved) => {
                *head = moved;
                Ok(None)
            }
            // No limits were asked for, so none can be hit.
            Appended::Limited(_) => Ok(None),
        }
    }
}
