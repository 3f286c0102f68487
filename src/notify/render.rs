//! What a notification says (pure): the one- or two-line summary with the
//! exact command to act, the links, and the body of each [`Format`]. Built
//! only from the public ticket, so no grant token, bearer token or key can
//! appear in it.

use serde::Serialize;
use serde_json::{Value, json};

use super::{Event, EventKind, Format};
use crate::tickets::Action;

/// Longest reason or comment quoted in a summary, in characters; the full
/// text is in the JSON event's `ticket` and `reason`.
const MAX_QUOTE: usize = 300;

/// How to act on the event: the ticket's API URL and the CLI commands that apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Links {
    /// `<publicApiUrl>/v1/tickets/<id>`.
    pub ticket: String,
    /// `rollgate ticket approve <id>` (TICKET_CREATED).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approve: Option<String>,
    /// `rollgate ticket reject <id>` (TICKET_CREATED).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reject: Option<String>,
    /// `POST` here to approve (TICKET_CREATED).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approve_url: Option<String>,
    /// `POST` here to reject (TICKET_CREATED).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reject_url: Option<String>,
    /// `rollgate redeploy -n NS APP` (TICKET_APPROVED, when the ticket allows
    /// a restart: action restart or any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redeploy: Option<String>,
    /// `rollgate ticket request …` to ask again (rejected, expired, revoked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// The body to POST to a receiver of `format`; `api` is the public API URL.
pub fn payload(event: &Event, format: Format, api: &str) -> Value {
    match format {
        Format::Slack => json!({ "text": slack_escape(&summary(event, api)) }),
        Format::Json => json!({
            "event": event.kind.as_str(),
            "summary": summary(event, api),
            "ticket": event.ticket,
            "actor": event.actor,
            "reason": event.reason,
            "grantJti": event.grant_jti,
            "links": links(event, api),
            "timestamp": event.timestamp,
        }),
    }
}

/// The commands and URLs that apply to `event`.
pub fn links(event: &Event, api: &str) -> Links {
    let t = &event.ticket;
    let ticket = format!("{api}/v1/tickets/{}", t.id);
    let mut links = Links {
        approve: None,
        reject: None,
        approve_url: None,
        reject_url: None,
        redeploy: None,
        request: None,
        ticket,
    };
    match event.kind {
        EventKind::TicketCreated => {
            links.approve = Some(format!("rollgate ticket approve {}", t.id));
            links.reject = Some(format!("rollgate ticket reject {}", t.id));
            links.approve_url = Some(format!("{}/approve", links.ticket));
            links.reject_url = Some(format!("{}/reject", links.ticket));
        }
        EventKind::TicketApproved if matches!(t.action, Action::Restart | Action::Any) => {
            links.redeploy = Some(format!(
                "rollgate redeploy -n {} {}",
                t.namespace, t.application
            ));
        }
        EventKind::TicketApproved | EventKind::TicketCancelled => {}
        EventKind::TicketRejected | EventKind::TicketExpired | EventKind::GrantRevoked => {
            links.request = Some(format!(
                "rollgate ticket request -n {} {} --action {} --reason \"<why>\"",
                t.namespace,
                t.application,
                t.action.as_str()
            ));
        }
    }
    links
}

/// One readable line, or two when there is a command to run; plain text.
pub fn summary(event: &Event, api: &str) -> String {
    let t = &event.ticket;
    let links = links(event, api);
    let what = match t.action {
        Action::Restart => "restart",
        Action::Image => "change the image of",
        Action::Debug => "debug a pod of",
        Action::Any => "restart, change the image of or debug a pod of",
    };
    let target = format!("{what} {}/{}", t.namespace, t.application);
    let quoted = event
        .reason
        .as_deref()
        .map(quote)
        .filter(|q| q.len() > 2)
        .map(|q| format!(" ({q})"))
        .unwrap_or_default();
    let (number, requester, actor) = (&t.number, &t.requester, &event.actor);
    match event.kind {
        EventKind::TicketCreated => format!(
            "{number}: {requester} asks to {target}: {reason}\nApprove: `{approve}` · Reject: `{reject}` · {url}",
            reason = quote(&t.reason),
            approve = links.approve.unwrap_or_default(),
            reject = links.reject.unwrap_or_default(),
            url = links.ticket,
        ),
        EventKind::TicketApproved => {
            let until = t
                .grant
                .as_ref()
                .map(|g| format!(" until {}", g.expires_at))
                .unwrap_or_default();
            let then = match links.redeploy {
                Some(redeploy) => {
                    format!(
                        "`{redeploy}`, or `kubectl rollout restart` the workload as {requester}"
                    )
                }
                None if t.action == Action::Debug => {
                    format!("add the debug container as {requester} (`kubectl debug`)")
                }
                None => format!("change the image as {requester} (e.g. `kubectl set image`)"),
            };
            format!(
                "{number} approved by {actor}{quoted}: {requester} may {target}{until}\nThen: {then} · {url}",
                url = links.ticket,
            )
        }
        EventKind::TicketRejected => format!(
            "{number} rejected by {actor}{quoted}: {requester} may not {target}\nTo ask again: `{request}` · {url}",
            request = links.request.unwrap_or_default(),
            url = links.ticket,
        ),
        EventKind::TicketCancelled => format!(
            "{number} cancelled by {actor}: {requester} no longer asks to {target}{revoked} · {url}",
            revoked = if t.grant.is_some() {
                "; its grant no longer works"
            } else {
                ""
            },
            url = links.ticket,
        ),
        EventKind::TicketExpired => format!(
            "{number} expired: nobody decided {requester}'s request to {target} in time\nTo ask again: `{request}` · {url}",
            request = links.request.unwrap_or_default(),
            url = links.ticket,
        ),
        EventKind::GrantRevoked => format!(
            "Grant of {number} revoked by {actor}{quoted}: {requester} may no longer {target}\nTo ask again: `{request}` · {url}",
            request = links.request.unwrap_or_default(),
            url = links.ticket,
        ),
    }
}

/// `text` on one line, cut to [`MAX_QUOTE`] characters, in double quotes.
fn quote(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= MAX_QUOTE {
        format!("\"{line}\"")
    } else {
        let cut: String = line.chars().take(MAX_QUOTE).collect();
        format!("\"{cut}…\"")
    }
}

/// Slack's three control characters, so user text cannot mention
/// `<!channel>` or forge a link (api.slack.com "Formatting text").
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::tickets::{NewTicket, Ticket, TicketGrant};

    const API: &str = "https://rollgate.example.com:8444";

    fn mk_ticket(action: Action) -> Ticket {
        Ticket::file(
            7,
            NewTicket {
                namespace: "production".into(),
                application: "checkout-api".into(),
                reason: "roll out the\nrotated credentials".into(),
                action,
                images: vec![],
                max_uses: None,
            },
            "alice",
            Timestamp::from_second(1_800_000_000).unwrap(),
        )
    }

    fn mk_grant() -> TicketGrant {
        serde_json::from_value(json!({"jti": "jti-1", "expiresAt": "2027-01-15T10:00:00Z"}))
            .unwrap()
    }

    fn mk_event(kind: EventKind, action: Action) -> Event {
        let mut ticket = mk_ticket(action);
        let (actor, reason) = match kind {
            EventKind::TicketCreated => ("alice", Some(ticket.reason.clone())),
            EventKind::TicketCancelled => ("alice", None),
            EventKind::TicketExpired => ("rollgate", None),
            _ => ("bob", Some("go <!channel> & see".to_owned())),
        };
        if matches!(kind, EventKind::TicketApproved | EventKind::GrantRevoked) {
            ticket.grant = Some(mk_grant());
        }
        let mut event = Event::new(
            kind,
            &ticket,
            actor,
            reason,
            Timestamp::from_second(1_800_000_100).unwrap(),
        );
        if kind == EventKind::GrantRevoked {
            event.grant_jti = Some("jti-1".into());
        }
        event
    }

    #[test]
    fn each_summary_says_what_happened_and_how_to_act() {
        let url = "https://rollgate.example.com:8444/v1/tickets/7";
        let ask_again = "`rollgate ticket request -n production checkout-api --action restart --reason \"<why>\"`";
        let rows: [(&str, EventKind, Action, &[&str]); 9] = [
            (
                "created",
                EventKind::TicketCreated,
                Action::Restart,
                &[
                    "RG-000007: alice asks to restart production/checkout-api: \"roll out the rotated credentials\"",
                    "Approve: `rollgate ticket approve 7`",
                    "Reject: `rollgate ticket reject 7`",
                    url,
                ],
            ),
            (
                "approved restart",
                EventKind::TicketApproved,
                Action::Restart,
                &[
                    "RG-000007 approved by bob",
                    "alice may restart production/checkout-api until 2027-01-15T10:00:00Z",
                    "`rollgate redeploy -n production checkout-api`",
                    "`kubectl rollout restart`",
                    url,
                ],
            ),
            (
                "approved image change",
                EventKind::TicketApproved,
                Action::Image,
                &[
                    "alice may change the image of production/checkout-api",
                    "`kubectl set image`",
                ],
            ),
            (
                "approved debug",
                EventKind::TicketApproved,
                Action::Debug,
                &[
                    "alice may debug a pod of production/checkout-api",
                    "add the debug container as alice (`kubectl debug`)",
                ],
            ),
            (
                "rejected debug",
                EventKind::TicketRejected,
                Action::Debug,
                &[
                    "alice may not debug a pod of production/checkout-api",
                    "`rollgate ticket request -n production checkout-api --action debug --reason \"<why>\"`",
                ],
            ),
            (
                "rejected",
                EventKind::TicketRejected,
                Action::Restart,
                &[
                    "RG-000007 rejected by bob (\"go <!channel> & see\")",
                    "alice may not restart production/checkout-api",
                    ask_again,
                ],
            ),
            (
                "cancelled",
                EventKind::TicketCancelled,
                Action::Restart,
                &["RG-000007 cancelled by alice", url],
            ),
            (
                "expired",
                EventKind::TicketExpired,
                Action::Any,
                &[
                    "RG-000007 expired",
                    "alice's request to restart, change the image of or debug a pod of production/checkout-api",
                    "--action any",
                ],
            ),
            (
                "revoked",
                EventKind::GrantRevoked,
                Action::Restart,
                &[
                    "Grant of RG-000007 revoked by bob",
                    "alice may no longer restart production/checkout-api",
                    ask_again,
                ],
            ),
        ];
        for (row, kind, action, wants) in rows {
            let text = summary(&mk_event(kind, action), API);
            for want in wants {
                assert!(text.contains(want), "{row}: {want:?} missing from {text:?}");
            }
            assert!(text.lines().count() <= 2, "{row}: {text:?}");
        }
        for action in [Action::Image, Action::Debug] {
            let approved = summary(&mk_event(EventKind::TicketApproved, action), API);
            assert!(
                !approved.contains("rollgate redeploy"),
                "a {} grant cannot redeploy: {approved}",
                action.as_str()
            );
        }
    }

    #[test]
    fn slack_text_escapes_mentions_and_links() {
        let body = payload(
            &mk_event(EventKind::TicketRejected, Action::Restart),
            Format::Slack,
            API,
        );
        let keys: Vec<_> = body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["text"]);
        let text = body["text"].as_str().unwrap();
        assert!(text.contains("go &lt;!channel&gt; &amp; see"), "{text}");
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
    }

    #[test]
    fn long_reasons_are_cut_to_one_line() {
        let mut event = mk_event(EventKind::TicketCreated, Action::Restart);
        event.ticket.reason = "x".repeat(1000);
        let text = summary(&event, API);
        assert!(
            text.contains(&format!("\"{}…\"", "x".repeat(MAX_QUOTE))),
            "{text}"
        );
        assert!(!text.contains(&"x".repeat(MAX_QUOTE + 1)));
    }

    #[test]
    fn json_event_carries_the_public_ticket_actor_links_and_time() {
        let body = payload(
            &mk_event(EventKind::TicketCreated, Action::Restart),
            Format::Json,
            API,
        );
        assert_eq!(body["event"], "TICKET_CREATED");
        assert_eq!(body["actor"], "alice");
        assert_eq!(body["ticket"]["number"], "RG-000007");
        assert_eq!(body["ticket"]["status"], "PENDING");
        assert_eq!(body["ticket"]["requester"], "alice");
        assert_eq!(body["reason"], "roll out the\nrotated credentials");
        assert_eq!(body["timestamp"], "2027-01-15T08:01:40Z");
        assert_eq!(
            body["links"],
            json!({
                "ticket": "https://rollgate.example.com:8444/v1/tickets/7",
                "approve": "rollgate ticket approve 7",
                "reject": "rollgate ticket reject 7",
                "approveUrl": "https://rollgate.example.com:8444/v1/tickets/7/approve",
                "rejectUrl": "https://rollgate.example.com:8444/v1/tickets/7/reject",
            })
        );
        assert!(body["summary"].as_str().unwrap().starts_with("RG-000007"));

        let revoked = payload(
            &mk_event(EventKind::GrantRevoked, Action::Restart),
            Format::Json,
            API,
        );
        assert_eq!(revoked["event"], "GRANT_REVOKED");
        assert_eq!(revoked["grantJti"], "jti-1");
        assert_eq!(revoked["ticket"]["grant"]["jti"], "jti-1");
        assert_eq!(revoked["actor"], "bob");
    }

    #[test]
    fn every_event_name_is_the_audit_event_name() {
        for kind in EventKind::ALL {
            let body = payload(&mk_event(kind, Action::Restart), Format::Json, API);
            assert_eq!(body["event"], kind.as_str());
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            assert_eq!(kind.audit_event().as_str(), kind.as_str(), "{kind:?}");
        }
    }
}
