//! The Redis store's namespace and application indexes answer queries
//! exactly, also for records an older rollgate appended without them (the
//! first query that needs them indexes them). On SQLite the same behaviour
//! holds through its SQL indexes.

use jiff::Timestamp;
use rollgate::audit::chain::{self, GENESIS_HASH};
use rollgate::audit::{AuditFilter, AuditRecord};

use super::{Backend, mk_record, record_ids};

contract!(queries_by_namespace_and_application_find_records_appended_without_indexes);

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
            .arg("{rollgate}:audit:indexed")
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
