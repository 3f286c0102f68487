//! [`OperationLeases`] on Redis: the open operations are a sorted set the
//! audit append script maintains; a lease is a key holding the follower's
//! name that expires unless renewed. Leases are not made durable: losing
//! one in a crash only lets another replica take the operation over.

use std::time::Duration;

use async_trait::async_trait;

use super::{OPEN_OPERATIONS, OPERATION_LEASE_PREFIX, RedisStore, eval, scripts};
use crate::error::Error;
use crate::rollout::OperationLeases;

fn lease_key(operation_id: &str) -> String {
    format!("{OPERATION_LEASE_PREFIX}{operation_id}")
}

#[async_trait]
impl OperationLeases for RedisStore {
    async fn open_operations(&self, limit: usize) -> Result<Vec<String>, Error> {
        let last = isize::try_from(limit)
            .unwrap_or(isize::MAX)
            .saturating_sub(1);
        self.command(redis::cmd("ZRANGE").arg(OPEN_OPERATIONS).arg(0).arg(last))
            .await
    }

    async fn lease_operation(
        &self,
        operation_id: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, Error> {
        let key = lease_key(operation_id);
        let mut cmd = eval(&scripts::LEASE_OPERATION, &[&key]);
        cmd.arg(holder)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
        let taken: i64 = self.read(&scripts::LEASE_OPERATION, cmd).await?;
        Ok(taken == 1)
    }

    async fn release_operation(&self, operation_id: &str, holder: &str) -> Result<(), Error> {
        let key = lease_key(operation_id);
        let mut cmd = eval(&scripts::RELEASE_OPERATION, &[&key]);
        cmd.arg(holder);
        let _: i64 = self.read(&scripts::RELEASE_OPERATION, cmd).await?;
        Ok(())
    }
}
