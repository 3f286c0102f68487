//! The compact JWS both of rollgate's signed tokens are: grants
//! ([`verify`](super::verify)) and audit checkpoints
//! (`audit::checkpoint`). One place signs them and checks their header and
//! signature, so the two kinds cannot drift apart; each caller maps a
//! [`Rejection`] to its own rejection type and message and checks its own
//! claims. Pure apart from the signature math.
//!
//! The header is trusted for nothing but choosing among the keys we hold:
//! `alg` must be EdDSA (no `none`, no HMAC keyed with a public key), `typ`
//! must name the kind of token (a checkpoint never passes as a grant), and
//! the key is looked up by `kid` in the [`KeySet`] alone; `jku`, `jwk` and
//! `x5u` are never followed.

use jsonwebtoken::{Algorithm, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{KeySet, SigningKey};

/// Why a token's header or signature does not count. Callers map each
/// variant to their own rejection, which carries the message people see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("not a well-formed JWS")]
    Malformed,
    #[error("not signed with EdDSA")]
    WrongAlgorithm,
    #[error("the typ header names another kind of token")]
    WrongType,
    #[error("signed with an unknown key")]
    UnknownKeyId,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("a claim is missing or malformed")]
    BadClaims,
}

/// The validation [`verify`] decodes with: EdDSA only, the `required`
/// claims present, and no time, audience or leeway checks, which the callers
/// do themselves against their own `now` (jsonwebtoken's would read the
/// system clock) so that a rejection can name the value found.
pub fn validation(required: &[&str]) -> Validation {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.algorithms = vec![Algorithm::EdDSA];
    validation.set_required_spec_claims(required);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    validation
}

/// Checks `token`'s header (EdDSA, `typ`, a `kid` found in `keys`), then its
/// signature, and decodes its claims as `C` under `validation` (made by
/// [`validation`]). The checks run in that order, so the first that fails
/// names the rejection.
pub fn verify<C: DeserializeOwned>(
    token: &str,
    typ: &str,
    keys: &KeySet,
    validation: &Validation,
) -> Result<C, Rejection> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Malformed)?;
    if header.alg != Algorithm::EdDSA {
        return Err(Rejection::WrongAlgorithm);
    }
    if header.typ.as_deref() != Some(typ) {
        return Err(Rejection::WrongType);
    }
    let key = header
        .kid
        .as_deref()
        .and_then(|kid| keys.get(kid))
        .ok_or(Rejection::UnknownKeyId)?;
    let data = jsonwebtoken::decode::<C>(token, key, validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidSignature => Rejection::BadSignature,
            ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
                Rejection::Malformed
            }
            _ => Rejection::BadClaims,
        }
    })?;
    Ok(data.claims)
}

/// Signs `claims` with `key` as a compact JWS of kind `typ`, with the key's `kid`.
pub fn sign(
    key: &SigningKey,
    typ: &str,
    claims: &impl Serialize,
) -> Result<String, jsonwebtoken::errors::Error> {
    let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
    header.typ = Some(typ.into());
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, key.encoding_key())
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    const TYP: &str = "rollgate-test+jwt";

    #[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct Claims {
        iss: String,
        n: u32,
    }

    fn mk_key() -> SigningKey {
        SigningKey::from_pem(super::super::keys::generate_pem().unwrap().as_bytes()).unwrap()
    }

    fn mk_claims() -> Claims {
        Claims {
            iss: "rollgate".into(),
            n: 7,
        }
    }

    fn mk_header(kid: &str) -> jsonwebtoken::Header {
        let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        header.typ = Some(TYP.into());
        header.kid = Some(kid.into());
        header
    }

    /// A token whose header is `header` as given, signed by nothing.
    fn mk_unsigned(header: serde_json::Value) -> String {
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&mk_claims()).unwrap())
        )
    }

    fn check(keys: &KeySet, token: &str) -> Result<Claims, Rejection> {
        verify(token, TYP, keys, &validation(&["iss"]))
    }

    #[test]
    fn a_token_signed_with_a_known_key_verifies_and_yields_its_claims() {
        let key = mk_key();
        let token = sign(&key, TYP, &mk_claims()).unwrap();
        assert_eq!(check(&KeySet::new(&key), &token), Ok(mk_claims()));
    }

    #[test]
    fn every_bad_header_or_signature_is_rejected_with_its_reason() {
        let key = mk_key();
        let keys = KeySet::new(&key);
        let attacker = mk_key();
        let token = sign(&key, TYP, &mk_claims()).unwrap();

        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(json!({"iss": "rollgate", "n": 8}).to_string());
        let edited = parts.join(".");

        // An attacker's own key, offered in the header to be trusted.
        let mut offered = mk_header(&attacker.kid);
        offered.jku = Some("https://attacker.example/jwks.json".into());
        offered.jwk = Some(
            serde_json::from_value(json!({
                "kty": "OKP", "crv": "Ed25519", "kid": attacker.kid,
                "x": URL_SAFE_NO_PAD.encode(attacker.public),
            }))
            .unwrap(),
        );
        let self_keyed =
            jsonwebtoken::encode(&offered, &mk_claims(), attacker.encoding_key()).unwrap();
        offered.kid = Some(key.kid.clone());
        let our_kid_their_jwk =
            jsonwebtoken::encode(&offered, &mk_claims(), attacker.encoding_key()).unwrap();

        let mut hs256 = mk_header(&key.kid);
        hs256.alg = Algorithm::HS256;
        let hmac_with_public_key = jsonwebtoken::encode(
            &hs256,
            &mk_claims(),
            &jsonwebtoken::EncodingKey::from_secret(&key.public),
        )
        .unwrap();

        let mut missing = serde_json::to_value(mk_claims()).unwrap();
        missing.as_object_mut().unwrap().remove("n");
        let missing_claim = sign(&key, TYP, &missing).unwrap();

        let cases = [
            ("garbage", "garbage".to_owned(), Rejection::Malformed),
            (
                "alg none",
                mk_unsigned(json!({"alg": "none", "typ": TYP, "kid": key.kid})),
                Rejection::Malformed,
            ),
            (
                "HS256 keyed with the public key",
                hmac_with_public_key,
                Rejection::WrongAlgorithm,
            ),
            (
                "another kind of token",
                sign(&key, "rollgate-other+jwt", &mk_claims()).unwrap(),
                Rejection::WrongType,
            ),
            (
                "no typ",
                jsonwebtoken::encode(
                    &jsonwebtoken::Header {
                        typ: None,
                        ..mk_header(&key.kid)
                    },
                    &mk_claims(),
                    key.encoding_key(),
                )
                .unwrap(),
                Rejection::WrongType,
            ),
            (
                "no kid",
                jsonwebtoken::encode(
                    &jsonwebtoken::Header {
                        kid: None,
                        ..mk_header(&key.kid)
                    },
                    &mk_claims(),
                    key.encoding_key(),
                )
                .unwrap(),
                Rejection::UnknownKeyId,
            ),
            (
                "unknown kid, key in jku/jwk",
                self_keyed,
                Rejection::UnknownKeyId,
            ),
            (
                "our kid, signed with the jwk's key",
                our_kid_their_jwk,
                Rejection::BadSignature,
            ),
            ("edited claims", edited, Rejection::BadSignature),
            ("a claim missing", missing_claim, Rejection::BadClaims),
        ];
        for (name, token, want) in cases {
            assert_eq!(check(&keys, &token), Err(want), "{name}");
        }
    }
}
