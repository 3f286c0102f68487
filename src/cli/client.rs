//! Client commands: HTTPS calls to the ticket API and their output as a
//! table, JSON, YAML or bare ids. Errors carry the API's problem detail, so
//! the user reads what to do next.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{AuditCommand, ClientArgs, GrantCommand, Output, TicketCommand};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the CA file {path}")]
    Ca {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the CA file is not a PEM certificate")]
    CaFormat(#[source] reqwest::Error),
    #[error("no token: pass --token or set ROLLGATE_TOKEN")]
    NoToken,
    #[error("cannot reach {server}")]
    Connect {
        server: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{status}: {detail}")]
    Api { status: u16, detail: String },
    #[error("the server's answer is not JSON")]
    Decode(#[source] reqwest::Error),
    #[error("cannot write YAML")]
    Yaml(#[source] serde_saphyr::ser::Error),
}

/// An API connection built from [`ClientArgs`].
pub struct ApiClient {
    http: reqwest::Client,
    server: String,
    token: String,
    output: Output,
}

impl ApiClient {
    pub fn new(args: &ClientArgs) -> Result<Self, Error> {
        let mut builder = reqwest::Client::builder()
            .tls_backend_rustls()
            .timeout(std::time::Duration::from_secs(30))
            .user_agent(concat!("rollgate-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &args.ca {
            let pem = std::fs::read(path).map_err(|source| Error::Ca {
                path: path.clone(),
                source,
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(Error::CaFormat)?;
            builder = builder.tls_certs_only([cert]);
        }
        let http = builder.build().map_err(|source| Error::Connect {
            server: args.server.clone(),
            source,
        })?;
        Ok(Self {
            http,
            server: args.server.trim_end_matches('/').to_owned(),
            token: args
                .token
                .clone()
                .filter(|t| !t.is_empty())
                .ok_or(Error::NoToken)?,
            output: args.output,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, Option<String>)],
        body: Option<Value>,
    ) -> Result<Value, Error> {
        let mut url = format!("{}{path}", self.server);
        let mut sep = '?';
        for (key, value) in query {
            if let Some(value) = value {
                let _ = write!(url, "{sep}{key}={}", seg(value));
                sep = '&';
            }
        }
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(|source| Error::Connect {
            server: self.server.clone(),
            source,
        })?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let detail = value
                .get("detail")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
            return Err(Error::Api {
                status: status.as_u16(),
                detail,
            });
        }
        Ok(value)
    }

    fn print(
        &self,
        value: &Value,
        table: impl FnOnce(&Value) -> String,
        name_field: &str,
    ) -> Result<(), Error> {
        let text = match self.output {
            Output::Json => serde_json::to_string_pretty(value).unwrap_or_default(),
            Output::Yaml => serde_saphyr::to_string(value)
                .map_err(Error::Yaml)?
                .trim_end()
                .to_owned(),
            Output::Table => table(value).trim_end().to_owned(),
            Output::Name => match value.get("items").and_then(Value::as_array) {
                Some(items) => items
                    .iter()
                    .map(|i| text_of(&i[name_field]))
                    .collect::<Vec<_>>()
                    .join("\n"),
                None => text_of(&value[name_field]),
            },
        };
        println!("{text}");
        Ok(())
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Formats rows as aligned columns.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut l = String::new();
        for (cell, w) in cells.iter().zip(&widths) {
            let _ = write!(l, "{cell:<w$}  ");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for row in &rows {
        line(row);
    }
    out
}

fn ticket_rows(items: &[Value]) -> String {
    let rows = items
        .iter()
        .map(|t| {
            vec![
                text_of(&t["id"]),
                text_of(&t["number"]),
                text_of(&t["status"]),
                format!(
                    "{}/{}",
                    text_of(&t["namespace"]),
                    text_of(&t["application"])
                ),
                text_of(&t["action"]),
                text_of(&t["requester"]),
                text_of(&t["decidedBy"]),
                text_of(&t["grant"]["expiresAt"]),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NUMBER",
            "STATUS",
            "APPLICATION",
            "ACTION",
            "REQUESTER",
            "DECIDED BY",
            "GRANT EXPIRES",
        ],
        rows,
    )
}

fn items(value: &Value) -> &[Value] {
    value
        .get("items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

pub async fn ticket(cmd: TicketCommand) -> Result<(), Error> {
    use reqwest::Method;
    match cmd {
        TicketCommand::Request {
            application,
            namespace,
            reason,
            action,
            client,
        } => {
            let api = ApiClient::new(&client)?;
            let body = json!({"namespace": namespace, "application": application, "reason": reason, "action": action.as_str()});
            let ticket = api
                .call(Method::POST, "/v1/tickets", &[], Some(body))
                .await?;
            api.print(&ticket, |t| {
                format!(
                    "Ticket {} filed (id {}), status {}.\nAn approver (not you) runs: rollgate ticket approve {}\n",
                    text_of(&t["number"]),
                    text_of(&t["id"]),
                    text_of(&t["status"]),
                    text_of(&t["id"])
                )
            }, "id")
        }
        TicketCommand::List {
            status,
            namespace,
            application,
            requester,
            client,
        } => {
            let api = ApiClient::new(&client)?;
            let query = [
                ("status", status.map(|s| s.to_uppercase())),
                ("namespace", namespace),
                ("application", application),
                ("requester", requester),
            ];
            let list = api.call(Method::GET, "/v1/tickets", &query, None).await?;
            api.print(&list, |v| ticket_rows(items(v)), "id")
        }
        TicketCommand::Show { id, client } => {
            let api = ApiClient::new(&client)?;
            let ticket = api
                .call(Method::GET, &format!("/v1/tickets/{}", seg(&id)), &[], None)
                .await?;
            api.print(
                &ticket,
                |t| {
                    ticket_rows(std::slice::from_ref(t))
                        + &format!("\nReason: {}\n", text_of(&t["reason"]))
                },
                "id",
            )
        }
        TicketCommand::Approve {
            id,
            comment,
            client,
        } => decide(&client, &id, "approve", comment).await,
        TicketCommand::Reject {
            id,
            comment,
            client,
        } => decide(&client, &id, "reject", comment).await,
        TicketCommand::Cancel { id, client } => {
            let api = ApiClient::new(&client)?;
            let ticket = api
                .call(
                    Method::POST,
                    &format!("/v1/tickets/{}/cancel", seg(&id)),
                    &[],
                    None,
                )
                .await?;
            api.print(&ticket, |t| ticket_rows(std::slice::from_ref(t)), "id")
        }
        TicketCommand::Grant { id, client } => {
            let api = ApiClient::new(&client)?;
            let grant = api
                .call(
                    Method::GET,
                    &format!("/v1/tickets/{}/grant", seg(&id)),
                    &[],
                    None,
                )
                .await?;
            // The token alone, so `$(rollgate ticket grant 7)` works.
            api.print(&grant, |g| text_of(&g["token"]), "token")
        }
    }
}

async fn decide(
    client: &ClientArgs,
    id: &str,
    verb: &str,
    comment: Option<String>,
) -> Result<(), Error> {
    let api = ApiClient::new(client)?;
    let body = comment.map(|c| json!({"comment": c}));
    let ticket = api
        .call(
            reqwest::Method::POST,
            &format!("/v1/tickets/{}/{verb}", seg(id)),
            &[],
            body,
        )
        .await?;
    api.print(
        &ticket,
        |t| {
            let mut out = ticket_rows(std::slice::from_ref(t));
            if verb == "approve" {
                let _ = write!(
                    out,
                    "\n{} may now redeploy {}/{} until {}.\n",
                    text_of(&t["requester"]),
                    text_of(&t["namespace"]),
                    text_of(&t["application"]),
                    text_of(&t["grant"]["expiresAt"])
                );
            }
            out
        },
        "id",
    )
}

pub async fn grant(cmd: GrantCommand) -> Result<(), Error> {
    use reqwest::Method;
    match cmd {
        GrantCommand::List {
            namespace,
            user,
            client,
        } => {
            let api = ApiClient::new(&client)?;
            let list = api
                .call(
                    Method::GET,
                    "/v1/grants",
                    &[("namespace", namespace), ("user", user)],
                    None,
                )
                .await?;
            api.print(
                &list,
                |v| {
                    let rows = items(v)
                        .iter()
                        .map(|g| {
                            vec![
                                text_of(&g["jti"]),
                                text_of(&g["ticketNumber"]),
                                text_of(&g["user"]),
                                format!(
                                    "{}/{}",
                                    text_of(&g["namespace"]),
                                    text_of(&g["application"])
                                ),
                                text_of(&g["expiresAt"]),
                            ]
                        })
                        .collect();
                    table(&["JTI", "TICKET", "USER", "APPLICATION", "EXPIRES"], rows)
                },
                "jti",
            )
        }
        GrantCommand::Revoke {
            jti,
            reason,
            client,
        } => {
            let api = ApiClient::new(&client)?;
            let body = reason.map(|r| json!({"reason": r}));
            let result = api
                .call(
                    Method::POST,
                    &format!("/v1/grants/{}/revoke", seg(&jti)),
                    &[],
                    body,
                )
                .await?;
            api.print(
                &result,
                |r| {
                    format!(
                        "Grant {} revoked: it stops working at once.",
                        text_of(&r["jti"])
                    )
                },
                "jti",
            )
        }
    }
}

pub async fn audit(cmd: AuditCommand) -> Result<(), Error> {
    use reqwest::Method;
    match cmd {
        AuditCommand::List {
            namespace,
            application,
            user,
            event,
            decision,
            since,
            until,
            limit,
            after,
            client,
        } => {
            let api = ApiClient::new(&client)?;
            let query = [
                ("namespace", namespace),
                ("application", application),
                ("user", user),
                ("event", event.map(|e| e.to_uppercase())),
                ("decision", decision.map(|d| d.to_uppercase())),
                ("since", since),
                ("until", until),
                ("limit", limit.map(|l| l.to_string())),
                ("after", after),
            ];
            let page = api.call(Method::GET, "/v1/audit", &query, None).await?;
            api.print(
                &page,
                |v| {
                    let rows = items(v)
                        .iter()
                        .map(|r| {
                            vec![
                                text_of(&r["id"]),
                                text_of(&r["timestamp"]),
                                text_of(&r["event"]),
                                text_of(&r["decision"]),
                                text_of(&r["username"]),
                                format!(
                                    "{}/{}",
                                    text_of(&r["namespace"]),
                                    text_of(&r["applicationName"])
                                ),
                                text_of(&r["change"]),
                                text_of(&r["ticketNumber"]),
                            ]
                        })
                        .collect();
                    let mut out = table(
                        &[
                            "ID",
                            "TIME",
                            "EVENT",
                            "DECISION",
                            "USER",
                            "APPLICATION",
                            "CHANGE",
                            "TICKET",
                        ],
                        rows,
                    );
                    if let Some(next) = v["next"].as_str() {
                        let _ = write!(out, "\nMore: rollgate audit list --after {next}\n");
                    }
                    out
                },
                "id",
            )
        }
        AuditCommand::Verify { client } => {
            let api = ApiClient::new(&client)?;
            let report = api.call(Method::GET, "/v1/audit/verify", &[], None).await?;
            api.print(&report, |r| {
                if r["ok"].as_bool() == Some(true) {
                    format!("Audit chain intact: {} records, head {}.", text_of(&r["records"]), text_of(&r["head"]))
                } else {
                    format!(
                        "Audit chain BROKEN at record {} ({} records): the trail was edited, reordered or lost a record.",
                        text_of(&r["firstBadId"]),
                        text_of(&r["records"])
                    )
                }
            }, "head")?;
            if report["ok"].as_bool() != Some(true) {
                return Err(Error::Api {
                    status: 200,
                    detail: "verification failed".into(),
                });
            }
            Ok(())
        }
    }
}

/// Percent-encodes a path segment typed by the user.
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
