//! `rollgate audit …`: list, show, verify (online, or an export offline with
//! the public keys), checkpoint and export. Offline verification is the same
//! pure chain walk the server does ([`crate::audit::chain`]), so an auditor
//! needs no server and no trust in one to check an export.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use http::Method;
use serde_json::Value;

use super::api::{ApiClient, seg};
use super::client::{Error, print};
use super::output::{audit_rows, items, text_of};
use super::{AuditCommand, ClientArgs, ConnectArgs, program};
use crate::audit::chain::{self, ChainWalker, VerifyReport};
use crate::audit::checkpoint::{Checkpoint, CheckpointSource, CheckpointVerifier};
use crate::grants::KeySet;

/// `rollgate audit …`.
pub async fn audit(cmd: AuditCommand) -> Result<(), Error> {
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
            let api = ApiClient::connect(&client.connect).await?;
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
            print(
                &page,
                client.output,
                |v| {
                    let mut out = audit_rows(items(v));
                    if let Some(next) = v["next"].as_str() {
                        let _ = write!(out, "\nMore: {} audit list --after {next}\n", program());
                    }
                    out
                },
                "id",
            )
        }
        AuditCommand::Show { id, client } => {
            let api = ApiClient::connect(&client.connect).await?;
            let path = format!("/v1/audit/{}", seg(&id));
            let record = api.call(Method::GET, &path, &[], None).await?;
            print(&record, client.output, show_record, "id")
        }
        AuditCommand::Verify {
            checkpoint,
            file: Some(file),
            jwks,
            keys,
            client,
        } => {
            let report = verify_offline(&file, jwks.as_deref(), &keys, checkpoint.as_deref())?;
            let report = serde_json::to_value(&report).map_err(|_| Error::Incomplete("report"))?;
            finish_verify(&report, &client)
        }
        AuditCommand::Verify {
            checkpoint,
            file: None,
            client,
            ..
        } => {
            let api = ApiClient::connect(&client.connect).await?;
            let jws = checkpoint.as_deref().map(read_checkpoint).transpose()?;
            let query = [("checkpoint", jws)];
            let report = api
                .call(Method::GET, "/v1/audit/verify", &query, None)
                .await?;
            finish_verify(&report, &client)
        }
        AuditCommand::Checkpoint { client } => {
            let api = ApiClient::connect(&client.connect).await?;
            let record = api
                .call(Method::POST, "/v1/audit/checkpoints", &[], None)
                .await?;
            eprintln!(
                "Checkpoint record {} attests {} records ending in {}. Keep it, and later: {} audit verify --checkpoint FILE",
                text_of(&record["id"]),
                text_of(&record["checkpointRecords"]),
                text_of(&record["checkpointHead"]),
                program()
            );
            // The JWS alone, so `audit checkpoint > cp.jws` keeps it.
            print(&record, client.output, |r| text_of(&r["checkpoint"]), "id")
        }
        AuditCommand::Export { file, connect } => export(&connect, file.as_deref()).await,
    }
}

/// One record as a table row, its reason, its image changes, its
/// checkpoint and its rollout outcome: a ROLLOUT record's own, or for an
/// ADMISSION record its operation's latest, with that record's note
/// (`reason`: a ReplicaSet's running pods keep the old template…).
fn show_record(r: &Value) -> String {
    let mut out = audit_rows(std::slice::from_ref(r)).trim_end().to_owned();
    if !r["reason"].is_null() {
        let _ = write!(out, "\nReason: {}", text_of(&r["reason"]));
    }
    for change in r["imageChanges"].as_array().into_iter().flatten() {
        let _ = write!(out, "\nImage: {}", image_change(change));
    }
    for change in r["templateChanges"].as_array().into_iter().flatten() {
        let _ = write!(out, "\nChanged: {}", text_of(change));
    }
    if !r["operationId"].is_null() {
        let _ = write!(out, "\nOperation: {}", text_of(&r["operationId"]));
    }
    if !r["checkpoint"].is_null() {
        let _ = write!(
            out,
            "\nCheckpoint: attests {} records ending in {}",
            text_of(&r["checkpointRecords"]),
            text_of(&r["checkpointHead"])
        );
    }
    let rollout = &r["rollout"];
    if r["event"] == "ROLLOUT" {
        let _ = write!(out, "\nRollout: {}", outcome(r, false));
    } else if rollout.is_object() {
        let _ = write!(out, "\nRollout: {}", outcome(rollout, true));
        if !rollout["reason"].is_null() {
            let _ = write!(out, "\nRollout reason: {}", text_of(&rollout["reason"]));
        }
    } else if r["event"] == "ADMISSION" && r["decision"] == "ALLOWED" {
        out.push_str("\nRollout: not recorded yet");
    }
    out.push_str(&format!("\nHash: {}\n", text_of(&r["hash"])));
    out
}

/// A ROLLOUT record's status, e.g. `COMPLETED (record 9, success true, 210 s)`
/// (the record's id only when `with_id`), and its error.
fn outcome(rollout: &Value, with_id: bool) -> String {
    let mut facts = Vec::new();
    if with_id {
        facts.push(format!("record {}", text_of(&rollout["id"])));
    }
    if !rollout["success"].is_null() {
        facts.push(format!("success {}", text_of(&rollout["success"])));
    }
    if !rollout["durationSeconds"].is_null() {
        facts.push(format!("{} s", text_of(&rollout["durationSeconds"])));
    }
    let mut line = text_of(&rollout["rolloutStatus"]);
    if !facts.is_empty() {
        let _ = write!(line, " ({})", facts.join(", "));
    }
    if let Some(e) = rollout["errorMessage"].as_str() {
        let _ = write!(line, ": {e}");
    }
    line
}

/// One entry of `imageChanges`: which container, marked when it is an init
/// or an ephemeral (`kubectl debug`) one, and its images.
fn image_change(c: &Value) -> String {
    let (container, mark) = if c["ephemeral"] == true {
        ("debug container", " (ephemeral)")
    } else if c["init"] == true {
        ("init container", "")
    } else {
        ("container", "")
    };
    let images = match (c["previousImage"].as_str(), c["currentImage"].as_str()) {
        (None, Some(new)) => format!("added, {new}"),
        (Some(old), None) => format!("removed, was {old}"),
        (Some(old), Some(new)) => format!("{old} → {new}"),
        (None, None) => "-".to_owned(),
    };
    format!("{container} {}{mark}: {images}", text_of(&c["container"]))
}

/// Prints a verification report; an intact chain exits 0, a broken one 1.
fn finish_verify(report: &Value, client: &ClientArgs) -> Result<(), Error> {
    let intact = report["ok"].as_bool() == Some(true);
    print(
        report,
        client.output,
        |r| {
            let mut out = format!(
                "Audit chain {}: {} records, head {}.",
                if intact { "intact" } else { "BROKEN" },
                text_of(&r["records"]),
                text_of(&r["head"])
            );
            let c = &r["checkpoint"];
            if c.is_object() {
                let record = c["id"]
                    .as_str()
                    .map_or_else(String::new, |id| format!(" (record {id})"));
                let _ = write!(
                    out,
                    "\nChecked against the {} checkpoint{record}: {} records, head {}, issued {}.",
                    text_of(&c["source"]),
                    text_of(&c["records"]),
                    text_of(&c["head"]),
                    text_of(&c["issuedAt"])
                );
            }
            out
        },
        "head",
    )?;
    if intact {
        return Ok(());
    }
    Err(Error::ChainBroken {
        first_bad: text_of(&report["firstBadId"]),
        problem: report["problem"]
            .as_str()
            .unwrap_or("the trail was edited, reordered or lost records")
            .to_owned(),
    })
}

/// The checkpoint JWS in `path`: the JWS itself, or a CHECKPOINT record as
/// JSON (`audit checkpoint -o json`).
fn read_checkpoint(path: &Path) -> Result<String, Error> {
    let text = read(path)?;
    let text = String::from_utf8_lossy(&text);
    let text = text.trim();
    let jws = if text.starts_with('{') {
        serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v["checkpoint"].as_str().map(str::to_owned))
    } else {
        Some(text.to_owned())
    };
    jws.filter(|j| j.split('.').count() == 3)
        .ok_or_else(|| Error::NotACheckpoint {
            path: path.to_owned(),
        })
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

/// Verifies an export with the public keys of `jwks` and `keys`, and
/// against the checkpoint in `checkpoint`, with no server.
fn verify_offline(
    file: &Path,
    jwks: Option<&Path>,
    keys: &[PathBuf],
    checkpoint: Option<&Path>,
) -> Result<VerifyReport, Error> {
    let mut set = KeySet::default();
    if let Some(path) = jwks {
        set = KeySet::from_jwks(&read(path)?).ok_or_else(|| Error::NotJwks {
            path: path.to_owned(),
        })?;
    }
    for path in keys {
        set.insert_pem_file(path)?;
    }
    // Offline the issuer is not known: the keys decide.
    let verifier = CheckpointVerifier::new(set, None);
    let mut held = Vec::new();
    if let Some(path) = checkpoint {
        let jws = read_checkpoint(path)?;
        let claims = verifier
            .verify(&jws)
            .map_err(|rejection| Error::BadCheckpoint {
                path: path.to_owned(),
                rejection,
            })?;
        held.push(Checkpoint {
            claims,
            jws,
            record: None,
            source: CheckpointSource::Supplied,
        });
    }
    let export = std::fs::File::open(file).map_err(|source| Error::Read {
        path: file.to_owned(),
        source,
    })?;
    let walker = ChainWalker::with_checkpoints(verifier, held);
    let walker = chain::walk_lines(std::io::BufReader::new(export), walker).map_err(|source| {
        Error::Read {
            path: file.to_owned(),
            source,
        }
    })?;
    Ok(walker.finish())
}

/// Streams `GET /v1/audit/export` to `file` (stdout when `None`). A file
/// left incomplete by a failure is removed.
async fn export(connect: &ConnectArgs, file: Option<&Path>) -> Result<(), Error> {
    let api = ApiClient::connect(connect).await?;
    let accept = "application/jsonl";
    match file {
        None => {
            let mut out = tokio::io::stdout();
            api.download("/v1/audit/export", accept, &mut out, "stdout")
                .await?;
        }
        Some(path) => {
            let target = path.display().to_string();
            let mut out =
                tokio::fs::File::create(path)
                    .await
                    .map_err(|source| super::api::Error::Save {
                        target: target.clone(),
                        source,
                    })?;
            let written = api
                .download("/v1/audit/export", accept, &mut out, &target)
                .await;
            if written.is_err() {
                let _ = tokio::fs::remove_file(path).await;
            }
            written?;
            eprintln!(
                "Wrote the audit trail to {target}. Verify it offline: {} audit verify --file {target} --jwks jwks.json \
                 (jwks.json from GET /.well-known/jwks.json)",
                program()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn image_changes_name_their_container_and_mark_a_debug_one_ephemeral() {
        let rows = [
            (
                "app container",
                json!({"container": "app", "previousImage": "web:1", "currentImage": "web:2"}),
                "container app: web:1 → web:2",
            ),
            (
                "init container",
                json!({"container": "migrate", "init": true, "previousImage": "m:1", "currentImage": "m:2"}),
                "init container migrate: m:1 → m:2",
            ),
            (
                "kubectl debug",
                json!({"container": "debugger-x7k2p", "ephemeral": true, "currentImage": "busybox:1.36"}),
                "debug container debugger-x7k2p (ephemeral): added, busybox:1.36",
            ),
            (
                "removed sidecar",
                json!({"container": "auth-proxy", "previousImage": "proxy:3"}),
                "container auth-proxy: removed, was proxy:3",
            ),
        ];
        for (name, change, want) in rows {
            assert_eq!(image_change(&change), want, "{name}");
        }
    }

    #[test]
    fn an_admission_shows_its_rollouts_outcome_and_note_and_a_rollout_its_own() {
        let note = "ReplicaSet production/web stores the new pod template; its 2 running pods keep the old template";
        let admission = json!({
            "id": "4", "event": "ADMISSION", "decision": "ALLOWED", "reason": "grant of ticket RG-000001",
            "imageChanges": [{"container": "web", "previousImage": "web:1", "currentImage": "web:2"}],
            "templateChanges": ["env of container web"],
            "operationId": "op-1", "hash": "h4",
            "rollout": {"id": "5", "event": "ROLLOUT", "rolloutStatus": "COMPLETED", "success": true,
                        "durationSeconds": 3, "reason": note},
        });
        let text = show_record(&admission);
        for line in [
            "Reason: grant of ticket RG-000001",
            "Image: container web: web:1 → web:2",
            "Changed: env of container web",
            "Rollout: COMPLETED (record 5, success true, 3 s)",
            &format!("Rollout reason: {note}"),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from:\n{text}"
            );
        }

        let rollout = json!({"id": "5", "event": "ROLLOUT", "rolloutStatus": "FAILED", "success": false,
                             "durationSeconds": 61, "errorMessage": "pod web failed: Evicted",
                             "reason": note, "hash": "h5", "rollout": null});
        let text = show_record(&rollout);
        for line in [
            &format!("Reason: {note}"),
            "Rollout: FAILED (success false, 61 s): pod web failed: Evicted",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from:\n{text}"
            );
        }
        let progressing =
            json!({"id": "3", "event": "ROLLOUT", "rolloutStatus": "PROGRESSING", "hash": "h3"});
        assert!(show_record(&progressing).contains("\nRollout: PROGRESSING\n"));
    }
}
