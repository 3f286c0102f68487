//! [`AuditLog`] on Redis: a stream with entry `<seq>-0` per record, appended
//! by a compare-and-append script on the chain head (the hash is computed
//! here, by [`chain::link`]), and read back in order for `verify` and the
//! export; queries are in `audit_query.rs`.
//!
//! Appends are group-committed: concurrent appends of this process queue
//! while one batch is in flight, and the next leader sends up to
//! [`MAX_BATCH`] of them as one pipeline of script calls (not a transaction),
//! each linked after the one before, so Redis answers them with one reply
//! batch and one fsync (`append_with`, `commit`). The script still checks
//! each record against the real head, so the chain never forks: a record
//! refused by a limit leaves the ones after it in the pipeline linked to a
//! record that is not there, and they are relinked and sent again.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use redis::{Cmd, Value};
use tokio::sync::{OwnedMutexGuard, oneshot};

use super::{
    APPEND_ATTEMPTS, AUDIT, AUDIT_APP_PREFIX, AUDIT_EVENT_PREFIX, AUDIT_INDEXED, AUDIT_NS_PREFIX,
    AUDIT_OP_PREFIX, AUDIT_TURN, Durability, Head, OPEN_OPERATIONS, OPERATION_LEASE_PREFIX,
    RATE_PREFIX, RedisStore, USES_PREFIX, eval, event_index, parse, scripts,
};
use crate::audit::chain::{self, GENESIS_HASH};
use crate::audit::{
    AdmissionLimits, AuditFilter, AuditLog, AuditPage, AuditRecord, LimitHit, RateCheck,
};
use crate::error::Error;
use crate::rollout::OperationMark;

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

/// The rate check `limits` asks for, or none (limit 0).
fn rate_of(limits: &AdmissionLimits) -> RateCheck {
    limits.rate.unwrap_or(RateCheck {
        limit: 0,
        window_secs: 0,
        now: 0,
    })
}

fn has_limits(limits: &AdmissionLimits) -> bool {
    limits.grant_uses.is_some() || limits.rate.is_some_and(|r| r.limit > 0)
}

/// The grant's use counter `limits` asks about (a key that is never set
/// when it asks about none: scripts name every key).
fn uses_key(limits: &AdmissionLimits) -> String {
    format!(
        "{USES_PREFIX}{}",
        limits.grant_uses.as_ref().map_or("-", |u| u.jti.as_str())
    )
}

/// The rate window of an application.
fn rate_key(namespace: &str, application: &str) -> String {
    format!("{RATE_PREFIX}{namespace}/{application}")
}

/// The hit a script's limit answer `{2, kind, number}` names.
fn limit_hit(kind: &str, number: &str, limits: &AdmissionLimits) -> LimitHit {
    match kind {
        "used_up" => LimitHit::UsedUp {
            max: limits.grant_uses.as_ref().map_or(0, |u| u.max),
        },
        _ => {
            let rate = rate_of(limits);
            LimitHit::RateLimited {
                limit: rate.limit,
                window_secs: rate.window_secs,
                next_at: number.parse::<i64>().unwrap_or_default(),
            }
        }
    }
}

/// What the script's answer `{outcome, first, second}` says.
fn appended(
    (outcome, first, second): (i64, String, String),
    limits: &AdmissionLimits,
) -> Result<Appended, Error> {
    if outcome == 2 {
        return Ok(Appended::Limited(limit_hit(&first, &second, limits)));
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

/// The `max` of a grant this batch found used up, if `limits` asks for a use
/// of it with at most that `max` and the grant is not about to expire (the
/// use counter expires with it).
fn known_used_up(used_up: &[(String, u32)], limits: &AdmissionLimits) -> Option<u32> {
    let uses = limits.grant_uses.as_ref()?;
    let now = jiff::Timestamp::now().as_second();
    (uses.expires_at > now + 1
        && used_up
            .iter()
            .any(|(jti, max)| *jti == uses.jti && uses.max <= *max))
    .then_some(uses.max)
}

/// A copy of `e` for one more caller (`Error` is not `Clone`).
fn each_caller(e: &Error) -> Error {
    match e {
        Error::Redis(e) => Error::Redis(e.clone()),
        Error::NotDurable(wait) => Error::NotDurable(*wait),
        Error::Timeout(wait) => Error::Timeout(*wait),
        Error::ChainContention(n) => Error::ChainContention(*n),
        other => Error::Redis(redis::RedisError::from((
            redis::ErrorKind::Io,
            "the audit append failed",
            crate::error::error_chain(other),
        ))),
    }
}

/// The answer of an append whose leader ended before answering it.
fn abandoned() -> Error {
    Error::Redis(redis::RedisError::from((
        redis::ErrorKind::Io,
        "the audit append was abandoned before it was answered",
    )))
}

/// Most appends one pipeline carries.
const MAX_BATCH: usize = 64;

/// What an append's caller gets back.
type Answer = Result<Result<AuditRecord, LimitHit>, Error>;

/// An append waiting for the leader of the next batch (see `append_with`).
pub(in crate::store) struct Queued {
    record: AuditRecord,
    limits: AdmissionLimits,
    done: oneshot::Sender<Answer>,
}

/// An append of the batch being committed.
struct Slot {
    record: AuditRecord,
    limits: AdmissionLimits,
    done: oneshot::Sender<Answer>,
    /// The seq the record is linked for in the current round.
    seq: u64,
    /// Compare-and-append calls made for it so far.
    attempts: u32,
}

impl Slot {
    fn answer(self, answer: Answer) {
        // A caller that gave up (its future was dropped) has no receiver left.
        let _ = self.done.send(answer);
    }
}

impl RedisStore {
    /// The compare-and-append call of `record`, linked here after `head`
    /// (see `scripts::APPEND_AUDIT`), with optional limits.
    fn append_cmd(
        &self,
        record: &mut AuditRecord,
        head: &Head,
        limits: &AdmissionLimits,
    ) -> Result<Cmd, Error> {
        let op_key = match record.operation_id.as_deref() {
            Some(op) => format!("{AUDIT_OP_PREFIX}{op}"),
            None => format!("{AUDIT_OP_PREFIX}-"),
        };
        let uses_key = uses_key(limits);
        let rate_key = rate_key(
            record.namespace.as_deref().unwrap_or_default(),
            record.application_name.as_deref().unwrap_or_default(),
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
        let (event_key, event_indexed) = match record.event.and_then(event_index) {
            Some(key) => (key, "1"),
            None => (format!("{AUDIT_EVENT_PREFIX}-"), "0"),
        };
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
            &event_key,
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
        let rate = rate_of(limits);
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
            .arg(record.operation_id.as_deref().unwrap_or_default())
            .arg(event_indexed);
        Ok(cmd)
    }

    /// One compare-and-append of `record`, linked here after `head`, in a
    /// round trip of its own (`append_after`).
    async fn append_once(
        &self,
        record: &mut AuditRecord,
        head: &Head,
        limits: &AdmissionLimits,
    ) -> Result<Appended, Error> {
        let cmd = self.append_cmd(record, head, limits)?;
        self.append_counts
            .round_trips
            .fetch_add(1, Ordering::Relaxed);
        let answer = self.write(&scripts::APPEND_AUDIT, cmd).await?;
        let appended = appended(answer, limits)?;
        if matches!(appended, Appended::Stored) {
            self.append_counts.records.fetch_add(1, Ordering::Relaxed);
        }
        Ok(appended)
    }

    /// Compare-and-append with optional limits, relinking and retrying while
    /// other replicas append; concurrent calls share round trips.
    ///
    /// Group commit: the call queues its record, then waits for either its
    /// answer or the head lock. Whoever gets the lock without an answer
    /// leads: a task of its own (so a caller dropped by its timeout does not
    /// strand the others) takes the queued records, up to [`MAX_BATCH`], and
    /// sends them as one pipeline, each linked after the one before
    /// (`commit`). A leader answers every record it took before it lets the
    /// lock go, so a caller that gets the lock finds its answer ready or its
    /// record still queued, and leads next: none waits forever.
    async fn append_with(&self, record: AuditRecord, limits: &AdmissionLimits) -> Answer {
        let (done, mut answer) = oneshot::channel();
        self.queued().push(Queued {
            record,
            limits: limits.clone(),
            done,
        });
        loop {
            tokio::select! {
                biased;
                answered = &mut answer => {
                    // The sender is dropped unanswered only if the leader's
                    // task ended early (a panic, the runtime shutting down).
                    return answered.unwrap_or_else(|_| Err(abandoned()));
                }
                head = self.head.clone().lock_owned() => {
                    let store = self.clone();
                    tokio::spawn(async move { store.lead(head).await });
                }
            }
        }
    }

    fn queued(&self) -> std::sync::MutexGuard<'_, Vec<Queued>> {
        // Nothing panics while holding it; a poisoned queue is still whole.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Commits one batch of queued appends, then lets the lock go: a caller
    /// still queued is waiting for it and leads the next batch, and
    /// `append_after` (checkpoints) gets its turn between batches.
    async fn lead(self, mut head: OwnedMutexGuard<Head>) {
        let batch: Vec<Slot> = {
            let mut queue = self.queued();
            // Callers that gave up (their future was dropped) are not
            // appended, as before batching.
            queue.retain(|q| !q.done.is_closed());
            let take = queue.len().min(MAX_BATCH);
            queue
                .drain(..take)
                .map(|q| Slot {
                    record: q.record,
                    limits: q.limits,
                    done: q.done,
                    seq: 0,
                    attempts: 0,
                })
                .collect()
        };
        if !batch.is_empty() {
            self.commit(&mut head, batch).await;
        }
    }

    /// Appends `batch`, one pipeline per round, and answers each record.
    ///
    /// Each round links every record after the one before it (the first after
    /// `head`). A record refused by a limit is not appended, so the ones after
    /// it in the round are refused as linked to the wrong head ("moved"); they
    /// and any record refused because another replica appended or holds the
    /// turn are relinked after the real head and sent in the next round, up
    /// to [`APPEND_ATTEMPTS`] calls per record. Records without limits go
    /// first, as no limit can refuse them and cut the round short.
    async fn commit(&self, head: &mut Head, mut batch: Vec<Slot>) {
        batch.sort_by_key(|slot| has_limits(&slot.limits));
        // (jti, max) of grants found used up in this batch: a use counter only
        // grows, so a later record of the grant with at most that `max` is
        // refused without another call (and without cutting a round short).
        let mut used_up: Vec<(String, u32)> = Vec::new();
        let mut round = batch;
        while !round.is_empty() {
            let mut sent = Vec::with_capacity(round.len());
            let mut cmds = Vec::with_capacity(round.len());
            let mut linked_to = head.clone();
            for mut slot in round.drain(..) {
                if slot.done.is_closed() {
                    // Its caller gave up between rounds: not appended.
                    continue;
                }
                if let Some(max) = known_used_up(&used_up, &slot.limits) {
                    slot.answer(Ok(Err(LimitHit::UsedUp { max })));
                    continue;
                }
                slot.attempts += 1;
                match self.append_cmd(&mut slot.record, &linked_to, &slot.limits) {
                    Ok(cmd) => {
                        slot.seq = linked_to.seq + 1;
                        linked_to = Head {
                            seq: slot.seq,
                            hash: slot.record.hash.clone(),
                        };
                        cmds.push(cmd);
                        sent.push(slot);
                    }
                    Err(e) => slot.answer(Err(e)),
                }
            }
            if sent.is_empty() {
                return;
            }
            let answers = match self.write_batch(cmds).await {
                Ok(answers) => answers,
                Err(e) => {
                    // The error is the whole pipeline's: each caller gets it.
                    for slot in sent {
                        let e = each_caller(&e);
                        slot.answer(Err(e));
                    }
                    return;
                }
            };
            let mut yield_turn = false;
            let mut reload = false;
            for (slot, answer) in sent.into_iter().zip(answers) {
                let outcome = match answer {
                    Ok(value) => parse(value).and_then(|a| appended(a, &slot.limits)),
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(Appended::Stored) => {
                        self.stored(head, slot);
                        continue;
                    }
                    // Already in the stream (its pipeline was sent again after
                    // it ran): it is stored, not to be linked after itself.
                    Ok(Appended::Moved(moved))
                        if moved.seq == slot.seq && moved.hash == slot.record.hash =>
                    {
                        self.stored(head, slot);
                        continue;
                    }
                    Ok(Appended::Moved(moved)) => {
                        if moved.seq + 1 == slot.seq && moved.hash == slot.record.prev_hash {
                            // Linked right but another replica holds the turn: let it go first.
                            yield_turn = true;
                        }
                        *head = moved;
                    }
                    Ok(Appended::Limited(hit)) => {
                        if let (LimitHit::UsedUp { max }, Some(uses)) =
                            (hit, slot.limits.grant_uses.as_ref())
                        {
                            used_up.push((uses.jti.clone(), max));
                        }
                        slot.answer(Ok(Err(hit)));
                        continue;
                    }
                    // A restarted or new Redis does not know the script: load
                    // it and send the record again.
                    Err(Error::Redis(e))
                        if e.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                    {
                        reload = true;
                    }
                    Err(e) => {
                        slot.answer(Err(e));
                        continue;
                    }
                }
                if slot.attempts < APPEND_ATTEMPTS {
                    round.push(slot);
                } else {
                    slot.answer(Err(Error::ChainContention(APPEND_ATTEMPTS)));
                }
            }
            if reload {
                let loaded = scripts::APPEND_AUDIT
                    .load_async(&mut self.conn.clone())
                    .await;
                if let Err(e) = loaded {
                    for slot in round.drain(..) {
                        slot.answer(Err(Error::Redis(e.clone())));
                    }
                }
            }
            if yield_turn {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    /// `slot`'s record is in the stream: it is the head, and its caller's answer.
    fn stored(&self, head: &mut Head, slot: Slot) {
        *head = Head {
            seq: slot.seq,
            hash: slot.record.hash.clone(),
        };
        self.append_counts.records.fetch_add(1, Ordering::Relaxed);
        let record = slot.record.clone();
        slot.answer(Ok(Ok(record)));
    }

    /// Sends `cmds` as one pipeline (not a transaction), followed by
    /// `WAITAOF` when the server has it: one round trip and one fsync for
    /// all of them. Answers each command's reply or server error, in order.
    async fn write_batch(&self, cmds: Vec<Cmd>) -> Result<Vec<Result<Value, Error>>, Error> {
        let durability = self.durability().await?;
        let count = cmds.len();
        let mut pipe = redis::pipe();
        // One call's error (say NOSCRIPT) must not hide the others' answers.
        pipe.ignore_errors();
        for cmd in cmds {
            pipe.add_command(cmd);
        }
        if let Durability::WaitAof { timeout_ms } = durability {
            pipe.cmd("WAITAOF").arg(1).arg(0).arg(timeout_ms);
        }
        self.append_counts
            .round_trips
            .fetch_add(1, Ordering::Relaxed);
        let mut values: Vec<Value> = pipe.query_async(&mut self.conn.clone()).await?;
        if let Durability::WaitAof { timeout_ms } = durability {
            let acks: Vec<i64> = match values.pop() {
                Some(Value::ServerError(e)) => return Err(Error::Redis(e.into())),
                Some(value) => parse(value)?,
                None => Vec::new(),
            };
            if acks.first().is_none_or(|local| *local < 1) {
                return Err(Error::NotDurable(Duration::from_millis(timeout_ms)));
            }
        }
        if values.len() != count {
            return Err(Error::Redis(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "the pipeline answered a different number of replies",
            ))));
        }
        Ok(values
            .into_iter()
            .map(|value| match value {
                Value::ServerError(e) => Err(Error::Redis(e.into())),
                value => Ok(value),
            })
            .collect())
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
    async fn append_admission(
        &self,
        record: AuditRecord,
        limits: &AdmissionLimits,
    ) -> Result<Result<AuditRecord, LimitHit>, Error> {
        self.append_with(record, limits).await
    }

    async fn check_admission_limits(
        &self,
        namespace: &str,
        application: &str,
        limits: &AdmissionLimits,
    ) -> Result<Option<LimitHit>, Error> {
        let max_uses = limits.grant_uses.as_ref().map_or(0, |u| u.max);
        let rate = rate_of(limits);
        let keys = [uses_key(limits), rate_key(namespace, application)];
        let mut cmd = eval(&scripts::CHECK_ADMISSION_LIMITS, &[&keys[0], &keys[1]]);
        cmd.arg(max_uses)
            .arg(rate.limit)
            .arg(rate.window_secs)
            .arg(rate.now);
        let (outcome, kind, number): (i64, String, String) =
            self.read(&scripts::CHECK_ADMISSION_LIMITS, cmd).await?;
        Ok((outcome == 2).then(|| limit_hit(&kind, &number, limits)))
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
