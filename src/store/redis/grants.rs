//! [`GrantStore`] on Redis: each grant's JSON expires with the grant, and
//! sorted sets of jtis scored by expiry index it by subject (the webhook's
//! one-round-trip lookup), namespace and user; a revocation removes the body
//! and every index entry in one script.

use async_trait::async_trait;

use super::{GRANT_PREFIX, GRANTS, GRANTS_EXPIRING, GRANTS_META, RedisStore, eval, scripts};
use crate::error::Error;
use crate::grants::{GrantFilter, GrantStore, StoredGrant};

fn grant_key(jti: &str) -> String {
    format!("{GRANT_PREFIX}{jti}")
}

fn subject_key(user: &str, namespace: &str, application: &str) -> String {
    // Namespaces and application names cannot contain '/', so the user
    // (which can hold anything) goes last and the key is unambiguous.
    format!("{GRANTS}:sub:{namespace}/{application}/{user}")
}

fn namespace_key(namespace: &str) -> String {
    format!("{GRANTS}:ns:{namespace}")
}

fn user_key(user: &str) -> String {
    format!("{GRANTS}:user:{user}")
}

/// The body key of `grant`, every index holding it, then the expiry index
/// and the meta hash (the scripts rely on that order).
fn grant_keys(grant: &StoredGrant) -> [String; 7] {
    [
        grant_key(&grant.jti),
        subject_key(&grant.user, &grant.namespace, &grant.application),
        namespace_key(&grant.namespace),
        user_key(&grant.user),
        GRANTS.to_owned(),
        GRANTS_EXPIRING.to_owned(),
        GRANTS_META.to_owned(),
    ]
}

fn key_refs(keys: &[String]) -> Vec<&str> {
    keys.iter().map(String::as_str).collect()
}

#[async_trait]
impl GrantStore for RedisStore {
    async fn put_grant(&self, grant: &StoredGrant) -> Result<(), Error> {
        let keys = grant_keys(grant);
        let mut cmd = eval(&scripts::PUT_GRANT, &key_refs(&keys));
        let meta = StoredGrant {
            token: String::new(),
            ..grant.clone()
        };
        cmd.arg(&grant.jti)
            .arg(grant.expires_at)
            .arg(serde_json::to_string(grant)?)
            .arg(jiff::Timestamp::now().as_second())
            .arg(serde_json::to_string(&meta)?);
        self.write::<i64>(&scripts::PUT_GRANT, cmd).await?;
        Ok(())
    }

    async fn find_grants(
        &self,
        user: &str,
        namespace: &str,
        application: &str,
        now: i64,
    ) -> Result<Vec<StoredGrant>, Error> {
        let mut cmd = eval(
            &scripts::LIST_GRANTS,
            &[&subject_key(user, namespace, application)],
        );
        cmd.arg(now).arg(GRANT_PREFIX).arg(8);
        let bodies: Vec<String> = self.read(&scripts::LIST_GRANTS, cmd).await?;
        let mut grants = Vec::with_capacity(bodies.len());
        for body in bodies {
            let g: StoredGrant = serde_json::from_str(&body)?;
            if g.expires_at > now
                && g.user == user
                && g.namespace == namespace
                && g.application == application
            {
                grants.push(g);
            }
        }
        Ok(grants)
    }

    async fn grant_by_jti(&self, jti: &str, now: i64) -> Result<Option<StoredGrant>, Error> {
        let body: Option<String> = self.command(redis::cmd("GET").arg(grant_key(jti))).await?;
        let grant = body
            .map(|b| serde_json::from_str::<StoredGrant>(&b))
            .transpose()?;
        Ok(grant.filter(|g| g.expires_at > now && g.jti == jti))
    }

    async fn list_grants(&self, filter: &GrantFilter, now: i64) -> Result<Vec<StoredGrant>, Error> {
        // The narrowest index answers; the other filter is applied here.
        let index = match (&filter.namespace, &filter.user) {
            (Some(ns), _) => namespace_key(ns),
            (None, Some(user)) => user_key(user),
            (None, None) => GRANTS.to_owned(),
        };
        let mut cmd = eval(&scripts::LIST_GRANTS, &[&index]);
        cmd.arg(now).arg(GRANT_PREFIX).arg(0);
        let bodies: Vec<String> = self.read(&scripts::LIST_GRANTS, cmd).await?;
        let mut out = Vec::with_capacity(bodies.len());
        for body in bodies {
            let grant: StoredGrant = serde_json::from_str(&body)?;
            let wanted = grant.expires_at > now
                && filter
                    .namespace
                    .as_ref()
                    .is_none_or(|ns| *ns == grant.namespace)
                && filter.user.as_ref().is_none_or(|u| *u == grant.user);
            if wanted {
                out.push(grant);
            }
        }
        Ok(out)
    }

    async fn take_expired_grants(&self, now: i64) -> Result<Vec<StoredGrant>, Error> {
        let mut cmd = eval(&scripts::TAKE_EXPIRED, &[GRANTS_EXPIRING, GRANTS_META]);
        cmd.arg(now).arg(500);
        let metas: Vec<String> = self.write(&scripts::TAKE_EXPIRED, cmd).await?;
        metas.iter().map(|m| Ok(serde_json::from_str(m)?)).collect()
    }

    async fn revoke_grant(&self, jti: &str) -> Result<bool, Error> {
        let body: Option<String> = self.command(redis::cmd("GET").arg(grant_key(jti))).await?;
        let Some(body) = body else {
            return Ok(false);
        };
        let grant: StoredGrant = serde_json::from_str(&body)?;
        let keys = grant_keys(&grant);
        let mut cmd = eval(&scripts::REVOKE_GRANT, &key_refs(&keys));
        cmd.arg(jti);
        let existed: i64 = self.write(&scripts::REVOKE_GRANT, cmd).await?;
        Ok(existed == 1)
    }
}
