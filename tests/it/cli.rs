//! The built `rollgate` binary as a client of the test server: exit codes
//! and output of `ticket` and `audit` commands, and the command printed in a
//! denial working as printed.

use std::process::Output;

use crate::common::{TestServer, allowed, denial, restart_by, spawn_server};

/// Runs `rollgate ARGS --server … --ca … --token TOKEN` (env cleared of
/// `ROLLGATE_*`, so only the flags count).
async fn rollgate(s: &TestServer, token: &str, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"));
    cmd.args(args)
        .arg("--server")
        .arg(&s.api)
        .arg("--ca")
        .arg(s.dir.path().join("ca.crt"))
        .arg("--token")
        .arg(token);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ROLLGATE_") {
            cmd.env_remove(key);
        }
    }
    cmd.output().await.unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn cli_files_approves_and_lists_over_https() {
    let s = spawn_server("{}").await;

    let out = rollgate(
        &s,
        &s.alice,
        &[
            "ticket",
            "request",
            "-n",
            "production",
            "checkout-api",
            "--action",
            "restart",
            "--reason",
            "roll out the new TLS bundle",
            "-o",
            "name",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    assert_eq!(id, "1", "-o name prints the id only");

    // alice may not approve: a non-zero exit with the API's reason.
    let out = rollgate(&s, &s.alice, &["ticket", "approve", &id]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("403: alice is not an approver"),
        "{}",
        stderr(&out)
    );

    let out = rollgate(&s, &s.bob, &["ticket", "approve", &id, "--comment", "ok"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("RG-000001") && text.contains("APPROVED"),
        "{text}"
    );
    assert!(
        text.contains("alice may now redeploy production/checkout-api"),
        "{text}"
    );
    let warnings = allowed(&s.review(&restart_by("alice")).await);
    assert!(warnings[0].contains("RG-000001"), "{warnings:?}");

    let out = rollgate(&s, &s.carol, &["audit", "list"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for word in [
        "TICKET_CREATED",
        "TICKET_APPROVED",
        "GRANT_ISSUED",
        "ALLOWED",
    ] {
        assert!(text.contains(word), "{word} missing from\n{text}");
    }

    let out = rollgate(
        &s,
        &s.carol,
        &["audit", "list", "--event", "admission", "-o", "json"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let page: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");

    let out = rollgate(&s, &s.alice, &["audit", "list"]).await;
    assert!(!out.status.success(), "alice is no auditor");
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));

    let out = rollgate(&s, &s.alice, &["ticket", "grant", &id]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim().split('.').count(), 3, "the JWT alone");
}

#[tokio::test]
async fn cli_refuses_a_bad_token_and_an_untrusted_server() {
    let s = spawn_server("{}").await;

    let out = rollgate(&s, "rg-dev-nobody", &["ticket", "list"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));

    // Another CA: the CLI must not talk to a server it cannot authenticate.
    let other = spawn_server("{}").await;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"));
    let out = cmd
        .args([
            "ticket", "list", "--server", &s.api, "--token", &s.alice, "--ca",
        ])
        .arg(other.dir.path().join("ca.crt"))
        .env_remove("ROLLGATE_SERVER")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot reach"), "{}", stderr(&out));
}

#[tokio::test]
async fn ticket_command_in_a_denial_works_as_printed() {
    let s = spawn_server("{}").await;
    let message = denial(&s.review(&restart_by("alice")).await);

    // The first `…` span of the message is the CLI command.
    let command = message.split('`').nth(1).unwrap();
    assert!(command.starts_with("rollgate ticket request"), "{command}");
    let command = command.replace("\"<why>\"", "WHY");
    let args: Vec<&str> = command
        .split_whitespace()
        .skip(1)
        .map(|a| if a == "WHY" { "the new TLS bundle" } else { a })
        .collect();
    let mut args = args;
    args.extend(["-o", "name"]);

    let out = rollgate(&s, &s.alice, &args).await;

    assert!(out.status.success(), "{command}: {}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    let ticket = s.get(Some(&s.alice), &format!("/v1/tickets/{id}")).await;
    assert_eq!(ticket.body["namespace"], "production");
    assert_eq!(ticket.body["application"], "checkout-api");
    assert_eq!(ticket.body["action"], "restart");
    assert_eq!(ticket.body["reason"], "the new TLS bundle");
}

#[tokio::test]
async fn serve_dev_quickstart_works_as_printed_and_sigterm_exits_cleanly() {
    use tokio::io::AsyncBufReadExt;

    let dir = tempfile::tempdir().unwrap();
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"));
    serve
        .args(["serve", "--dev", "--dev-dir"])
        .arg(dir.path())
        .args(["--webhook-addr", "127.0.0.1:0"])
        .args(["--api-addr", "127.0.0.1:0"])
        .args(["--admin-addr", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ROLLGATE_") {
            serve.env_remove(key);
        }
    }
    let mut child = serve.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();

    // The "copy as is" block of the quickstart.
    let mut script = vec!["set -e".to_owned()];
    let read = async {
        let mut inside = false;
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("The same with curl only") {
                break;
            }
            if inside {
                script.push(line.trim().to_owned());
            }
            inside |= line.starts_with("Walk the flow");
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), read)
        .await
        .expect("serve --dev prints its quickstart");
    assert!(script.len() > 5, "{script:?}");
    let path = dir.path().join("walk.sh");
    std::fs::write(&path, script.join("\n")).unwrap();

    let mut bash = tokio::process::Command::new("bash");
    bash.arg(&path);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ROLLGATE_") {
            bash.env_remove(key);
        }
    }
    let walk = bash.output().await.unwrap();
    let text = stdout(&walk);
    assert!(walk.status.success(), "{text}\n{}", stderr(&walk));

    let denied = text.find(r#""allowed":false"#).expect(&text);
    let allowed_at = text.find(r#""allowed":true"#).expect(&text);
    assert!(denied < allowed_at, "denied first, then allowed:\n{text}");
    assert!(
        text.contains("rollgate ticket request -n production checkout-api"),
        "{text}"
    );
    assert!(text.contains("allowed by ticket RG-000001"), "{text}");
    assert!(text.contains("TICKET_APPROVED"), "{text}");
    assert!(text.contains(r#""ok":true"#), "{text}");

    let pid = child.id().unwrap().to_string();
    let kill = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect("SIGTERM stops the server")
        .unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
