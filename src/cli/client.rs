//! Client commands: one API call each (two for `redeploy`: fetch the grant,
//! then use it), printed as [`Output`] asks. Errors carry the API's problem
//! detail, so the user reads what to do next; `main` prints them and exits 1.

use std::fmt::Write as _;

use http::Method;
use serde_json::{Value, json};

use super::api::{self, ApiClient, seg};
use super::output::{grant_rows, items, render, text_of, ticket_rows};
use super::{ClientArgs, GrantCommand, Output, RedeployArgs, TicketCommand, program};

pub use super::audit::audit;

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] api::Error),
    #[error(
        "none of your approved tickets for {namespace}/{application} has a live grant that allows a restart: \
         request one with `{program} ticket request -n {namespace} {application} --action restart --reason \"<why>\"`, \
         or name the ticket with --ticket ID"
    )]
    NoLiveGrant {
        program: &'static str,
        namespace: String,
        application: String,
    },
    #[error("the server's answer has no {0}")]
    Incomplete(&'static str),
    #[error("the audit chain failed verification at record {first_bad}: {problem}")]
    ChainBroken { first_bad: String, problem: String },
    #[error("cannot read {path}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} holds no checkpoint: give the file `audit checkpoint` wrote (the JWS, or its -o json answer)"
    )]
    NotACheckpoint { path: std::path::PathBuf },
    #[error("{path} is not a JWKS document with an Ed25519 key (save GET /.well-known/jwks.json)")]
    NotJwks { path: std::path::PathBuf },
    #[error("cannot use the public key")]
    Key(#[from] crate::grants::KeyError),
    #[error("the checkpoint in {path} is not valid: {rejection}")]
    BadCheckpoint {
        path: std::path::PathBuf,
        rejection: crate::audit::checkpoint::CheckpointRejection,
    },
    #[error("cannot write YAML")]
    Yaml(#[source] serde_saphyr::ser::Error),
}

/// Prints `value` as `output` asks (see [`render`]).
pub(super) fn print(
    value: &Value,
    output: Output,
    table: impl FnOnce(&Value) -> String,
    name_field: &str,
) -> Result<(), Error> {
    println!(
        "{}",
        render(value, output, table, name_field).map_err(Error::Yaml)?
    );
    Ok(())
}

/// `rollgate ticket …`.
pub async fn ticket(cmd: TicketCommand) -> Result<(), Error> {
    match cmd {
        TicketCommand::Request {
            application,
            namespace,
            reason,
            action,
            images,
            max_uses,
            client,
        } => {
            let api = ApiClient::connect(&client.connect).await?;
            let mut body = json!({"namespace": namespace, "application": application, "reason": reason, "action": action.as_str()});
            if !images.is_empty() {
                body["images"] = json!(images);
            }
            if let Some(max) = max_uses {
                body["maxUses"] = json!(max);
            }
            let ticket = api
                .call(Method::POST, "/v1/tickets", &[], Some(body))
                .await?;
            print(
                &ticket,
                client.output,
                |t| {
                    format!(
                        "Ticket {} filed (id {}, action {}), status {}.\nAn approver (not you) runs: {} ticket approve {}\n",
                        text_of(&t["number"]),
                        text_of(&t["id"]),
                        text_of(&t["action"]),
                        text_of(&t["status"]),
                        program(),
                        text_of(&t["id"])
                    )
                },
                "id",
            )
        }
        TicketCommand::List {
            status,
            namespace,
            application,
            requester,
            client,
        } => {
            let api = ApiClient::connect(&client.connect).await?;
            let query = [
                ("status", status.map(|s| s.to_uppercase())),
                ("namespace", namespace),
                ("application", application),
                ("requester", requester),
            ];
            let list = api.call(Method::GET, "/v1/tickets", &query, None).await?;
            print(&list, client.output, |v| ticket_rows(items(v)), "id")
        }
        TicketCommand::Show { id, client } => {
            let api = ApiClient::connect(&client.connect).await?;
            let ticket = api
                .call(Method::GET, &format!("/v1/tickets/{}", seg(&id)), &[], None)
                .await?;
            print(
                &ticket,
                client.output,
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
            let api = ApiClient::connect(&client.connect).await?;
            let path = format!("/v1/tickets/{}/cancel", seg(&id));
            let ticket = api.call(Method::POST, &path, &[], None).await?;
            print(
                &ticket,
                client.output,
                |t| ticket_rows(std::slice::from_ref(t)),
                "id",
            )
        }
        TicketCommand::Grant { id, client } => {
            let api = ApiClient::connect(&client.connect).await?;
            let path = format!("/v1/tickets/{}/grant", seg(&id));
            let grant = api.call(Method::GET, &path, &[], None).await?;
            // The token alone, so `$(rollgate ticket grant 7)` works.
            print(&grant, client.output, |g| text_of(&g["token"]), "token")
        }
    }
}

async fn decide(
    client: &ClientArgs,
    id: &str,
    verb: &str,
    comment: Option<String>,
) -> Result<(), Error> {
    let api = ApiClient::connect(&client.connect).await?;
    let body = comment.map(|c| json!({"comment": c}));
    let path = format!("/v1/tickets/{}/{verb}", seg(id));
    let ticket = api.call(Method::POST, &path, &[], body).await?;
    print(
        &ticket,
        client.output,
        |t| {
            let mut out = ticket_rows(std::slice::from_ref(t));
            if verb == "approve" && t["status"] == "APPROVED" {
                let may = match t["action"].as_str() {
                    Some("image") => "change the image of",
                    Some("debug") => "add a debug container (`kubectl debug`) to a pod of",
                    _ => "redeploy",
                };
                let _ = write!(
                    out,
                    "\n{} may now {may} {}/{} until {}.\n",
                    text_of(&t["requester"]),
                    text_of(&t["namespace"]),
                    text_of(&t["application"]),
                    text_of(&t["grant"]["expiresAt"])
                );
            } else if verb == "approve" {
                let have = t["approvals"].as_array().map_or(0, Vec::len);
                let need = t["requiredApprovals"].as_u64().unwrap_or(1);
                let _ = write!(
                    out,
                    "\nApproval {have} of {need} recorded: the ticket stays {} until {need} approvers approved it.\n",
                    text_of(&t["status"])
                );
            }
            out
        },
        "id",
    )
}

/// `rollgate grant …`.
pub async fn grant(cmd: GrantCommand) -> Result<(), Error> {
    match cmd {
        GrantCommand::List {
            namespace,
            user,
            client,
        } => {
            let api = ApiClient::connect(&client.connect).await?;
            let query = [("namespace", namespace), ("user", user)];
            let list = api.call(Method::GET, "/v1/grants", &query, None).await?;
            print(&list, client.output, |v| grant_rows(items(v)), "jti")
        }
        GrantCommand::Revoke {
            jti,
            reason,
            client,
        } => {
            let api = ApiClient::connect(&client.connect).await?;
            let body = reason.map(|r| json!({"reason": r}));
            let path = format!("/v1/grants/{}/revoke", seg(&jti));
            let result = api.call(Method::POST, &path, &[], body).await?;
            print(
                &result,
                client.output,
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

/// `rollgate redeploy`: fetches the grant of `--ticket`, else of the
/// caller's newest approved ticket for the application whose grant is still
/// live, and asks rollgate to restart the application with it as Bearer.
pub async fn redeploy(args: RedeployArgs) -> Result<(), Error> {
    let RedeployArgs {
        application,
        namespace,
        kind,
        name,
        reason,
        ticket,
        client,
    } = args;
    let api = ApiClient::connect(&client.connect).await?;
    let grant = match ticket {
        Some(id) => {
            let path = format!("/v1/tickets/{}/grant", seg(&id));
            api.call(Method::GET, &path, &[], None).await?
        }
        None => live_grant(&api, &namespace, &application).await?,
    };
    let token = grant["token"]
        .as_str()
        .ok_or(Error::Incomplete("grant token"))?;
    let as_grant = api.as_bearer(
        token,
        format!("the grant of ticket {}", text_of(&grant["ticketNumber"])),
        "A grant works until it expires or is revoked; an approved ticket's grant comes from `ticket grant ID`",
    )?;

    let mut body = serde_json::Map::new();
    for (key, value) in [
        ("reason", reason),
        ("kind", kind.map(|k| k.as_str().to_owned())),
        ("name", name),
    ] {
        if let Some(value) = value {
            body.insert(key.to_owned(), value.into());
        }
    }
    let path = format!(
        "/v1/applications/{}/{}/redeploy",
        seg(&namespace),
        seg(&application)
    );
    let operation = as_grant
        .call(Method::POST, &path, &[], Some(Value::Object(body)))
        .await?;
    print(
        &operation,
        client.output,
        |op| {
            format!(
                "Restart of {} {} in {namespace} started by ticket {}: operation {}.\n\
                 Follow it: {} audit list -n {namespace} --application {application}\n",
                text_of(&op["kind"]),
                text_of(&op["name"]),
                text_of(&op["ticketNumber"]),
                text_of(&op["operationId"]),
                program(),
            )
        },
        "operationId",
    )
}

/// The grant (`{"token","jti","expiresAt","ticketNumber"}`) of the caller's
/// newest approved ticket for `namespace/application` that allows a restart
/// and whose grant is live. The API does not say who the caller is, so each
/// candidate's grant is asked for, newest first: the API answers 403 for
/// someone else's ticket and 409 for a revoked or expired grant.
async fn live_grant(api: &ApiClient, namespace: &str, application: &str) -> Result<Value, Error> {
    let query = [
        ("status", Some("APPROVED".to_owned())),
        ("namespace", Some(namespace.to_owned())),
        ("application", Some(application.to_owned())),
    ];
    let list = api.call(Method::GET, "/v1/tickets", &query, None).await?;
    let now = jiff::Timestamp::now();
    let mut candidates: Vec<(jiff::Timestamp, &str)> = items(&list)
        .iter()
        // Only a restart or any grant can redeploy (image and debug grants
        // cannot: the API refuses them).
        .filter(|t| {
            matches!(t["action"].as_str(), Some("restart" | "any"))
                && t["grant"]["revokedAt"].is_null()
        })
        .filter_map(|t| {
            let expires = t["grant"]["expiresAt"]
                .as_str()?
                .parse::<jiff::Timestamp>()
                .ok()?;
            Some((expires, t["id"].as_str()?))
        })
        .filter(|(expires, _)| *expires > now)
        .collect();
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
    for (_, id) in candidates {
        let path = format!("/v1/tickets/{}/grant", seg(id));
        match api.call(Method::GET, &path, &[], None).await {
            Ok(grant) => return Ok(grant),
            Err(
                api::Error::Forbidden { .. }
                | api::Error::Api {
                    status: 404 | 409, ..
                },
            ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::NoLiveGrant {
        program: program(),
        namespace: namespace.to_owned(),
        application: application.to_owned(),
    })
}
