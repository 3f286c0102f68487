//! [`TicketStore`] on Redis: ids from `INCR`, each ticket a hash of its
//! status, revision and JSON body, indexed newest first overall and per
//! status; every change is a compare-and-set script on the stored revision.

use async_trait::async_trait;

use super::{BATCH, MAX_TICKETS, RedisStore, TICKET_PREFIX, TICKET_SEQ, TICKETS, eval, scripts};
use crate::error::Error;
use crate::tickets::{Ticket, TicketFilter, TicketStatus, TicketStore};

fn ticket_key(id: u64) -> String {
    format!("{TICKET_PREFIX}{id}")
}

/// Prefix of the per-status indexes: `{rollgate}:tickets:PENDING`, …
fn status_prefix() -> String {
    format!("{TICKETS}:")
}

fn status_key(status: TicketStatus) -> String {
    format!("{}{}", status_prefix(), status.as_str())
}

#[async_trait]
impl TicketStore for RedisStore {
    async fn create_ticket(
        &self,
        make: Box<dyn FnOnce(u64) -> Ticket + Send>,
    ) -> Result<Ticket, Error> {
        let id: u64 = self.command(redis::cmd("INCR").arg(TICKET_SEQ)).await?;
        let ticket = make(id);
        let mut cmd = eval(
            &scripts::CREATE_TICKET,
            &[&ticket_key(id), TICKETS, &status_key(ticket.status)],
        );
        cmd.arg(id)
            .arg(ticket.status.as_str())
            .arg(serde_json::to_string(&ticket)?)
            .arg(ticket.revision);
        self.write::<i64>(&scripts::CREATE_TICKET, cmd).await?;
        Ok(ticket)
    }

    async fn get_ticket(&self, id: &str) -> Result<Option<Ticket>, Error> {
        let Ok(id) = id.parse::<u64>() else {
            return Ok(None);
        };
        let body: Option<String> = self
            .command(redis::cmd("HGET").arg(ticket_key(id)).arg("body"))
            .await?;
        Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
    }

    async fn list_tickets(&self, filter: &TicketFilter) -> Result<Vec<Ticket>, Error> {
        let index = filter.status.map_or_else(|| TICKETS.to_owned(), status_key);
        let mut upper = "+inf".to_owned();
        let mut out = Vec::new();
        while out.len() < MAX_TICKETS {
            let mut cmd = eval(&scripts::TICKET_PAGE, &[&index]);
            cmd.arg(&upper).arg(BATCH).arg(TICKET_PREFIX);
            let page: Vec<String> = self.read(&scripts::TICKET_PAGE, cmd).await?;
            let mut page = page.into_iter();
            let last = page.next().unwrap_or_default();
            if last.is_empty() {
                break;
            }
            for body in page {
                let ticket: Ticket = serde_json::from_str(&body)?;
                if filter.matches(&ticket) && out.len() < MAX_TICKETS {
                    out.push(ticket);
                }
            }
            upper = format!("({last}");
        }
        Ok(out)
    }

    async fn update_ticket(&self, ticket: &Ticket, expected_revision: u64) -> Result<bool, Error> {
        let Ok(id) = ticket.id.parse::<u64>() else {
            return Ok(false);
        };
        let mut cmd = eval(
            &scripts::UPDATE_TICKET,
            &[&ticket_key(id), &status_key(ticket.status)],
        );
        cmd.arg(expected_revision)
            .arg(ticket.revision)
            .arg(ticket.status.as_str())
            .arg(serde_json::to_string(ticket)?)
            .arg(id)
            .arg(status_prefix());
        let changed: i64 = self.write(&scripts::UPDATE_TICKET, cmd).await?;
        Ok(changed == 1)
    }
}
