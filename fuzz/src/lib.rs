//! What the fuzz targets share: a fixed signing key (so a crash reproduces
//! exactly), the verifiers built on it, and signing of fuzzer-chosen JWS
//! parts, so the targets reach the claim checks behind the signature.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rollgate::config::GrantSettings;
use rollgate::grants::{GrantVerifier, KeySet, SigningKey};

/// A fixed Ed25519 key made for fuzzing only; it signs nothing real.
const FUZZ_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIAWCgobYaVc2QjFM+1GGR+GzrlM2+0Nvro2YXGKhzZkz
-----END PRIVATE KEY-----
";

/// "Now" of every target: 2027-01-15T08:00:00Z.
pub const NOW: i64 = 1_800_000_000;

pub fn signing_key() -> SigningKey {
    SigningKey::from_pem(FUZZ_KEY_PEM.as_bytes()).expect("the fuzz key is an Ed25519 PKCS#8 PEM")
}

pub fn grant_verifier() -> GrantVerifier {
    GrantVerifier::new(KeySet::new(&signing_key()), &GrantSettings::default())
}

/// Turns fuzz input into a compact JWS. A first byte of 0 takes the rest
/// as the token itself; otherwise the rest is `header JSON` NUL `payload
/// JSON`, signed with the fuzz key, so a well-formed signature is reached
/// and the fuzzer explores the header and claim checks. `kid: "$KID"` in
/// the header is replaced by the fuzz key's thumbprint.
pub fn jws_from(data: &[u8]) -> Option<String> {
    let (&mode, rest) = data.split_first()?;
    if mode == 0 {
        return std::str::from_utf8(rest).ok().map(str::to_owned);
    }
    let split = rest.iter().position(|&b| b == 0)?;
    let (header, payload) = (&rest[..split], &rest[split + 1..]);
    let key = signing_key();
    let header = String::from_utf8_lossy(header).replace("$KID", &key.kid);
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.as_bytes()),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        key.encoding_key(),
        jsonwebtoken::Algorithm::EdDSA,
    )
    .ok()?;
    Some(format!("{signing_input}.{signature}"))
}
