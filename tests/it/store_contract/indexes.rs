//! The Redis store's namespace, application and event indexes answer
//! queries exactly, also for records an older rollgate appended without them
//! (the first query that needs them indexes them). On SQLite the same
//! behaviour holds through its SQL indexes.

use futures::{StreamExt, TryStreamExt};
use jiff::{SignedDuration, Timestamp};
use rollgate::audit::chain::{self, GENESIS_HASH};
use rollgate::audit::{AuditEvent, AuditFilter, AuditRecord, MAX_PAGE};
use rollgate::store::Stores;
use rollgate::store::redis::MAX_SCAN;

use super::{Backend, mk_admission, mk_record, record_ids};

contract!(
    queries_by_namespace_and_application_find_records_appended_without_indexes,
    a_query_by_a_rare_event_finds_it_behind_more_admissions_than_a_scan_reads,
    an_event_query_indexes_the_events_of_a_trail_an_older_rollgate_indexed,
);

impl Backend {
    /// Appends `records` the way a rollgate without indexes did: the stream
    /// entry only (SQLite: through the store, which has no such gap).
    async fn append_unindexed(&self, stores: &rollgate::store::Stores, records: Vec<AuditRecord>) {
        let Some(url) = self.redis_data_url() else {
            for r in records {
                stores.audit.append(r).await.unwrap();
            }
            return;
        };
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let head = stores.audit.head().await.unwrap();
        let (mut seq, mut prev) = head.map_or((0, GENESIS_HASH.to_owned()), |h| {
            (h.id.parse::<u64>().unwrap(), h.hash)
        });
        for mut r in records {
            seq += 1;
            r.id = seq.to_string();
            chain::link(&mut r, &prev);
            prev = r.hash.clone();
            let _: String = redis::cmd("XADD")
                .arg("{rollgate}:audit")
                .arg(format!("{seq}-0"))
                .arg("hash")
                .arg(&r.hash)
                .arg("record")
                .arg(serde_json::to_string(&r).unwrap())
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
}

impl Backend {
    /// The Redis index marker and the members of the production index
    /// (`None` on SQLite).
    async fn production_index(&self) -> Option<(String, Vec<String>)> {
        let url = self.redis_data_url()?;
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let marker: String = redis::cmd("GET")
            .arg("{rollgate}:audit:indexed:v2")
            .query_async(&mut conn)
            .await
            .unwrap();
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg("{rollgate}:audit:ns:production")
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        Some((marker, members))
    }
}

async fn queries_by_namespace_and_application_find_records_appended_without_indexes(b: &Backend) {
    let s = b.open().await;
    let base: Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
    for i in 1..=4 {
        s.audit.append(mk_record(i, base)).await.unwrap();
    }
    let old: Vec<AuditRecord> = (5..=8).map(|i| mk_record(i, base)).collect();
    b.append_unindexed(&s, old).await;
    let mut other_app = mk_record(9, base);
    other_app.application_name = Some("api".into());
    s.audit.append(other_app).await.unwrap();
    s.audit.append(mk_record(10, base)).await.unwrap();

    let query = |namespace: &str, application: Option<&str>| AuditFilter {
        namespace: Some(namespace.into()),
        application: application.map(str::to_owned),
        ..AuditFilter::default()
    };
    let cases = [
        (
            "namespace",
            query("production", None),
            vec!["10", "8", "6", "4", "2"],
        ),
        (
            "application",
            query("staging", Some("web")),
            vec!["7", "5", "3", "1"],
        ),
        (
            "other application",
            query("staging", Some("api")),
            vec!["9"],
        ),
        (
            "no such application",
            query("production", Some("api")),
            vec![],
        ),
    ];
    for (name, filter, want) in cases {
        let page = s.audit.query(&filter).await.unwrap();
        assert_eq!(record_ids(&page.items), want, "{name}");
        assert_eq!(page.next, None, "{name}");
    }
    // Pages of the index follow the cursor.
    let first = s
        .audit
        .query(&AuditFilter {
            limit: Some(2),
            ..query("production", None)
        })
        .await
        .unwrap();
    assert_eq!(record_ids(&first.items), ["10", "8"]);
    let rest = s
        .audit
        .query(&AuditFilter {
            after: first.next,
            ..query("production", None)
        })
        .await
        .unwrap();
    assert_eq!(record_ids(&rest.items), ["6", "4", "2"]);
    if let Some(index) = b.production_index().await {
        // The query indexed the records the older rollgate appended...
        assert_eq!(
            index,
            (
                "10".to_owned(),
                vec!["2".into(), "4".into(), "6".into(), "8".into(), "10".into()]
            )
        );
    }
    // ...and appends index themselves again from there.
    s.audit.append(mk_record(12, base)).await.unwrap();
    if let Some((marker, members)) = b.production_index().await {
        assert_eq!(marker, "11");
        assert_eq!(members.last().map(String::as_str), Some("11"));
    }
    assert!(s.audit.verify().await.unwrap().ok);
}

impl Backend {
    /// A connection to the Redis node holding rollgate's keys (`None` on SQLite).
    async fn raw_redis(&self) -> Option<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.redis_data_url()?).unwrap();
        Some(client.get_multiplexed_async_connection().await.unwrap())
    }

    /// The Redis index marker, the members of the ROLLOUT index and whether
    /// an ADMISSION index exists (`None` on SQLite).
    async fn rollout_index(&self) -> Option<(String, Vec<String>, bool)> {
        let mut conn = self.raw_redis().await?;
        let marker: String = redis::cmd("GET")
            .arg("{rollgate}:audit:indexed:v2")
            .query_async(&mut conn)
            .await
            .unwrap();
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg("{rollgate}:audit:event:ROLLOUT")
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        let admissions: bool = redis::cmd("EXISTS")
            .arg("{rollgate}:audit:event:ADMISSION")
            .query_async(&mut conn)
            .await
            .unwrap();
        Some((marker, members, admissions))
    }

    /// Leaves the Redis trail as a rollgate with only the namespace and
    /// application indexes did: no event index, its own marker saying every
    /// record up to `head` is indexed, and no marker of ours.
    async fn forget_event_indexes(&self, head: &str) {
        let Some(mut conn) = self.raw_redis().await else {
            return;
        };
        let _: () = redis::pipe()
            .cmd("DEL")
            .arg("{rollgate}:audit:event:ROLLOUT")
            .arg("{rollgate}:audit:indexed:v2")
            .ignore()
            .cmd("SET")
            .arg("{rollgate}:audit:indexed")
            .arg(head)
            .ignore()
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// The trail the rollout follower meets: one ROLLOUT record, then more
/// ADMISSION records than one query scans (appended concurrently, so they
/// share round trips). Answers the ROLLOUT record.
async fn rollout_under_admissions(s: &Stores) -> AuditRecord {
    let now = Timestamp::now();
    let mut rollout = AuditRecord::new(AuditEvent::Rollout, now);
    rollout.namespace = Some("production".into());
    rollout.application_name = Some("web".into());
    let rollout = s.audit.append(rollout).await.unwrap();
    futures::stream::iter(0..MAX_SCAN + 500)
        .map(|_| s.audit.append(mk_admission("web", now)))
        .buffer_unordered(256)
        .try_for_each(|_| async { Ok(()) })
        .await
        .unwrap();
    rollout
}

/// The rollout follower's query: the ROLLOUT records of the last day.
fn rollouts_of_the_last_day() -> AuditFilter {
    AuditFilter {
        event: Some(AuditEvent::Rollout),
        since: Some(Timestamp::now() - SignedDuration::from_hours(24)),
        limit: Some(MAX_PAGE),
        ..AuditFilter::default()
    }
}

async fn a_query_by_a_rare_event_finds_it_behind_more_admissions_than_a_scan_reads(b: &Backend) {
    let s = b.open().await;
    let rollout = rollout_under_admissions(&s).await;

    let page = s.audit.query(&rollouts_of_the_last_day()).await.unwrap();
    assert_eq!(
        (record_ids(&page.items), page.next),
        (vec![rollout.id.as_str()], None),
        "the first page holds the ROLLOUT record and the query ends there"
    );
    let none = AuditFilter {
        event: Some(AuditEvent::GrantRevoked),
        ..AuditFilter::default()
    };
    let page = s.audit.query(&none).await.unwrap();
    assert_eq!((page.items.len(), page.next), (0, None), "no such event");
    // ADMISSION has no event index: still read from the stream.
    let admissions = AuditFilter {
        event: Some(AuditEvent::Admission),
        limit: Some(2),
        ..AuditFilter::default()
    };
    let head = s.audit.head().await.unwrap().unwrap();
    let page = s.audit.query(&admissions).await.unwrap();
    assert_eq!(page.items.first().map(|r| &r.id), Some(&head.id));
    assert_eq!(page.items.len(), 2);
    if let Some(index) = b.rollout_index().await {
        assert_eq!(index, (head.id.clone(), vec![rollout.id.clone()], false));
    }
}

async fn an_event_query_indexes_the_events_of_a_trail_an_older_rollgate_indexed(b: &Backend) {
    let s = b.open().await;
    let rollout = rollout_under_admissions(&s).await;
    let head = s.audit.head().await.unwrap().unwrap();
    b.forget_event_indexes(&head.id).await;

    let page = s.audit.query(&rollouts_of_the_last_day()).await.unwrap();
    assert_eq!(
        (record_ids(&page.items), page.next),
        (vec![rollout.id.as_str()], None),
        "the query indexed the older records first"
    );
    if let Some(index) = b.rollout_index().await {
        assert_eq!(index, (head.id.clone(), vec![rollout.id.clone()], false));
    }
    // Appends index themselves again from there.
    let mut next = AuditRecord::new(AuditEvent::Rollout, Timestamp::now());
    next.namespace = Some("staging".into());
    let next = s.audit.append(next).await.unwrap();
    let page = s.audit.query(&rollouts_of_the_last_day()).await.unwrap();
    assert_eq!(
        record_ids(&page.items),
        [next.id.as_str(), rollout.id.as_str()]
    );
    if let Some((marker, members, _)) = b.rollout_index().await {
        assert_eq!(
            (marker, members),
            (next.id.clone(), vec![rollout.id, next.id])
        );
    }
    assert!(s.audit.verify().await.unwrap().ok);
}
