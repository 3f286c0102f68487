//! The audit chain against tampering with the store itself, on every
//! backend: two records swapped, the tail cut off (checkpoints included),
//! and the compare-and-append that checkpoints rely on, raced by two
//! instances. Each test edits the store behind rollgate's back: SQL on the
//! table, or a rewrite of the Redis stream with raw commands.

use jiff::Timestamp;
use rollgate::audit::{AuditEvent, AuditFilter, AuditTrail};
use rollgate::grants::{KeySet, SigningKey};
use rollgate::store::Stores;
use rollgate::store::sqlite::SqliteStore;

use super::{Backend, mk_record, record_ids};

contract!(
    head_and_append_after_compare_and_append,
    reordering_two_records_names_the_first_bad_id,
    truncating_the_tail_is_detected_against_a_checkpoint,
    racing_checkpoints_from_two_instances_append_one,
);

type Entry = (String, Vec<String>);

impl Backend {
    /// Rewrites the whole Redis stream as `change` leaves its entries.
    async fn rewrite_stream(&self, change: impl FnOnce(&mut Vec<Entry>)) {
        let url = self.redis_data_url().expect("a Redis backend");
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let key = "{rollgate}:audit";
        let mut entries: Vec<Entry> = redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .unwrap();
        change(&mut entries);
        let _: () = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        for (id, fields) in entries {
            let _: String = redis::cmd("XADD")
                .arg(key)
                .arg(&id)
                .arg(&fields)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }

    async fn raw_sqlite(&self, statements: &[&'static str]) {
        let Self::Sqlite(dir) = self else {
            unreachable!("an SQLite backend")
        };
        let raw = SqliteStore::open(&dir.path().join("rollgate.db"))
            .await
            .unwrap();
        for sql in statements {
            raw.execute_raw(sql).await.unwrap();
        }
    }

    /// Swaps records 2 and 3: each position holds the other's record.
    async fn swap_audit_records_2_and_3(&self) {
        match self {
            Self::Sqlite(_) => {
                self.raw_sqlite(&[
                    "UPDATE audit SET seq = -3 WHERE seq = 3",
                    "UPDATE audit SET seq = 3 WHERE seq = 2",
                    "UPDATE audit SET seq = 2 WHERE seq = -3",
                ])
                .await
            }
            _ => {
                self.rewrite_stream(|entries| {
                    let second = std::mem::take(&mut entries[1].1);
                    entries[1].1 = std::mem::replace(&mut entries[2].1, second);
                })
                .await
            }
        }
    }

    /// Deletes every record after the fifth.
    async fn cut_audit_after_5(&self) {
        match self {
            Self::Sqlite(_) => self.raw_sqlite(&["DELETE FROM audit WHERE seq > 5"]).await,
            _ => self.rewrite_stream(|entries| entries.truncate(5)).await,
        }
    }
}

fn mk_trail(stores: &Stores, key: &SigningKey) -> AuditTrail {
    AuditTrail::new(
        stores.audit.clone(),
        key.clone(),
        KeySet::new(key),
        "rollgate".into(),
    )
}

fn mk_key() -> SigningKey {
    SigningKey::from_pem(rollgate::grants::keys::generate_pem().unwrap().as_bytes()).unwrap()
}

async fn append(stores: &Stores, n: i64) {
    for i in 1..=n {
        stores
            .audit
            .append(mk_record(i, Timestamp::now()))
            .await
            .unwrap();
    }
}

async fn head_and_append_after_compare_and_append(b: &Backend) {
    let s = b.open().await;
    assert_eq!(s.audit.head().await.unwrap(), None, "empty trail");
    let first = s
        .audit
        .append_after(mk_record(1, Timestamp::now()), None)
        .await
        .unwrap()
        .expect("the empty trail is the head expected");
    append(&s, 6).await;
    let head = s.audit.head().await.unwrap().unwrap();
    assert_eq!(head.id, "7");

    let stale = s
        .audit
        .append_after(mk_record(8, Timestamp::now()), Some(&first))
        .await
        .unwrap();
    assert_eq!(stale, None, "a moved head appends nothing");
    let stored = s
        .audit
        .append_after(mk_record(8, Timestamp::now()), Some(&head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.id.as_str(), stored.prev_hash.as_str()),
        ("8", head.hash.as_str())
    );

    let page = s.audit.read_from(0, 3).await.unwrap();
    let seqs: Vec<u64> = page.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, [1, 2, 3], "oldest first");
    let rest = s.audit.read_from(3, 100).await.unwrap();
    let rest: Vec<_> = rest.into_iter().map(|(_, r)| r).collect();
    assert_eq!(record_ids(&rest), ["4", "5", "6", "7", "8"]);
    assert!(s.audit.verify().await.unwrap().ok);
    // Another instance appends after its own view of the head as well.
    let other = b.open().await;
    let ninth = other
        .audit
        .append_after(mk_record(9, Timestamp::now()), Some(&stored))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ninth.id, "9");
    let tenth = s
        .audit
        .append(mk_record(10, Timestamp::now()))
        .await
        .unwrap();
    assert_eq!(tenth.prev_hash, ninth.hash, "the first instance relinks");
}

async fn reordering_two_records_names_the_first_bad_id(b: &Backend) {
    let s = b.open().await;
    append(&s, 5).await;
    b.swap_audit_records_2_and_3().await;
    let moved = s.audit.read_from(1, 1).await.unwrap();
    assert_eq!(moved[0].1.id, "3", "record 3 now sits in position 2");

    let report = s.audit.verify().await.unwrap();

    assert!(!report.ok, "{report:?}");
    assert_eq!(report.first_bad_id.as_deref(), Some("3"), "{report:?}");
    assert_eq!(report.records, 5);
    let problem = report.problem.unwrap();
    assert!(
        problem.contains("deleted, inserted or reordered"),
        "{problem}"
    );
}

async fn truncating_the_tail_is_detected_against_a_checkpoint(b: &Backend) {
    let s = b.open().await;
    let key = mk_key();
    let trail = mk_trail(&s, &key);
    append(&s, 3).await;
    let early = trail
        .checkpoint(Some("carol"), "test", Timestamp::now())
        .await
        .unwrap();
    assert_eq!(
        (
            early.record.id.as_str(),
            early.record.checkpoint_records,
            early.created
        ),
        ("4", Some(3), true)
    );
    append(&s, 2).await;
    let late = trail
        .checkpoint(None, "test", Timestamp::now())
        .await
        .unwrap();
    assert_eq!(
        (late.record.id.as_str(), late.record.checkpoint_records),
        ("7", Some(6))
    );
    append(&s, 1).await;
    let intact = trail.verify(None).await.unwrap();
    assert!(intact.ok, "{intact:?}");
    assert_eq!(intact.checkpoint.unwrap().id.as_deref(), Some("7"));

    b.cut_audit_after_5().await;

    let report = trail.verify(None).await.unwrap();
    assert!(!report.ok, "the replica remembers checkpoint 7: {report:?}");
    assert_eq!(report.first_bad_id.as_deref(), Some("6"), "{report:?}");
    assert!(report.problem.unwrap().contains("cut off the tail"));
    let refused = trail.checkpoint(None, "test", Timestamp::now()).await;
    assert!(
        refused.is_err(),
        "no checkpoint blesses a cut trail: {refused:?}"
    );

    // A restarted replica remembers nothing, and the cut chain is a valid chain...
    let fresh = mk_trail(&b.open().await, &key);
    let report = fresh.verify(None).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checkpoint.unwrap().id.as_deref(), Some("4"));
    // ...but the checkpoint the auditor kept shows what is missing.
    let kept = late.record.checkpoint.as_deref();
    let report = fresh.verify(kept).await.unwrap();
    assert!(!report.ok, "{report:?}");
    assert_eq!(report.first_bad_id.as_deref(), Some("6"), "{report:?}");
    assert_eq!(report.records, 5);
}

async fn racing_checkpoints_from_two_instances_append_one(b: &Backend) {
    let key = mk_key();
    let replicas = [b.open().await, b.open().await];
    let trails = [mk_trail(&replicas[0], &key), mk_trail(&replicas[1], &key)];
    for round in 0..4 {
        append(&replicas[round % 2], 3).await;
        let now = Timestamp::now();
        let (one, two, other) = tokio::join!(
            trails[0].checkpoint(None, "race", now),
            trails[1].checkpoint(None, "race", now),
            replicas[1].audit.append(mk_record(1, now)),
        );
        other.unwrap();
        let (one, two) = (one.unwrap(), two.unwrap());
        assert!(one.created || two.created, "round {round}: {one:?} {two:?}");
    }
    let filter = AuditFilter {
        event: Some(AuditEvent::Checkpoint),
        limit: Some(1000),
        ..AuditFilter::default()
    };
    let checkpoints = replicas[0].audit.query(&filter).await.unwrap().items;
    let ids: Vec<u64> = checkpoints.iter().map(|r| r.id.parse().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] - w[1] > 1),
        "never two checkpoints in a row: {ids:?}"
    );
    for trail in &trails {
        let report = trail.verify(None).await.unwrap();
        assert!(report.ok, "{report:?}");
    }
}
