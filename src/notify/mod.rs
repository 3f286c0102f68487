//! Outgoing notifications: ticket created, approved, rejected, cancelled,
//! expired, and grant revoked, POSTed to the receivers of the config's
//! `notifications` list as Slack-compatible `{"text"}` or a generic JSON event.
//!
//! Start with [`Notifier`]: the handle [`TicketDesk`](crate::tickets::TicketDesk)
//! and the revoke handler call after a state change. [`Notifier::notify`]
//! never waits: it puts the event on each interested receiver's bounded
//! queue, or drops it (counted) when that queue is full. [`Deliveries`] runs
//! one task per receiver that sends its queue in order, with a timeout per
//! request and bounded retries, so a slow or dead receiver delays only itself
//! and never the API or the webhook. What is said is pure ([`render`]);
//! who is configured is [`receiver`].
//!
//! A notification is built from the public ticket only: it never carries a
//! grant token, a bearer token or a key. Logs name the receiver, never its
//! URL (a Slack webhook URL is a credential) or headers.

pub mod receiver;
pub mod render;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use receiver::{Format, Invalid, Receiver, ReceiverSpec, receivers};

use crate::audit::AuditEvent;
use crate::metrics::Metrics;
use crate::tickets::Ticket;

/// Events waiting per receiver; beyond that new ones are dropped and counted.
pub const QUEUE_CAPACITY: usize = 256;
/// Longest one delivery attempt may take, connecting included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Waits before the retries of a failed delivery: 4 attempts in all.
pub const BACKOFF: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// Notifications could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("notification receiver {receiver:?}: cannot read {path}")]
    ReadFile {
        receiver: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("notification receiver {receiver:?}: urlFile {path}: {reason}")]
    BadUrlFile {
        receiver: String,
        path: PathBuf,
        reason: String,
    },
    #[error("notification receiver {receiver:?}: {path} does not hold a valid header value")]
    BadHeaderFile { receiver: String, path: PathBuf },
    #[error("cannot build the notification HTTP client")]
    Client(#[source] reqwest::Error),
}

/// What happened; the names are DESIGN.md's audit `event` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    TicketCreated,
    TicketApproved,
    TicketRejected,
    TicketCancelled,
    TicketExpired,
    GrantRevoked,
}

impl EventKind {
    pub const ALL: [Self; 6] = [
        Self::TicketCreated,
        Self::TicketApproved,
        Self::TicketRejected,
        Self::TicketCancelled,
        Self::TicketExpired,
        Self::GrantRevoked,
    ];

    /// The audit event of the same name.
    pub fn audit_event(self) -> AuditEvent {
        match self {
            Self::TicketCreated => AuditEvent::TicketCreated,
            Self::TicketApproved => AuditEvent::TicketApproved,
            Self::TicketRejected => AuditEvent::TicketRejected,
            Self::TicketCancelled => AuditEvent::TicketCancelled,
            Self::TicketExpired => AuditEvent::TicketExpired,
            Self::GrantRevoked => AuditEvent::GrantRevoked,
        }
    }

    /// The kind of the same name as audit event `event`, if it is one.
    pub fn of(event: AuditEvent) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.audit_event() == event)
    }

    /// `TICKET_CREATED` and so on.
    pub fn as_str(self) -> &'static str {
        self.audit_event().as_str()
    }

    /// The kind named `name` (`TICKET_CREATED`, …), if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// One notification: what happened to which ticket, by whom, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// The ticket after the change, as the API shows it (it holds no token).
    pub ticket: Ticket,
    /// Who acted: the requester (created, cancelled), the approver (approved,
    /// rejected, revoked) or `rollgate` (expired).
    pub actor: String,
    /// The reason or comment given with the change, if any.
    pub reason: Option<String>,
    /// The revoked grant's id (GRANT_REVOKED).
    pub grant_jti: Option<String>,
    pub timestamp: Timestamp,
}

impl Event {
    pub fn new(
        kind: EventKind,
        ticket: &Ticket,
        actor: &str,
        reason: Option<String>,
        now: Timestamp,
    ) -> Self {
        Self {
            kind,
            ticket: ticket.clone(),
            actor: actor.to_owned(),
            reason,
            grant_jti: None,
            timestamp: now,
        }
    }

    /// GRANT_REVOKED for grant `jti` of `ticket`, revoked by `actor`.
    pub fn grant_revoked(
        ticket: &Ticket,
        jti: &str,
        actor: &str,
        reason: Option<String>,
        now: Timestamp,
    ) -> Self {
        Self {
            grant_jti: Some(jti.to_owned()),
            ..Self::new(EventKind::GrantRevoked, ticket, actor, reason, now)
        }
    }
}

/// The sending side: cheap to clone; `Notifier::default()` notifies nobody.
#[derive(Clone, Default)]
pub struct Notifier {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    queues: Vec<Queue>,
    metrics: Arc<Metrics>,
}

struct Queue {
    name: String,
    events: BTreeSet<EventKind>,
    tx: mpsc::Sender<Arc<Event>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .inner
            .iter()
            .flat_map(|i| i.queues.iter().map(|q| q.name.as_str()))
            .collect();
        f.debug_struct("Notifier")
            .field("receivers", &names)
            .finish()
    }
}

impl Notifier {
    /// A notifier for `receivers` and the [`Deliveries`] that will send its
    /// events once spawned. Fails when a receiver's `urlFile` or `headerFiles`
    /// cannot be read now, so a typo stops the start instead of every send.
    pub fn new(
        receivers: Vec<Receiver>,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, Deliveries), Error> {
        Self::with_capacity(receivers, metrics, QUEUE_CAPACITY)
    }

    fn with_capacity(
        receivers: Vec<Receiver>,
        metrics: Arc<Metrics>,
        capacity: usize,
    ) -> Result<(Self, Deliveries), Error> {
        if receivers.is_empty() {
            return Ok((Self::default(), Deliveries::default()));
        }
        let client = reqwest::Client::builder()
            .tls_backend_rustls()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            // A redirect could carry the headers elsewhere; receivers answer directly.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("rollgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::Client)?;
        let mut queues = Vec::with_capacity(receivers.len());
        let mut workers = Vec::with_capacity(receivers.len());
        for receiver in receivers {
            receiver.resolve()?;
            // Every series exists from the start, so alerts see a 0 before the first failure.
            for result in ["sent", "failed", "dropped"] {
                metrics
                    .notifications_total
                    .with_label_values(&[receiver.name.as_str(), result]);
            }
            let (tx, rx) = mpsc::channel(capacity);
            queues.push(Queue {
                name: receiver.name.clone(),
                events: receiver.events.clone(),
                tx,
            });
            workers.push((receiver, rx));
        }
        let deliveries = Deliveries {
            client: Some(client),
            workers,
            metrics: Some(metrics.clone()),
        };
        let inner = Some(Arc::new(Inner { queues, metrics }));
        Ok((Self { inner }, deliveries))
    }

    /// Queues `event` for every receiver that wants its kind, without
    /// waiting: when a receiver's queue is full the event is dropped for it,
    /// counted as `dropped` and logged.
    pub fn notify(&self, event: Event) {
        let Some(inner) = &self.inner else {
            return;
        };
        let event = Arc::new(event);
        for queue in inner
            .queues
            .iter()
            .filter(|q| q.events.contains(&event.kind))
        {
            if queue.tx.try_send(event.clone()).is_err() {
                inner.metrics.notification(&queue.name, "dropped");
                tracing::warn!(
                    receiver = %queue.name, event = event.kind.as_str(), ticket = %event.ticket.number,
                    "notification queue full, event dropped"
                );
            }
        }
    }
}

/// The receiving side: one task per receiver, started by [`Deliveries::spawn`].
#[derive(Default)]
pub struct Deliveries {
    /// Built only when there are receivers.
    client: Option<reqwest::Client>,
    workers: Vec<(Receiver, mpsc::Receiver<Arc<Event>>)>,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for Deliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.workers.iter().map(|(r, _)| r.name.as_str()).collect();
        f.debug_struct("Deliveries")
            .field("receivers", &names)
            .finish()
    }
}

impl Deliveries {
    /// Starts sending; `public_api_url` is the base of the links in messages.
    /// The tasks end when every [`Notifier`] clone is dropped, or when aborted.
    pub fn spawn(self, public_api_url: Arc<str>) -> Vec<JoinHandle<()>> {
        let (Some(client), Some(metrics)) = (self.client, self.metrics) else {
            return Vec::new();
        };
        self.workers
            .into_iter()
            .map(|(receiver, rx)| {
                tokio::spawn(run(
                    client.clone(),
                    receiver,
                    rx,
                    metrics.clone(),
                    public_api_url.clone(),
                ))
            })
            .collect()
    }
}

/// Sends `receiver`'s events one after the other, in the order they happened.
async fn run(
    client: reqwest::Client,
    receiver: Receiver,
    mut rx: mpsc::Receiver<Arc<Event>>,
    metrics: Arc<Metrics>,
    api: Arc<str>,
) {
    while let Some(event) = rx.recv().await {
        let body = render::payload(&event, receiver.format, &api);
        let (event_name, ticket) = (event.kind.as_str(), &event.ticket.number);
        match deliver(&client, &receiver, &body).await {
            Ok(attempts) => {
                metrics.notification(&receiver.name, "sent");
                tracing::debug!(receiver = %receiver.name, event = event_name, %ticket, attempts, "notification sent");
            }
            Err(Failure { attempts, reason }) => {
                metrics.notification(&receiver.name, "failed");
                tracing::warn!(receiver = %receiver.name, event = event_name, %ticket, attempts, %reason, "notification failed");
            }
        }
    }
}

/// Why a delivery gave up, after how many attempts.
struct Failure {
    attempts: usize,
    reason: String,
}

/// One attempt's failure: worth retrying or not.
enum Attempt {
    Retry(String),
    GiveUp(String),
}

/// POSTs `body`, retrying connect errors, timeouts, 429 and 5xx after each
/// of [`BACKOFF`]'s waits; other 4xx are final. Ok: the attempts it took.
async fn deliver(
    client: &reqwest::Client,
    receiver: &Receiver,
    body: &serde_json::Value,
) -> Result<usize, Failure> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let reason = match attempt(client, receiver, body).await {
            Ok(()) => return Ok(attempts),
            Err(Attempt::GiveUp(reason)) => return Err(Failure { attempts, reason }),
            Err(Attempt::Retry(reason)) => reason,
        };
        let Some(wait) = BACKOFF.get(attempts - 1) else {
            return Err(Failure { attempts, reason });
        };
        tracing::debug!(receiver = %receiver.name, attempts, %reason, retry_in = ?wait, "notification attempt failed");
        tokio::time::sleep(*wait).await;
    }
}

async fn attempt(
    client: &reqwest::Client,
    receiver: &Receiver,
    body: &serde_json::Value,
) -> Result<(), Attempt> {
    // Files are re-read each time: a rotated Secret applies at once.
    let (url, headers) = receiver
        .resolve()
        .map_err(|e| Attempt::GiveUp(crate::error::error_chain(&e)))?;
    let sent = client.post(url).headers(headers).json(body).send().await;
    match sent {
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
                Err(Attempt::Retry(format!("answered {status}")))
            } else {
                Err(Attempt::GiveUp(format!("answered {status}")))
            }
        }
        // The URL may hold a credential: errors are logged without it.
        Err(e) if e.is_builder() => {
            Err(Attempt::GiveUp(crate::error::error_chain(&e.without_url())))
        }
        Err(e) => Err(Attempt::Retry(crate::error::error_chain(&e.without_url()))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::tickets::{Action, NewTicket};

    fn mk_receiver(name: &str, events: Option<Vec<&str>>) -> Receiver {
        receivers(vec![ReceiverSpec {
            name: name.into(),
            url: Some("http://127.0.0.1:9/hook".into()),
            url_file: None,
            format: "json".into(),
            events: events.map(|e| e.into_iter().map(str::to_owned).collect()),
            headers: BTreeMap::new(),
            header_files: BTreeMap::new(),
        }])
        .unwrap()
        .remove(0)
    }

    fn mk_event(kind: EventKind) -> Event {
        let ticket = Ticket::file(
            1,
            NewTicket {
                namespace: "production".into(),
                application: "web".into(),
                reason: "leak".into(),
                action: Action::Restart,
                images: vec![],
                max_uses: None,
            },
            "alice",
            Timestamp::UNIX_EPOCH,
        );
        Event::new(kind, &ticket, "alice", None, Timestamp::UNIX_EPOCH)
    }

    fn mk_metrics() -> Arc<Metrics> {
        // reqwest is built with rustls-no-provider: main installs ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Arc::new(Metrics::new().unwrap())
    }

    fn counted(metrics: &Metrics, receiver: &str, result: &str) -> u64 {
        metrics
            .notifications_total
            .with_label_values(&[receiver, result])
            .get()
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let metrics = mk_metrics();
        let (notifier, deliveries) = Notifier::with_capacity(
            vec![
                mk_receiver("all", None),
                mk_receiver("approvals", Some(vec!["TICKET_APPROVED"])),
            ],
            metrics.clone(),
            1,
        )
        .unwrap();
        // Deliveries not spawned: nothing drains the queues.
        notifier.notify(mk_event(EventKind::TicketCreated));
        notifier.notify(mk_event(EventKind::TicketCreated));
        notifier.notify(mk_event(EventKind::TicketApproved));
        assert_eq!(counted(&metrics, "all", "dropped"), 2);
        assert_eq!(counted(&metrics, "approvals", "dropped"), 0);
        let rendered = metrics.render();
        assert!(
            rendered.contains(
                r#"rollgate_notifications_total{receiver="approvals",result="failed"} 0"#
            ),
            "{rendered}"
        );
        drop(deliveries);
    }

    #[tokio::test]
    async fn without_receivers_notify_is_a_no_op() {
        let (notifier, deliveries) = Notifier::new(Vec::new(), mk_metrics()).unwrap();
        notifier.notify(mk_event(EventKind::TicketCreated));
        Notifier::default().notify(mk_event(EventKind::TicketCreated));
        assert!(deliveries.spawn("https://x".into()).is_empty());
    }

    #[test]
    fn an_unreadable_header_file_stops_the_start() {
        let mut receiver = mk_receiver("sink", None);
        receiver.headers.push((
            http::header::AUTHORIZATION,
            receiver::HeaderSource::File("/nonexistent/rollgate/auth".into()),
        ));
        let err = Notifier::new(vec![receiver], mk_metrics()).unwrap_err();
        assert!(matches!(err, Error::ReadFile { .. }), "{err}");
        assert!(err.to_string().contains("sink"), "{err}");
    }
}
