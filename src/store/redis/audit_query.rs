//! `AuditLog::query` on Redis: records read newest first through the
//! narrowest index the filter allows (the operation's, the application's,
//! the namespace's, the event's, else the whole stream) and filtered in
//! memory, at most [`MAX_SCAN`] per call. The namespace, application and
//! event indexes are written by the append script; records an older
//! rollgate appended without them are indexed here, by the first query that
//! finds the index marker behind.
//!
//! The event index serves a filter without namespace (the rollout
//! follower's ROLLOUT records of the last day, once a minute): found through
//! the stream, a few rare records cost a scan of the ADMISSION records
//! between them. ADMISSION itself has no event index (see `event_index`).

use redis::Value;

use super::audit::{Entry, record_of, seq_of};
use super::{
    AUDIT, AUDIT_APP_PREFIX, AUDIT_EVENT_PREFIX, AUDIT_INDEXED, AUDIT_NS_PREFIX, AUDIT_OP_PREFIX,
    BATCH, MAX_SCAN, RedisStore, eval, event_index, parse, scripts,
};
use crate::audit::{AuditFilter, AuditPage, AuditRecord, DEFAULT_PAGE, MAX_PAGE, timestamp_text};
use crate::error::Error;

/// Does `record` pass the filters of `filter` (all but `after`/`limit`)?
fn matches(filter: &AuditFilter, r: &AuditRecord) -> bool {
    let eq = |want: &Option<String>, have: &Option<String>| {
        want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
    };
    eq(&filter.namespace, &r.namespace)
        && eq(&filter.application, &r.application_name)
        && eq(&filter.user, &r.username)
        && eq(&filter.operation_id, &r.operation_id)
        && filter.event.is_none_or(|e| r.event == Some(e))
        && filter.decision.is_none_or(|d| r.decision == Some(d))
        && filter
            .since
            .is_none_or(|t| r.timestamp >= timestamp_text(t))
        && filter.until.is_none_or(|t| r.timestamp < timestamp_text(t))
}

/// Where a query reads its candidates from, narrowest first.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    Operation(String),
    /// A namespace's, an application's or an event's index.
    Index(String),
    Stream,
}

impl Source {
    fn of(filter: &AuditFilter) -> Self {
        match (&filter.operation_id, &filter.namespace, &filter.application) {
            (Some(op), _, _) => Self::Operation(format!("{AUDIT_OP_PREFIX}{op}")),
            (None, Some(ns), Some(app)) => Self::Index(format!("{AUDIT_APP_PREFIX}{ns}/{app}")),
            (None, Some(ns), None) => Self::Index(format!("{AUDIT_NS_PREFIX}{ns}")),
            // An application without its namespace has no index of its own.
            (None, None, _) => filter
                .event
                .and_then(event_index)
                .map_or(Self::Stream, Self::Index),
        }
    }
}

/// Records indexed per `INDEX_AUDIT` call when catching up.
const INDEX_BATCH: usize = 2000;

impl RedisStore {
    /// Up to `count` records older than `upper` (from the newest when
    /// `None`), newest first, and the cursor to continue from (`None` when
    /// no older record remains).
    async fn scan_back(
        &self,
        source: &Source,
        upper: Option<u64>,
        count: usize,
    ) -> Result<(Vec<(u64, AuditRecord)>, Option<u64>), Error> {
        let bound = upper.map_or_else(|| "+inf".to_owned(), |u| format!("({u}"));
        let (entries, cursor): (Vec<Entry>, Option<u64>) = match source {
            Source::Operation(op_key) => {
                let mut cmd = eval(&scripts::AUDIT_BY_OPERATION, &[AUDIT, op_key]);
                cmd.arg(&bound).arg(count);
                let (scanned, last, entries): (usize, String, Vec<Entry>) =
                    self.read(&scripts::AUDIT_BY_OPERATION, cmd).await?;
                (
                    entries,
                    (scanned == count).then(|| last.parse().ok()).flatten(),
                )
            }
            Source::Index(index) => match self.index_page(index, &bound, count).await? {
                Some(page) => page,
                None => self.stream_page(upper, count).await?,
            },
            Source::Stream => self.stream_page(upper, count).await?,
        };
        let records = entries.iter().map(record_of).collect::<Result<_, _>>()?;
        Ok((records, cursor))
    }

    /// Up to `count` entries of `index` below `bound`, newest first, with the
    /// cursor; `None` when the index could not be caught up with the stream
    /// (appends of an older rollgate racing it), so the caller scans the stream.
    async fn index_page(
        &self,
        index: &str,
        bound: &str,
        count: usize,
    ) -> Result<Option<(Vec<Entry>, Option<u64>)>, Error> {
        for _ in 0..3 {
            let mut cmd = eval(&scripts::AUDIT_BY_INDEX, &[AUDIT, index, AUDIT_INDEXED]);
            cmd.arg(bound).arg(count);
            let answer: Value = self.read(&scripts::AUDIT_BY_INDEX, cmd).await?;
            if matches!(&answer, Value::Array(items) if items.len() == 1) {
                // The index is behind the stream: catch it up, then read again.
                self.catch_up_index().await?;
                continue;
            }
            let (scanned, last, entries): (usize, String, Vec<Entry>) = parse(answer)?;
            let cursor = (scanned == count).then(|| last.parse().ok()).flatten();
            return Ok(Some((entries, cursor)));
        }
        Ok(None)
    }

    /// Up to `count` entries of the stream below seq `upper`, newest first,
    /// with the cursor.
    async fn stream_page(
        &self,
        upper: Option<u64>,
        count: usize,
    ) -> Result<(Vec<Entry>, Option<u64>), Error> {
        let end = upper.map_or_else(|| "+".to_owned(), |u| format!("({u}-0"));
        let entries: Vec<Entry> = self
            .command(
                redis::cmd("XREVRANGE")
                    .arg(AUDIT)
                    .arg(end)
                    .arg("-")
                    .arg("COUNT")
                    .arg(count),
            )
            .await?;
        let cursor = match entries.last() {
            Some((id, _)) if entries.len() == count => seq_of(id),
            _ => None,
        };
        Ok((entries, cursor))
    }

    /// Indexes every record the namespace, application and event indexes miss.
    async fn catch_up_index(&self) -> Result<(), Error> {
        loop {
            let mut cmd = eval(&scripts::INDEX_AUDIT, &[AUDIT, AUDIT_INDEXED]);
            cmd.arg(AUDIT_NS_PREFIX)
                .arg(AUDIT_APP_PREFIX)
                .arg(INDEX_BATCH)
                .arg(AUDIT_EVENT_PREFIX);
            let (indexed, _upto): (usize, String) = self.write(&scripts::INDEX_AUDIT, cmd).await?;
            if indexed < INDEX_BATCH {
                return Ok(());
            }
        }
    }
}

impl RedisStore {
    /// A page of `filter` (`AuditLog::query`).
    pub(super) async fn query_page(&self, filter: &AuditFilter) -> Result<AuditPage, Error> {
        let limit = filter.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let mut cursor: Option<u64> = filter.after.as_deref().and_then(|a| a.parse().ok());
        let selective = filter.namespace.is_some()
            || filter.application.is_some()
            || filter.user.is_some()
            || filter.event.is_some()
            || filter.decision.is_some()
            || filter.since.is_some()
            || filter.until.is_some();
        let batch = if selective {
            BATCH.max(limit + 1)
        } else {
            limit + 1
        };
        // Grown as records match, not sized for `limit`: an AuditRecord is
        // about a kilobyte, and the follower asks for a full page of each of
        // the operations it scans, which hold a handful of records.
        let mut items: Vec<AuditRecord> = Vec::new();
        let mut scanned = 0;
        let mut exhausted = false;
        let source = Source::of(filter);
        while items.len() <= limit && scanned < MAX_SCAN {
            let (records, next) = self.scan_back(&source, cursor, batch).await?;
            scanned += batch;
            for (_, record) in records {
                if matches(filter, &record) {
                    items.push(record);
                    if items.len() > limit {
                        break;
                    }
                }
            }
            match next {
                Some(next) => cursor = Some(next),
                None => {
                    exhausted = true;
                    break;
                }
            }
        }
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|r| r.id.clone())
        } else if exhausted {
            None
        } else {
            // The scan stopped at MAX_SCAN records: the next page goes on from there.
            cursor.map(|c| c.to_string())
        };
        Ok(AuditPage { items, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_filters_match_like_the_sqlite_store() {
        use crate::audit::{AuditDecision, AuditEvent};
        let r = AuditRecord {
            timestamp: "2026-01-01T10:00:00.000000Z".into(),
            event: Some(AuditEvent::Admission),
            decision: Some(AuditDecision::Allowed),
            namespace: Some("production".into()),
            username: Some("alice".into()),
            ..Default::default()
        };
        let ts = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let cases = [
            ("no filter", AuditFilter::default(), true),
            (
                "namespace",
                AuditFilter {
                    namespace: Some("production".into()),
                    ..Default::default()
                },
                true,
            ),
            (
                "other namespace",
                AuditFilter {
                    namespace: Some("staging".into()),
                    ..Default::default()
                },
                false,
            ),
            (
                "application unset on record",
                AuditFilter {
                    application: Some("web".into()),
                    ..Default::default()
                },
                false,
            ),
            (
                "decision",
                AuditFilter {
                    decision: Some(AuditDecision::Denied),
                    ..Default::default()
                },
                false,
            ),
            (
                "since is inclusive",
                AuditFilter {
                    since: Some(ts("2026-01-01T10:00:00Z")),
                    ..Default::default()
                },
                true,
            ),
            (
                "until is exclusive",
                AuditFilter {
                    until: Some(ts("2026-01-01T10:00:00Z")),
                    ..Default::default()
                },
                false,
            ),
        ];
        for (name, filter, want) in cases {
            assert_eq!(matches(&filter, &r), want, "{name}");
        }
    }

    #[test]
    fn queries_read_through_the_narrowest_index() {
        use crate::audit::AuditEvent;
        let filter = |namespace: Option<&str>, application: Option<&str>, event| AuditFilter {
            namespace: namespace.map(str::to_owned),
            application: application.map(str::to_owned),
            event,
            ..Default::default()
        };
        let index = |key: &str| Source::Index(key.to_owned());
        let rollout = Some(AuditEvent::Rollout);
        let cases = [
            ("nothing", filter(None, None, None), Source::Stream),
            (
                "event",
                filter(None, None, rollout),
                index("{rollgate}:audit:event:ROLLOUT"),
            ),
            (
                "an event of several words",
                filter(None, None, Some(AuditEvent::TicketApprovalAdded)),
                index("{rollgate}:audit:event:TICKET_APPROVAL_ADDED"),
            ),
            (
                "admissions are the stream's bulk",
                filter(None, None, Some(AuditEvent::Admission)),
                Source::Stream,
            ),
            (
                "application alone has no index",
                filter(None, Some("web"), None),
                Source::Stream,
            ),
            (
                "application alone and event",
                filter(None, Some("web"), rollout),
                index("{rollgate}:audit:event:ROLLOUT"),
            ),
            (
                "namespace and event",
                filter(Some("production"), None, rollout),
                index("{rollgate}:audit:ns:production"),
            ),
            (
                "application and event",
                filter(Some("production"), Some("web"), rollout),
                index("{rollgate}:audit:app:production/web"),
            ),
            (
                "operation",
                AuditFilter {
                    operation_id: Some("op-1".into()),
                    ..filter(Some("production"), None, rollout)
                },
                Source::Operation("{rollgate}:audit:op:op-1".into()),
            ),
        ];
        for (name, filter, want) in cases {
            assert_eq!(Source::of(&filter), want, "{name}");
        }
    }
}
