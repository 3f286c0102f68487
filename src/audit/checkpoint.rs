//! Signed checkpoints, pure apart from the signature math: a checkpoint is a
//! compact JWS (`alg: EdDSA`, `typ: rollgate-checkpoint+jwt`, `kid` as on
//! grants) over `{iss, records, head, iat}`, signed with the grant signing
//! key. It attests that the chain held `records` records, the last with hash
//! `head`. The checkpoint is then appended to the chain itself as a
//! CHECKPOINT record (`checkpoint`, `checkpointRecords`, `checkpointHead`),
//! so it is chained, exported and shipped like any record; whoever holds a
//! checkpoint can later tell whether records were cut off the tail.
//!
//! The `typ` header keeps the two kinds of token apart: a checkpoint never
//! passes as a grant (the grant verifier wants `rollgate-grant+jwt`) and a
//! grant never passes as a checkpoint. [`AuditTrail`](super::AuditTrail)
//! makes and checks them against a store.

use jsonwebtoken::Validation;
use serde::{Deserialize, Serialize};

use crate::grants::{KeySet, SigningKey, jws};

/// The JWT `typ` header every checkpoint carries.
pub const CHECKPOINT_TYP: &str = "rollgate-checkpoint+jwt";

/// What a checkpoint attests. Every field is required when decoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointClaims {
    pub iss: String,
    /// How many records the chain held.
    pub records: u64,
    /// The hash of the last of them (the genesis hash when there were none).
    pub head: String,
    /// Unix seconds.
    pub iat: i64,
}

/// Where a checkpoint the verifier checks against came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointSource {
    /// Supplied by the auditor (`?checkpoint=`, `--checkpoint FILE`).
    Supplied,
    /// The latest checkpoint this process wrote or saw, kept in memory.
    Memory,
    /// The newest CHECKPOINT record of the trail itself (attests nothing
    /// about records cut off after it).
    Trail,
}

/// A checkpoint whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub claims: CheckpointClaims,
    pub jws: String,
    /// Id and hash of the CHECKPOINT record carrying it, when known: then
    /// that record must be in the chain too, right after what it attests.
    pub record: Option<(String, String)>,
    pub source: CheckpointSource,
}

impl Checkpoint {
    /// Records the chain must hold at least: those attested, plus the
    /// CHECKPOINT record itself when it is known.
    pub fn covers(&self) -> u64 {
        // `records` is whatever the signed claims say; never overflow on it.
        self.claims
            .records
            .saturating_add(u64::from(self.record.is_some()))
    }

    /// Names it for a person: "the checkpoint you supplied (issued …)".
    pub fn describe(&self) -> String {
        let issued = jiff::Timestamp::from_second(self.claims.iat)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| self.claims.iat.to_string());
        match (&self.source, &self.record) {
            (CheckpointSource::Supplied, _) => {
                format!("the checkpoint you supplied (issued {issued})")
            }
            (CheckpointSource::Memory, Some((id, _))) => {
                format!(
                    "checkpoint record {id}, which this rollgate wrote or saw (issued {issued})"
                )
            }
            (_, Some((id, _))) => format!("checkpoint record {id} (issued {issued})"),
            (_, None) => format!("the checkpoint issued {issued}"),
        }
    }
}

/// Why a checkpoint does not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointRejection {
    #[error("it is not a well-formed JWS")]
    Malformed,
    #[error("it is not signed with EdDSA")]
    WrongAlgorithm,
    #[error("its typ header is not {CHECKPOINT_TYP}")]
    WrongType,
    #[error("it is signed with a key this verifier does not know")]
    UnknownKeyId,
    #[error("its signature does not verify")]
    BadSignature,
    #[error("it is missing a claim or has a malformed one")]
    BadClaims,
    #[error("it was issued by {0:?}, not by this rollgate")]
    WrongIssuer(String),
    #[error("its record's checkpointRecords or checkpointHead differ from the signed claims")]
    RecordMismatch,
}

/// The checkpoint's words for a bad header or signature.
impl From<jws::Rejection> for CheckpointRejection {
    fn from(rejection: jws::Rejection) -> Self {
        match rejection {
            jws::Rejection::Malformed => Self::Malformed,
            jws::Rejection::WrongAlgorithm => Self::WrongAlgorithm,
            jws::Rejection::WrongType => Self::WrongType,
            jws::Rejection::UnknownKeyId => Self::UnknownKeyId,
            jws::Rejection::BadSignature => Self::BadSignature,
            jws::Rejection::BadClaims => Self::BadClaims,
        }
    }
}

/// Signs `claims` as a checkpoint with the grant signing key.
pub fn sign(
    key: &SigningKey,
    claims: &CheckpointClaims,
) -> Result<String, jsonwebtoken::errors::Error> {
    jws::sign(key, CHECKPOINT_TYP, claims)
}

/// Verifies checkpoints against a static [`KeySet`] (the signing key and the
/// old `verificationKeyFiles`, or a JWKS/PEM offline).
#[derive(Debug, Clone)]
pub struct CheckpointVerifier {
    keys: KeySet,
    issuer: Option<String>,
    validation: Validation,
}

impl CheckpointVerifier {
    /// `issuer`: the `iss` a checkpoint must carry (`grants.issuer`); `None`
    /// accepts any, as an offline verifier that knows only the keys does.
    pub fn new(keys: KeySet, issuer: Option<String>) -> Self {
        let validation = jws::validation(&["iss"]);
        Self {
            keys,
            issuer,
            validation,
        }
    }

    /// Checks `jws`: EdDSA, the checkpoint `typ`, a known `kid`, the
    /// signature, every claim, and the issuer when one is required.
    pub fn verify(&self, jws: &str) -> Result<CheckpointClaims, CheckpointRejection> {
        let claims: CheckpointClaims =
            jws::verify(jws, CHECKPOINT_TYP, &self.keys, &self.validation)?;
        if let Some(issuer) = &self.issuer
            && &claims.iss != issuer
        {
            return Err(CheckpointRejection::WrongIssuer(claims.iss));
        }
        Ok(claims)
    }

    /// Checks a CHECKPOINT record: its JWS verifies and attests exactly the
    /// `checkpointRecords` and `checkpointHead` the record shows.
    pub fn verify_record(
        &self,
        record: &super::AuditRecord,
    ) -> Result<CheckpointClaims, CheckpointRejection> {
        let jws = record
            .checkpoint
            .as_deref()
            .ok_or(CheckpointRejection::Malformed)?;
        let claims = self.verify(jws)?;
        if record.checkpoint_records != Some(claims.records)
            || record.checkpoint_head.as_deref() != Some(claims.head.as_str())
        {
            return Err(CheckpointRejection::RecordMismatch);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::GrantSettings;
    use crate::grants::verify::GrantIssuer;
    use crate::grants::{GrantRejection, GrantVerifier};

    fn mk_key() -> SigningKey {
        SigningKey::from_pem(crate::grants::keys::generate_pem().unwrap().as_bytes()).unwrap()
    }

    fn mk_claims() -> CheckpointClaims {
        CheckpointClaims {
            iss: "rollgate".into(),
            records: 41,
            head: "ab".repeat(32),
            iat: 1_800_000_000,
        }
    }

    #[test]
    fn a_signed_checkpoint_verifies_with_the_current_or_an_old_key() {
        let (old, current) = (mk_key(), mk_key());
        let mut keys = KeySet::new(&current);
        keys.insert(old.public);
        let verifier = CheckpointVerifier::new(keys, Some("rollgate".into()));
        for (name, key) in [("current", &current), ("old", &old)] {
            let jws = sign(key, &mk_claims()).unwrap();
            assert_eq!(verifier.verify(&jws), Ok(mk_claims()), "{name} key");
        }
    }

    /// Found while writing the `checkpoint` fuzz target: a checkpoint
    /// attesting `u64::MAX` records overflowed what it covers.
    #[test]
    fn a_checkpoint_of_the_most_records_covers_without_overflow() {
        let claims = CheckpointClaims {
            records: u64::MAX,
            ..mk_claims()
        };
        let checkpoint = Checkpoint {
            claims,
            jws: String::new(),
            record: Some(("7".into(), "ab".repeat(32))),
            source: CheckpointSource::Trail,
        };
        assert_eq!(checkpoint.covers(), u64::MAX);
        assert_eq!(
            checkpoint.describe(),
            "checkpoint record 7 (issued 2027-01-15T08:00:00Z)"
        );
    }

    #[test]
    fn forged_or_foreign_checkpoints_are_rejected() {
        let key = mk_key();
        let verifier = CheckpointVerifier::new(KeySet::new(&key), Some("rollgate".into()));
        let jws = sign(&key, &mk_claims()).unwrap();
        let mut parts: Vec<String> = jws.split('.').map(str::to_owned).collect();
        let mut tampered_claims = mk_claims();
        tampered_claims.records = 40;
        parts[1] = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_vec(&tampered_claims).unwrap(),
        );
        let edited = parts.join(".");
        let stranger = sign(&mk_key(), &mk_claims()).unwrap();
        let mut other_issuer = mk_claims();
        other_issuer.iss = "someone-else".into();
        let foreign = sign(&key, &other_issuer).unwrap();
        let cases = [
            ("edited claims", edited, CheckpointRejection::BadSignature),
            ("unknown key", stranger, CheckpointRejection::UnknownKeyId),
            (
                "other issuer",
                foreign,
                CheckpointRejection::WrongIssuer("someone-else".into()),
            ),
            ("garbage", "a.b".into(), CheckpointRejection::Malformed),
        ];
        for (name, jws, want) in cases {
            assert_eq!(verifier.verify(&jws), Err(want), "{name}");
        }
        let offline = CheckpointVerifier::new(KeySet::new(&key), None);
        assert!(
            offline.verify(&sign(&key, &other_issuer).unwrap()).is_ok(),
            "offline, without an issuer, any iss is accepted"
        );
    }

    #[test]
    fn a_checkpoint_never_passes_as_a_grant_nor_a_grant_as_a_checkpoint() {
        let key = mk_key();
        let settings = GrantSettings::default();
        let grants = GrantVerifier::new(KeySet::new(&key), &settings);
        let checkpoints = CheckpointVerifier::new(KeySet::new(&key), None);
        let now = 1_800_000_000;

        let checkpoint = sign(&key, &mk_claims()).unwrap();
        assert_eq!(
            grants.verify_token(&checkpoint, now).unwrap_err(),
            GrantRejection::WrongType
        );

        let issuer = GrantIssuer::new(key.clone(), &settings);
        let claims = issuer.claims(
            "alice",
            "production",
            "web",
            "1",
            "RG-000001",
            "any",
            "j".into(),
            now,
        );
        let grant = issuer.sign(&claims).unwrap();
        assert!(grants.verify_token(&grant, now).is_ok());
        assert_eq!(
            checkpoints.verify(&grant).unwrap_err(),
            CheckpointRejection::WrongType
        );
    }
}
