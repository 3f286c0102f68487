use super::*;
use crate::audit::AuditEvent;
use crate::audit::checkpoint::{self, CheckpointClaims};
use crate::grants::{KeySet, SigningKey};

fn mk_chain(n: usize) -> Vec<AuditRecord> {
    let mut prev = GENESIS_HASH.to_owned();
    (1..=n)
        .map(|i| {
            let mut r = AuditRecord {
                id: i.to_string(),
                event: Some(AuditEvent::Admission),
                username: Some(format!("user{i}")),
                timestamp: "2026-01-01T00:00:00Z".into(),
                ..Default::default()
            };
            link(&mut r, &prev);
            prev = r.hash.clone();
            r
        })
        .collect()
}

#[test]
fn an_untouched_chain_verifies() {
    let chain = mk_chain(5);
    let report = verify(&chain);
    assert!(report.ok);
    assert_eq!(report.records, 5);
    assert_eq!(report.head, chain[4].hash);
}

#[test]
fn edits_deletions_and_reorderings_name_the_first_bad_record() {
    let mut edited = mk_chain(5);
    edited[2].username = Some("mallory".into());
    assert_eq!(verify(&edited).first_bad_id.as_deref(), Some("3"), "edited");

    let mut deleted = mk_chain(5);
    deleted.remove(1);
    assert_eq!(
        verify(&deleted).first_bad_id.as_deref(),
        Some("3"),
        "deleted"
    );

    let mut reordered = mk_chain(5);
    reordered.swap(1, 2);
    assert_eq!(
        verify(&reordered).first_bad_id.as_deref(),
        Some("3"),
        "reordered"
    );
}

fn mk_key() -> SigningKey {
    SigningKey::from_pem(crate::grants::keys::generate_pem().unwrap().as_bytes()).unwrap()
}

/// Appends to `chain` a CHECKPOINT record of it signed with `key`.
fn push_checkpoint(chain: &mut Vec<AuditRecord>, key: &SigningKey) -> Checkpoint {
    let head = chain
        .last()
        .map_or(GENESIS_HASH.to_owned(), |r| r.hash.clone());
    let claims = CheckpointClaims {
        iss: "rollgate".into(),
        records: chain.len() as u64,
        head: head.clone(),
        iat: 1_800_000_000,
    };
    let jws = checkpoint::sign(key, &claims).unwrap();
    let mut r = AuditRecord {
        id: (chain.len() + 1).to_string(),
        event: Some(AuditEvent::Checkpoint),
        timestamp: "2026-01-01T00:00:00Z".into(),
        checkpoint: Some(jws.clone()),
        checkpoint_records: Some(claims.records),
        checkpoint_head: Some(head.clone()),
        ..Default::default()
    };
    link(&mut r, &head);
    let held = Checkpoint {
        claims,
        jws,
        record: Some((r.id.clone(), r.hash.clone())),
        source: CheckpointSource::Memory,
    };
    chain.push(r);
    held
}

/// Appends `n` admission records to `chain`.
fn extend(chain: &mut Vec<AuditRecord>, n: usize) {
    for _ in 0..n {
        let i = chain.len() + 1;
        let mut r = AuditRecord {
            id: i.to_string(),
            event: Some(AuditEvent::Admission),
            username: Some(format!("user{i}")),
            timestamp: "2026-01-01T00:00:00Z".into(),
            ..Default::default()
        };
        link(
            &mut r,
            &chain
                .last()
                .map_or(GENESIS_HASH.to_owned(), |r| r.hash.clone()),
        );
        chain.push(r);
    }
}

fn walk_with(chain: &[AuditRecord], key: &SigningKey, held: Vec<Checkpoint>) -> VerifyReport {
    let verifier = CheckpointVerifier::new(KeySet::new(key), Some("rollgate".into()));
    let mut walker = ChainWalker::with_checkpoints(verifier, held);
    chain.iter().for_each(|r| walker.push(r));
    walker.finish()
}

#[test]
fn checkpoints_in_the_chain_verify_and_name_the_latest() {
    let key = mk_key();
    let mut chain = mk_chain(3);
    push_checkpoint(&mut chain, &key);
    extend(&mut chain, 2);
    push_checkpoint(&mut chain, &key);
    let report = walk_with(&chain, &key, vec![]);
    assert!(report.ok, "{report:?}");
    let summary = report.checkpoint.expect("the trail's newest checkpoint");
    assert_eq!(
        (summary.id.as_deref(), summary.records, summary.source),
        (Some("7"), 6, CheckpointSource::Trail)
    );
    assert_eq!(summary.head, chain[5].hash);
}

#[test]
fn a_cut_off_tail_is_detected_against_a_held_checkpoint() {
    let key = mk_key();
    let mut chain = mk_chain(3);
    push_checkpoint(&mut chain, &key);
    extend(&mut chain, 2);
    let held = push_checkpoint(&mut chain, &key);
    extend(&mut chain, 1);

    let cases = [
        ("tail after the checkpoint cut", 7, true),
        ("the checkpoint record itself cut", 6, false),
        ("checkpoint and a record before it cut", 5, false),
    ];
    for (name, keep, ok) in cases {
        let report = walk_with(&chain[..keep], &key, vec![held.clone()]);
        assert_eq!(report.ok, ok, "{name}: {report:?}");
        if !ok {
            let missing = (keep + 1).to_string();
            assert_eq!(
                report.first_bad_id.as_deref(),
                Some(missing.as_str()),
                "{name}"
            );
            let problem = report.problem.unwrap();
            assert!(problem.contains("cut off the tail"), "{name}: {problem}");
        }
        assert_eq!(
            report.checkpoint.unwrap().source,
            CheckpointSource::Memory,
            "{name}"
        );
    }
    // Without a held checkpoint a truncated chain is still a valid chain.
    assert!(walk_with(&chain[..5], &key, vec![]).ok);
}

#[test]
fn a_rewritten_chain_is_detected_against_a_held_checkpoint() {
    let key = mk_key();
    let mut chain = mk_chain(3);
    let held = push_checkpoint(&mut chain, &key);
    // Record 3 rewritten, the hashes after it recomputed, the checkpoint dropped.
    let mut forged = chain[..3].to_vec();
    extend(&mut forged, 2);
    forged[2].username = Some("mallory".into());
    for i in 2..forged.len() {
        let prev = forged[i - 1].hash.clone();
        link(&mut forged[i], &prev);
    }
    assert!(
        super::verify(&forged).ok,
        "a consistent forgery is a valid chain"
    );
    let report = walk_with(&forged, &key, vec![held]);
    assert!(!report.ok, "{report:?}");
    assert_eq!(report.first_bad_id.as_deref(), Some("3"), "{report:?}");
}

#[test]
fn bad_checkpoint_records_break_the_chain() {
    let key = mk_key();
    let stranger = mk_key();
    type Make = fn(&mut Vec<AuditRecord>, &SigningKey, &SigningKey);
    let cases: [(&str, Make); 3] = [
        ("signed with an unknown key", |c, _, stranger| {
            push_checkpoint(c, stranger);
        }),
        ("attests too few records", |c, key, _| {
            push_checkpoint(c, key);
            let r = c.last_mut().unwrap();
            r.checkpoint_records = Some(2);
            let prev = r.prev_hash.clone();
            link(r, &prev);
        }),
        ("fields differ from the signed claims", |c, key, _| {
            let other = chain_jws(key, 2);
            push_checkpoint(c, key);
            let r = c.last_mut().unwrap();
            r.checkpoint = Some(other);
            let prev = r.prev_hash.clone();
            link(r, &prev);
        }),
    ];
    for (name, make) in cases {
        let mut chain = mk_chain(3);
        make(&mut chain, &key, &stranger);
        let report = walk_with(&chain, &key, vec![]);
        assert_eq!(
            report.first_bad_id.as_deref(),
            Some("4"),
            "{name}: {report:?}"
        );
        assert!(
            report.problem.unwrap().contains("checkpoint record 4"),
            "{name}"
        );
    }
}

fn chain_jws(key: &SigningKey, records: u64) -> String {
    let claims = CheckpointClaims {
        iss: "rollgate".into(),
        records,
        head: GENESIS_HASH.into(),
        iat: 0,
    };
    checkpoint::sign(key, &claims).unwrap()
}

#[test]
fn an_export_walks_line_by_line() {
    let key = mk_key();
    let mut chain = mk_chain(3);
    push_checkpoint(&mut chain, &key);
    let mut text = String::new();
    for r in &chain {
        text.push_str(&serde_json::to_string(r).unwrap());
        text.push('\n');
    }
    let verifier = CheckpointVerifier::new(KeySet::new(&key), None);
    let walk = |text: &str| {
        let walker = ChainWalker::with_checkpoints(verifier.clone(), vec![]);
        walk_lines(text.as_bytes(), walker).unwrap().finish()
    };
    let report = walk(&text);
    assert!(report.ok && report.records == 4, "{report:?}");
    let broken = text.replacen("user2", "mallory", 1);
    assert_eq!(walk(&broken).first_bad_id.as_deref(), Some("2"));
    let garbled = text.replacen("{", "[", 1);
    let report = walk(&garbled);
    assert_eq!(
        report.first_bad_id.as_deref(),
        Some("on line 1"),
        "{report:?}"
    );
}

#[test]
fn canonical_form_sorts_keys_like_python_json_dumps() {
    let mut out = Vec::new();
    write_canonical(
        &serde_json::json!({"b": 1, "a": {"d": [1, "x"], "c": null}}),
        &mut out,
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        r#"{"a":{"c":null,"d":[1,"x"]},"b":1}"#
    );
}
