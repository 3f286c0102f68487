//! Checkpoint JWS verification (`GET /v1/audit/verify?checkpoint=`): any
//! JWS is accepted or rejected with a reason, never a panic, and what an
//! accepted one says (how many records it covers, its description) is
//! computed without a panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollgate::audit::checkpoint::CheckpointSource;
use rollgate::audit::{Checkpoint, CheckpointVerifier};
use rollgate::grants::KeySet;
use rollgate_fuzz::{jws_from, signing_key};
use std::sync::LazyLock;

static VERIFIERS: LazyLock<[CheckpointVerifier; 2]> = LazyLock::new(|| {
    let keys = KeySet::new(&signing_key());
    [
        CheckpointVerifier::new(keys.clone(), Some("rollgate".into())),
        CheckpointVerifier::new(keys, None),
    ]
});

fuzz_target!(|data: &[u8]| {
    let Some(jws) = jws_from(data) else { return };
    for verifier in VERIFIERS.iter() {
        match verifier.verify(&jws) {
            Ok(claims) => {
                for record in [None, Some(("1".to_owned(), claims.head.clone()))] {
                    let checkpoint = Checkpoint {
                        claims: claims.clone(),
                        jws: jws.clone(),
                        record,
                        source: CheckpointSource::Memory,
                    };
                    let _ = (checkpoint.covers(), checkpoint.describe());
                }
            }
            Err(rejection) => {
                let _ = rejection.to_string();
            }
        }
    }
});
