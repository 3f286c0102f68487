//! Grant verification: every check of DESIGN.md "Grant (JWT claims)", done
//! on every use. Pure apart from the signature math: `now` is an argument.
//!
//! jsonwebtoken's own time checks read the system clock and default to a
//! 60 s leeway, so they are switched off here and done against `now` with the
//! configured leeway; `typ`, `ns`, `app` and `jti` are checked by hand too.

use std::time::Duration;

use jsonwebtoken::Validation;

use super::{GRANT_TYP, GrantClaims, GrantSettings, KeySet, SigningKey, jws};

/// Why a presented grant does not count. Each variant becomes a denial message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantRejection {
    #[error("the grant is not a well-formed JWT")]
    Malformed,
    #[error("the grant is not signed with EdDSA")]
    WrongAlgorithm,
    #[error("the grant's typ header is not {GRANT_TYP}")]
    WrongType,
    #[error("the grant is signed with an unknown key")]
    UnknownKeyId,
    #[error("the grant's signature does not verify")]
    BadSignature,
    #[error("the grant is missing a claim or has a malformed one")]
    BadClaims,
    #[error("the grant was issued by {0:?}, not by this rollgate")]
    WrongIssuer(String),
    #[error("the grant is meant for {0:?}, not for this webhook")]
    WrongAudience(String),
    #[error("the grant is not valid yet")]
    NotYetValid,
    #[error("the grant expired {0} s ago")]
    Expired(i64),
    #[error("the grant's lifetime exceeds the configured maximum")]
    LifetimeTooLong,
    #[error("the grant belongs to {0:?}")]
    WrongUser(String),
    #[error("the grant is for namespace {0:?}")]
    WrongNamespace(String),
    #[error("the grant is for application {0:?}")]
    WrongApplication(String),
    #[error("the grant was revoked or is no longer stored")]
    Revoked,
    #[error("the grant's ticket does not allow image {0:?}: it pins other images")]
    ImageNotPinned(String),
    #[error(
        "the grant's ticket pins images, and a change under pinned images may not remove container {0:?}"
    )]
    RemovesContainer(String),
    #[error("the grant is not the one rollgate's redeploy named")]
    NotTheNamedGrant,
    /// The grant's ticket allows only this action (`restart` or `image`).
    #[error("the grant's ticket allows only {}", action_phrase(.0))]
    ActionNotAllowed(String),
}

/// The grant's words for a bad header or signature.
impl From<jws::Rejection> for GrantRejection {
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

fn action_phrase(action: &str) -> String {
    match action {
        "restart" => "a restart".into(),
        "image" => "an image change".into(),
        "debug" => "a debug container".into(),
        other => format!("{other} changes"),
    }
}

/// What the grant must match: the request's user, namespace and application.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub user: &'a str,
    pub namespace: &'a str,
    pub application: &'a str,
    /// The ticket action the change needs: `restart`, `image` or `any`.
    pub action: &'a str,
    /// The image references the change sets (checked against a pinned list).
    pub new_images: &'a [&'a str],
    /// The containers the change removes (none may, under pinned images).
    pub removed_containers: &'a [&'a str],
}

/// Verifies grants against a static [`KeySet`] and the configured claims.
#[derive(Debug, Clone)]
pub struct GrantVerifier {
    keys: KeySet,
    issuer: String,
    audience: String,
    leeway: i64,
    max_lifetime: i64,
    validation: Validation,
}

impl GrantVerifier {
    pub fn new(keys: KeySet, settings: &GrantSettings) -> Self {
        // `iss` and `aud` are compared below, where the rejection can name
        // the value found; time is checked below against the caller's `now`.
        let validation = jws::validation(&["iss", "aud", "sub", "exp", "nbf"]);
        Self {
            keys,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway: secs(settings.leeway),
            max_lifetime: secs(settings.ttl),
            validation,
        }
    }

    /// The key set grants are checked against (published as JWKS).
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// Checks `token` completely: header, signature with a known `kid`,
    /// every claim, the time window with leeway, the lifetime, and that it
    /// names `expected`'s user, namespace and application. `now` is Unix seconds.
    /// (Whether it is still in the store is the caller's lookup.)
    pub fn verify(
        &self,
        token: &str,
        expected: Expected<'_>,
        now: i64,
    ) -> Result<GrantClaims, GrantRejection> {
        let claims = self.verify_token(token, now)?;
        if claims.sub != expected.user {
            return Err(GrantRejection::WrongUser(claims.sub));
        }
        if claims.ns != expected.namespace {
            return Err(GrantRejection::WrongNamespace(claims.ns));
        }
        if claims.app != expected.application {
            return Err(GrantRejection::WrongApplication(claims.app));
        }
        if !(claims.action == "any" || claims.action == expected.action) {
            return Err(GrantRejection::ActionNotAllowed(claims.action));
        }
        if !claims.images.is_empty() {
            let unpinned = expected
                .new_images
                .iter()
                .find(|image| !claims.images.iter().any(|p| p == *image));
            if let Some(image) = unpinned {
                return Err(GrantRejection::ImageNotPinned((*image).to_owned()));
            }
            // Pins say which images may run; removing a container (an auth
            // sidecar, say) changes what runs without setting any image.
            if let Some(container) = expected.removed_containers.first() {
                return Err(GrantRejection::RemovesContainer((*container).to_owned()));
            }
        }
        Ok(claims)
    }

    /// Checks signature, header and time claims, without matching a request
    /// (used by the redeploy API, which learns namespace and application from the grant).
    pub fn verify_token(&self, token: &str, now: i64) -> Result<GrantClaims, GrantRejection> {
        let claims: GrantClaims = jws::verify(token, GRANT_TYP, &self.keys, &self.validation)?;
        if claims.iss != self.issuer {
            return Err(GrantRejection::WrongIssuer(claims.iss));
        }
        if claims.aud != self.audience {
            return Err(GrantRejection::WrongAudience(claims.aud));
        }
        if claims.jti.is_empty() || claims.tid.is_empty() || claims.tno.is_empty() {
            return Err(GrantRejection::BadClaims);
        }
        if now + self.leeway < claims.nbf {
            return Err(GrantRejection::NotYetValid);
        }
        // Claims are any i64: saturate rather than overflow (a panic with
        // overflow checks, a wrapped lifetime that passes without them).
        if now - self.leeway >= claims.exp {
            return Err(GrantRejection::Expired(now.saturating_sub(claims.exp)));
        }
        if claims.exp < claims.iat || claims.exp.saturating_sub(claims.iat) > self.max_lifetime {
            return Err(GrantRejection::LifetimeTooLong);
        }
        Ok(claims)
    }
}

/// Signs grants with rollgate's key.
#[derive(Debug, Clone)]
pub struct GrantIssuer {
    key: SigningKey,
    issuer: String,
    audience: String,
    ttl: i64,
}

impl GrantIssuer {
    pub fn new(key: SigningKey, settings: &GrantSettings) -> Self {
        Self {
            key,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            ttl: secs(settings.ttl),
        }
    }

    /// Claims for a grant to `user` on `namespace`/`application`, valid from `now`.
    #[allow(clippy::too_many_arguments)]
    pub fn claims(
        &self,
        user: &str,
        namespace: &str,
        application: &str,
        ticket_id: &str,
        ticket_number: &str,
        action: &str,
        jti: String,
        now: i64,
    ) -> GrantClaims {
        GrantClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user.to_owned(),
            ns: namespace.to_owned(),
            app: application.to_owned(),
            tid: ticket_id.to_owned(),
            tno: ticket_number.to_owned(),
            jti,
            iat: now,
            nbf: now,
            exp: now + self.ttl,
            action: action.to_owned(),
            images: Vec::new(),
            max_uses: None,
        }
    }

    /// Signs `claims` as a grant JWT.
    pub fn sign(&self, claims: &GrantClaims) -> Result<String, jsonwebtoken::errors::Error> {
        jws::sign(&self.key, GRANT_TYP, claims)
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
