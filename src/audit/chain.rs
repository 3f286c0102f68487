//! The hash chain, pure: `hash = SHA-256(canonical JSON of the record without
//! its "hash" field)`, where the record includes `prevHash`, the previous
//! record's hash (64 zeros for the first). Canonical JSON is compact, with
//! object keys sorted, as `json.dumps(r, sort_keys=True, separators=(",",":"),
//! ensure_ascii=False)` writes it, so anyone can verify an export offline.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::AuditRecord;

/// `prevHash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Result of walking the chain (`GET /v1/audit/verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub ok: bool,
    pub records: u64,
    /// Hash of the last record (the genesis hash when empty).
    pub head: String,
    /// Id of the first record that breaks the chain.
    pub first_bad_id: Option<String>,
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

/// Incremental chain check over records in append order.
#[derive(Debug, Clone)]
pub struct ChainWalker {
    head: String,
    records: u64,
    first_bad_id: Option<String>,
}

impl Default for ChainWalker {
    fn default() -> Self {
        Self {
            head: GENESIS_HASH.to_owned(),
            records: 0,
            first_bad_id: None,
        }
    }
}

impl ChainWalker {
    /// Checks the next record: it must point at the previous hash and its own
    /// hash must match its content.
    pub fn push(&mut self, record: &AuditRecord) {
        self.records += 1;
        if self.first_bad_id.is_none()
            && (record.prev_hash != self.head || record_hash(record) != record.hash)
        {
            self.first_bad_id = Some(record.id.clone());
        }
        self.head = record.hash.clone();
    }

    pub fn finish(self) -> VerifyReport {
        VerifyReport {
            ok: self.first_bad_id.is_none(),
            records: self.records,
            head: self.head,
            first_bad_id: self.first_bad_id,
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
                write_scalar(&Value::String(key.clone()), out);
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

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    // serde_json writes scalars compactly and deterministically.
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditEvent;

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
}
