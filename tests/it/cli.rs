//! The built `rollgate` binary as a client of the test server over HTTPS:
//! every command's output and exit code, credentials from `--token` and from
//! a kubeconfig (static token, exec plugin), the errors a person reads
//! (refused token, unreachable server, untrusted CA, 403 detail), the
//! command printed in a denial working as printed, and the binary installed
//! as `kubectl-rollgate`.

use std::path::Path;
use std::process::Output;

use serde_json::json;

use crate::common::{TestServer, allowed, denial, restart_by, spawn_server};
use crate::rollout::{admitted, cluster_with, rollouts_until, stored};

/// The binary at `program` with `ROLLGATE_*` and `KUBECONFIG` removed and
/// `HOME` pointed at `home` (no `.kube` there), so only what a test passes counts.
fn bare(program: &Path, home: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("ROLLGATE_") || key_text == "KUBECONFIG" {
            cmd.env_remove(key);
        }
    }
    cmd.env("HOME", home);
    cmd
}

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rollgate"))
}

/// Runs `rollgate ARGS --server … --ca …`: credentials only as `args` give them.
async fn run(s: &TestServer, args: &[&str]) -> Output {
    bare(binary(), s.dir.path())
        .args(args)
        .arg("--server")
        .arg(&s.api)
        .arg("--ca")
        .arg(s.dir.path().join("ca.crt"))
        .output()
        .await
        .unwrap()
}

/// Runs `rollgate ARGS --server … --ca … --token TOKEN`.
async fn rollgate(s: &TestServer, token: &str, args: &[&str]) -> Output {
    let mut args = args.to_vec();
    args.extend(["--token", token]);
    run(s, &args).await
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts success and returns stdout.
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// Asserts exit code 1 and returns stderr.
fn failed(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a failure\nstdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
    stderr(out)
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
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
async fn cli_errors_say_what_to_fix_and_exit_non_zero() {
    let s = spawn_server("{}").await;

    let text = failed(&rollgate(&s, "rg-dev-nobody", &["ticket", "list"]).await);
    assert!(
        text.contains("401: the API refused the token from --token/ROLLGATE_TOKEN")
            && text.contains("demo tokens are in users.json"),
        "a refused token says so and where tokens come from: {text}"
    );

    // 403: the API's detail names what is missing.
    let text = failed(&rollgate(&s, &s.alice, &["audit", "list"]).await);
    assert!(
        text.contains("403: alice may not read every namespace"),
        "{text}"
    );
    let text = failed(&rollgate(&s, &s.alice, &["grant", "list", "-n", "production"]).await);
    assert!(
        text.contains("403: alice is neither an auditor nor an approver for namespace production"),
        "{text}"
    );

    // 404 and 409 carry the API's detail too.
    let text = failed(&rollgate(&s, &s.alice, &["ticket", "show", "99"]).await);
    assert!(text.contains("404: ticket 99 does not exist"), "{text}");
    let ticket = s.approved_ticket().await;
    let id = ticket["id"].as_str().unwrap();
    let text = failed(&rollgate(&s, &s.bob, &["ticket", "reject", id]).await);
    assert!(text.contains("409:") && text.contains("APPROVED"), "{text}");

    // Nothing listens on port 1: the URL is named, and where to change it.
    let out = bare(binary(), s.dir.path())
        .args(["ticket", "list", "--token", &s.alice])
        .args(["--server", "https://127.0.0.1:1"])
        .output()
        .await
        .unwrap();
    let text = failed(&out);
    assert!(
        text.contains("cannot reach the rollgate API at https://127.0.0.1:1")
            && text.contains("--server or ROLLGATE_SERVER"),
        "{text}"
    );

    // Another CA: the CLI must not talk to a server it cannot authenticate.
    let other = spawn_server("{}").await;
    let out = bare(binary(), s.dir.path())
        .args(["ticket", "list", "--server", &s.api, "--token", &s.alice])
        .arg("--ca")
        .arg(other.dir.path().join("ca.crt"))
        .output()
        .await
        .unwrap();
    let text = failed(&out);
    assert!(
        text.contains(&format!(
            "{} presented a certificate this client does not trust",
            s.api
        )) && text.contains("--ca or ROLLGATE_CA"),
        "{text}"
    );

    // The same variables, from the environment instead of flags.
    let out = bare(binary(), s.dir.path())
        .args(["ticket", "list", "-o", "name"])
        .env("ROLLGATE_SERVER", &s.api)
        .env("ROLLGATE_CA", s.dir.path().join("ca.crt"))
        .env("ROLLGATE_TOKEN", &s.alice)
        .output()
        .await
        .unwrap();
    assert_eq!(ok(&out).trim(), id);
}

#[tokio::test]
async fn every_ticket_grant_and_audit_command_works_over_https() {
    let s = spawn_server("{}").await;
    let request = |app: &'static str| {
        [
            "ticket",
            "request",
            "-n",
            "production",
            app,
            "--reason",
            "rotate the keys",
            "-o",
            "json",
        ]
    };

    let first = json(&rollgate(&s, &s.alice, &request("checkout-api")).await);
    assert_eq!(first["status"], "PENDING", "{first}");
    assert_eq!(first["action"], "any", "--action defaults to any: {first}");
    let id = first["id"].as_str().unwrap().to_owned();
    let second = json(&rollgate(&s, &s.alice, &request("ledger")).await);
    let second_id = second["id"].as_str().unwrap().to_owned();
    let third = json(&rollgate(&s, &s.alice, &request("search")).await);
    let third_id = third["id"].as_str().unwrap().to_owned();

    let text = ok(&rollgate(&s, &s.bob, &["ticket", "list", "--status", "pending"]).await);
    assert!(text.starts_with("ID  NUMBER"), "a table: {text}");
    for number in ["RG-000001", "RG-000002", "RG-000003"] {
        assert!(text.contains(number), "{number} missing from\n{text}");
    }
    let names = ok(&rollgate(
        &s,
        &s.bob,
        &["ticket", "list", "--application", "ledger", "-o", "name"],
    )
    .await);
    assert_eq!(names.trim(), second_id);

    let text = ok(&rollgate(&s, &s.bob, &["ticket", "show", &id, "-o", "yaml"]).await);
    assert!(
        text.contains("number: RG-000001") && text.contains("reason: rotate the keys"),
        "{text}"
    );
    let text = ok(&rollgate(&s, &s.bob, &["ticket", "show", &id]).await);
    assert!(text.contains("Reason: rotate the keys"), "{text}");

    let rejected = json(
        &rollgate(
            &s,
            &s.bob,
            &[
                "ticket",
                "reject",
                &second_id,
                "--comment",
                "not now",
                "-o",
                "json",
            ],
        )
        .await,
    );
    assert_eq!(rejected["status"], "REJECTED", "{rejected}");
    assert_eq!(rejected["comment"], "not now", "{rejected}");
    let text = ok(&rollgate(&s, &s.alice, &["ticket", "cancel", &third_id]).await);
    assert!(text.contains("CANCELLED"), "{text}");

    let text = ok(&rollgate(&s, &s.bob, &["ticket", "approve", &id]).await);
    assert!(text.contains("APPROVED"), "{text}");
    let grant = json(&rollgate(&s, &s.alice, &["ticket", "grant", &id, "-o", "json"]).await);
    let jti = grant["jti"].as_str().unwrap().to_owned();
    assert_eq!(
        grant["token"].as_str().unwrap().split('.').count(),
        3,
        "{grant}"
    );

    let text = ok(&rollgate(&s, &s.carol, &["grant", "list", "-n", "production"]).await);
    assert!(text.contains(&jti) && text.contains("alice"), "{text}");
    assert!(
        !text.contains(grant["token"].as_str().unwrap()),
        "grant list never shows a token"
    );
    let names = ok(&rollgate(
        &s,
        &s.carol,
        &["grant", "list", "--user", "alice", "-o", "name"],
    )
    .await);
    assert_eq!(names.trim(), jti);

    let text = ok(&rollgate(
        &s,
        &s.bob,
        &["grant", "revoke", &jti, "--reason", "rolled back"],
    )
    .await);
    assert!(text.contains(&format!("Grant {jti} revoked")), "{text}");
    let list = json(
        &rollgate(
            &s,
            &s.carol,
            &["grant", "list", "-n", "production", "-o", "json"],
        )
        .await,
    );
    assert_eq!(list["items"], serde_json::json!([]), "revoked: {list}");

    let text = ok(&rollgate(&s, &s.carol, &["audit", "list", "--event", "grant_revoked"]).await);
    assert!(text.contains("GRANT_REVOKED"), "{text}");
    let text = ok(&rollgate(&s, &s.carol, &["audit", "list", "--limit", "1"]).await);
    assert!(text.contains("More: rollgate audit list --after"), "{text}");
    let text = ok(&rollgate(&s, &s.carol, &["audit", "verify"]).await);
    assert!(text.starts_with("Audit chain intact:"), "{text}");
    let report = json(&rollgate(&s, &s.carol, &["audit", "verify", "-o", "json"]).await);
    assert_eq!(report["ok"], true, "{report}");
    let text = ok(&rollgate(&s, &s.carol, &["audit", "verify", "-o", "yaml"]).await);
    assert!(text.contains("ok: true"), "{text}");
}

#[tokio::test]
async fn redeploy_sends_the_callers_grant_and_prints_the_apis_answer() {
    let s = spawn_server("{}").await;
    let ticket = s.approved_ticket().await;
    let id = ticket["id"].as_str().unwrap();

    // Without --ticket the CLI finds alice's approved ticket; the server checks
    // the grant before it can say there is no cluster (a demo token gets 401).
    let text = failed(
        &rollgate(
            &s,
            &s.alice,
            &["redeploy", "-n", "production", "checkout-api"],
        )
        .await,
    );
    assert!(
        text.contains(
            "503: no cluster configured: rollgate cannot redeploy production/checkout-api"
        ),
        "{text}"
    );
    let text = failed(
        &rollgate(
            &s,
            &s.alice,
            &[
                "redeploy",
                "-n",
                "production",
                "checkout-api",
                "--ticket",
                id,
                "--kind",
                "deployment",
                "--name",
                "checkout-api",
                "--reason",
                "new certs",
                "-o",
                "json",
            ],
        )
        .await,
    );
    assert!(text.contains("503: no cluster configured"), "{text}");

    // bob has no approved ticket of his own: the CLI says how to get one.
    let text = failed(
        &rollgate(
            &s,
            &s.bob,
            &["redeploy", "-n", "production", "checkout-api"],
        )
        .await,
    );
    assert!(
        text.contains("none of your approved tickets for production/checkout-api has a live grant")
            && text.contains("rollgate ticket request -n production checkout-api --action restart"),
        "{text}"
    );
    // Someone else's ticket, named: the API's 403 detail.
    let text = failed(
        &rollgate(
            &s,
            &s.bob,
            &[
                "redeploy",
                "-n",
                "production",
                "checkout-api",
                "--ticket",
                id,
            ],
        )
        .await,
    );
    assert!(text.contains("403: only the requester (alice)"), "{text}");

    // A revoked grant is no grant.
    let jti = ticket["grant"]["jti"].as_str().unwrap();
    ok(&rollgate(&s, &s.bob, &["grant", "revoke", jti]).await);
    let text = failed(
        &rollgate(
            &s,
            &s.alice,
            &["redeploy", "-n", "production", "checkout-api"],
        )
        .await,
    );
    assert!(text.contains("has a live grant"), "{text}");
    let text = failed(
        &rollgate(
            &s,
            &s.alice,
            &[
                "redeploy",
                "-n",
                "production",
                "checkout-api",
                "--ticket",
                id,
            ],
        )
        .await,
    );
    assert!(text.contains("409:") && text.contains("revoked"), "{text}");
}

/// A kubeconfig in `dir` whose cluster is never contacted (the server comes
/// from --server): context `alice` (current) with a static token, `bob`
/// with an exec plugin printing an ExecCredential (and leaving a mark in
/// `exec-ran`), `cert` with a client certificate only, `broken` with an exec
/// plugin that fails.
fn mk_kubeconfig(dir: &Path, alice: &str, bob: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;

    let plugin = dir.join("credential-plugin.sh");
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\ntouch '{}'\nprintf '%s' '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{bob}\"}}}}'\n",
            dir.join("exec-ran").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("kubeconfig.yaml");
    std::fs::write(
        &path,
        format!(
            r#"apiVersion: v1
kind: Config
clusters:
- name: somewhere
  cluster:
    server: https://kubernetes.invalid:6443
users:
- name: alice-token
  user:
    token: {alice}
- name: bob-exec
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: {plugin}
      interactiveMode: Never
- name: cert-only
  user:
    client-certificate-data: eA==
    client-key-data: eA==
- name: broken-exec
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: /bin/false
      interactiveMode: Never
contexts:
- name: alice
  context: {{cluster: somewhere, user: alice-token}}
- name: bob
  context: {{cluster: somewhere, user: bob-exec}}
- name: cert
  context: {{cluster: somewhere, user: cert-only}}
- name: broken
  context: {{cluster: somewhere, user: broken-exec}}
current-context: alice
"#,
            plugin = plugin.display()
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn kubeconfig_token_and_exec_plugin_authenticate_the_cli() {
    let s = spawn_server("{}").await;
    let home = tempfile::tempdir().unwrap();
    let kubeconfig = mk_kubeconfig(home.path(), &s.alice, &s.bob);
    let kc = kubeconfig.to_str().unwrap();

    // The current context's static token: alice files the ticket.
    let filed = json(
        &run(
            &s,
            &[
                "ticket",
                "request",
                "-n",
                "production",
                "checkout-api",
                "--reason",
                "rotate",
                "--kubeconfig",
                kc,
                "-o",
                "json",
            ],
        )
        .await,
    );
    assert_eq!(filed["requester"], "alice", "{filed}");
    let id = filed["id"].as_str().unwrap();

    // Context bob: the exec plugin's token, found through KUBECONFIG as kubectl does.
    let out = bare(binary(), home.path())
        .args(["ticket", "approve", id, "--context", "bob", "-o", "json"])
        .args(["--server", &s.api, "--ca"])
        .arg(s.dir.path().join("ca.crt"))
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .await
        .unwrap();
    let approved = json(&out);
    assert_eq!(approved["decidedBy"], "bob", "{approved}");
    assert!(home.path().join("exec-ran").exists(), "the exec plugin ran");

    // --token wins over the kubeconfig.
    let out = run(
        &s,
        &["audit", "verify", "--kubeconfig", kc, "--token", &s.carol],
    )
    .await;
    assert!(ok(&out).starts_with("Audit chain intact"));

    // redeploy with the kubeconfig user's grant.
    let text = failed(
        &run(
            &s,
            &[
                "redeploy",
                "-n",
                "production",
                "checkout-api",
                "--kubeconfig",
                kc,
            ],
        )
        .await,
    );
    assert!(text.contains("503: no cluster configured"), "{text}");
}

#[tokio::test]
async fn kubeconfig_problems_name_the_context_and_user() {
    let s = spawn_server("{}").await;
    let home = tempfile::tempdir().unwrap();
    let kubeconfig = mk_kubeconfig(home.path(), "rg-dev-stale", &s.bob);
    let kc = kubeconfig.to_str().unwrap();

    let text = failed(&run(&s, &["ticket", "list", "--kubeconfig", kc]).await);
    assert!(
        text.contains(
            r#"401: the API refused the token of kubeconfig user "alice-token" (context "alice")"#
        ),
        "{text}"
    );
    let text = failed(
        &run(
            &s,
            &["ticket", "list", "--kubeconfig", kc, "--context", "cert"],
        )
        .await,
    );
    assert!(
        text.contains(r#"the kubeconfig user "cert-only" (context "cert") has no token"#)
            && text.contains("pass --token or set ROLLGATE_TOKEN"),
        "{text}"
    );
    let text = failed(
        &run(
            &s,
            &["ticket", "list", "--kubeconfig", kc, "--context", "broken"],
        )
        .await,
    );
    assert!(
        text.contains(
            r#"cannot get a token for the kubeconfig user "broken-exec" (context "broken")"#
        ),
        "{text}"
    );
    let text = failed(
        &run(
            &s,
            &["ticket", "list", "--kubeconfig", kc, "--context", "prod"],
        )
        .await,
    );
    assert!(
        text.contains(r#"the kubeconfig has no context "prod" (it has: alice, bob, cert, broken)"#),
        "{text}"
    );
    // No token and no kubeconfig at all ($HOME has no .kube).
    let text = failed(&run(&s, &["ticket", "list"]).await);
    assert!(
        text.starts_with("error: no credentials: pass --token or set ROLLGATE_TOKEN"),
        "{text}"
    );
}

#[tokio::test]
async fn installed_as_kubectl_rollgate_it_speaks_as_kubectl_rollgate() {
    let s = spawn_server("{}").await;
    let bin = tempfile::tempdir().unwrap();
    let plugin = bin.path().join("kubectl-rollgate");
    std::os::unix::fs::symlink(binary(), &plugin).unwrap();

    let out = bare(&plugin, bin.path())
        .arg("--help")
        .output()
        .await
        .unwrap();
    let text = ok(&out);
    assert!(text.contains("Usage: kubectl rollgate <COMMAND>"), "{text}");
    assert!(text.contains("redeploy"), "{text}");

    let out = bare(&plugin, bin.path())
        .args(["ticket", "request", "-n", "production"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(
        stderr(&out).contains("Usage: kubectl rollgate ticket request"),
        "{}",
        stderr(&out)
    );

    let out = bare(&plugin, bin.path())
        .args([
            "ticket",
            "request",
            "-n",
            "production",
            "checkout-api",
            "--reason",
            "why",
        ])
        .args(["--server", &s.api, "--token", &s.alice, "--ca"])
        .arg(s.dir.path().join("ca.crt"))
        .output()
        .await
        .unwrap();
    let text = ok(&out);
    assert!(
        text.contains("An approver (not you) runs: kubectl rollgate ticket approve 1"),
        "{text}"
    );

    // Under its own name it stays `rollgate`.
    let text = ok(&bare(binary(), bin.path())
        .arg("--help")
        .output()
        .await
        .unwrap());
    assert!(text.contains("Usage: rollgate <COMMAND>"), "{text}");
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

#[tokio::test]
async fn ticket_request_pins_images_and_uses() {
    let s = spawn_server("{}").await;
    let args = [
        "ticket",
        "request",
        "-n",
        "production",
        "checkout-api",
        "--reason",
        "ship v3.42",
        "--action",
        "image",
        "--image",
        "registry.example.com/shop/checkout-api:v3.42.0",
        "--max-uses",
        "1",
        "-o",
        "json",
    ];
    let ticket = json(&rollgate(&s, &s.alice, &args).await);
    assert_eq!(
        ticket["images"],
        serde_json::json!(["registry.example.com/shop/checkout-api:v3.42.0"])
    );
    assert_eq!(ticket["maxUses"], 1);
}

#[tokio::test]
async fn ticket_request_with_action_debug_files_shows_and_approves_a_debug_ticket() {
    let s = spawn_server("{}").await;
    let request = [
        "ticket",
        "request",
        "-n",
        "production",
        "checkout-api",
        "--action",
        "debug",
        "--reason",
        "attach a shell to the stuck checkout pod",
    ];

    let text = ok(&rollgate(&s, &s.alice, &request).await);
    assert!(
        text.contains("Ticket RG-000001 filed (id 1, action debug), status PENDING."),
        "{text}"
    );
    let mut as_json = request.to_vec();
    as_json.extend(["-o", "json"]);
    let second = json(&rollgate(&s, &s.alice, &as_json).await);
    assert_eq!(second["action"], "debug", "{second}");
    let mut as_yaml = request.to_vec();
    as_yaml.extend(["-o", "yaml"]);
    let text = ok(&rollgate(&s, &s.alice, &as_yaml).await);
    assert!(text.contains("action: debug"), "{text}");

    let text = ok(&rollgate(&s, &s.bob, &["ticket", "approve", "1"]).await);
    assert!(
        text.contains(
            "alice may now add a debug container (`kubectl debug`) to a pod of production/checkout-api"
        ),
        "{text}"
    );
    let text = ok(&rollgate(&s, &s.bob, &["ticket", "show", "1"]).await);
    let header = text.lines().next().unwrap();
    let row = text.lines().nth(1).unwrap();
    let column = header.find("ACTION").expect(&text);
    assert!(row[column..].starts_with("debug "), "{text}");

    // A debug grant cannot restart: `redeploy` finds no grant for it.
    let text = failed(
        &rollgate(
            &s,
            &s.alice,
            &["redeploy", "-n", "production", "checkout-api"],
        )
        .await,
    );
    assert!(
        text.contains("has a live grant that allows a restart")
            && text.contains("--action restart"),
        "{text}"
    );
    let text = failed(
        &rollgate(
            &s,
            &s.alice,
            &[
                "redeploy",
                "-n",
                "production",
                "checkout-api",
                "--ticket",
                "1",
            ],
        )
        .await,
    );
    assert!(
        text.contains("403: this grant's ticket allows only a debug container"),
        "{text}"
    );
}

#[tokio::test]
async fn ticket_request_help_and_usage_errors_list_the_four_actions() {
    let home = tempfile::tempdir().unwrap();
    let out = bare(binary(), home.path())
        .args(["ticket", "request", "--help"])
        .output()
        .await
        .unwrap();
    let text = ok(&out);
    for action in ["restart", "image", "debug", "any"] {
        assert!(text.contains(&format!("- {action}:")), "{action}: {text}");
    }
    assert!(text.contains("kubectl debug"), "{text}");

    let out = bare(binary(), home.path())
        .args(["ticket", "request", "-n", "production", "checkout-api"])
        .args(["--reason", "why", "--action", "exec"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(
        stderr(&out).contains("[possible values: restart, image, debug, any]"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_show_prints_a_rollouts_note_and_marks_a_debug_container_ephemeral() {
    const RS: &str = "replicaset-set-image-review.json";
    const DEBUG: &str = "pod-debug-review.json";
    let (api, s) = cluster_with([
        stored(RS, "oldObject"),
        stored("pod-set-image-review.json", "oldObject"),
    ])
    .await;
    s.grant("checkout-api", "image", json!({})).await;
    let operation = admitted(&s, RS).await;
    let admission = s
        .audit(&format!("operationId={operation}&event=ADMISSION"))
        .await;
    let admission_id = admission[0]["id"].as_str().unwrap();
    api.apply(stored(RS, "object"));
    let rollout = rollouts_until(&s, &api, &operation, "COMPLETED")
        .await
        .remove(0);
    let rollout_id = rollout["id"].as_str().unwrap();
    let note = "ReplicaSet production/checkout-api-6d9f7c8b5d stores the new pod template; its 1 running pod \
                keeps the old template until it is replaced: only pods it creates from now on use the new one";
    assert_eq!(rollout["reason"], note, "{rollout}");

    let text = ok(&rollgate(&s, &s.carol, &["audit", "show", admission_id]).await);
    let has = |text: &str, line: &str| {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "{line:?} missing from:\n{text}"
        );
    };
    has(
        &text,
        "Image: container app: registry.example.com/shop/checkout-api:v3.41.2@sha256:9f2b5c1d7e3a4b6c8d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e → evil.example.com/miner:1",
    );
    has(
        &text,
        &format!("Rollout: COMPLETED (record {rollout_id}, success true, "),
    );
    has(&text, &format!("Rollout reason: {note}"));
    let text = ok(&rollgate(&s, &s.carol, &["audit", "show", rollout_id]).await);
    has(&text, &format!("Reason: {note}"));
    has(&text, "Rollout: COMPLETED (success true, ");

    s.grant("checkout-api", "debug", json!({})).await;
    let operation = admitted(&s, DEBUG).await;
    let admission = s
        .audit(&format!("operationId={operation}&event=ADMISSION"))
        .await;
    let id = admission[0]["id"].as_str().unwrap();
    let text = ok(&rollgate(&s, &s.carol, &["audit", "show", id]).await);
    has(
        &text,
        "Image: debug container debugger-x7k2p (ephemeral): added, busybox:1.36",
    );
}

#[tokio::test]
async fn audit_show_checkpoint_export_and_offline_verify_work_as_printed() {
    let s = spawn_server("{}").await;
    let dir = s.dir.path().to_owned();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    s.approved_ticket().await;
    allowed(&s.review(&restart_by("alice")).await);
    let admitted = s.audit("decision=ALLOWED").await[0].clone();
    let id = admitted["id"].as_str().unwrap();

    let text = ok(&rollgate(&s, &s.carol, &["audit", "show", id]).await);
    assert!(
        text.contains("ADMISSION") && text.contains("ALLOWED"),
        "{text}"
    );
    assert!(text.contains("Rollout: not recorded yet"), "{text}");
    assert!(text.contains(admitted["hash"].as_str().unwrap()), "{text}");
    let shown = json(&rollgate(&s, &s.carol, &["audit", "show", id, "-o", "json"]).await);
    assert_eq!(shown["id"], id, "{shown}");

    let out = rollgate(&s, &s.carol, &["audit", "checkpoint"]).await;
    let jws = ok(&out).trim().to_owned();
    assert_eq!(jws.split('.').count(), 3, "the JWS alone: {jws}");
    assert!(
        stderr(&out).contains("attests 4 records"),
        "{}",
        stderr(&out)
    );
    std::fs::write(path("cp.jws"), format!("{jws}\n")).unwrap();
    denial(&s.review(&restart_by("bob")).await);

    let out = rollgate(
        &s,
        &s.carol,
        &["audit", "export", "-o", &path("export.jsonl")],
    )
    .await;
    assert_eq!(ok(&out), "", "nothing on stdout when writing a file");
    assert!(
        stderr(&out).contains("audit verify --file"),
        "{}",
        stderr(&out)
    );
    let export = std::fs::read_to_string(path("export.jsonl")).unwrap();
    assert_eq!(export.lines().count(), 6, "{export}");
    let piped = ok(&rollgate(&s, &s.carol, &["audit", "export"]).await);
    assert_eq!(piped, export, "stdout gets the same lines");

    let jwks = s.get(None, "/.well-known/jwks.json").await.body;
    std::fs::write(path("jwks.json"), jwks.to_string()).unwrap();
    let key = rollgate::grants::SigningKey::load(&dir.join("signing-key.pem")).unwrap();
    std::fs::write(path("pub.pem"), key.public_pem()).unwrap();

    // Offline: no token, and a server that is not even asked.
    let offline = |args: Vec<String>| async move {
        let mut cmd = bare(binary(), &dir_of(&args));
        cmd.args(["audit", "verify"]).args(&args);
        cmd.arg("--server").arg("https://127.0.0.1:1");
        cmd.output().await.unwrap()
    };
    let export_file = path("export.jsonl");
    let text = ok(&offline(vec![
        "--file".into(),
        export_file.clone(),
        "--jwks".into(),
        path("jwks.json"),
    ])
    .await);
    assert!(text.starts_with("Audit chain intact: 6 records"), "{text}");
    assert!(
        text.contains("Checked against the trail checkpoint (record 5)"),
        "{text}"
    );
    let text = ok(&offline(vec![
        "--file".into(),
        export_file.clone(),
        "--key".into(),
        path("pub.pem"),
        "--checkpoint".into(),
        path("cp.jws"),
    ])
    .await);
    assert!(
        text.contains("Checked against the supplied checkpoint"),
        "{text}"
    );

    let text = ok(&rollgate(
        &s,
        &s.carol,
        &["audit", "verify", "--checkpoint", &path("cp.jws")],
    )
    .await);
    assert!(
        text.contains("Checked against the supplied checkpoint: 4 records"),
        "{text}"
    );

    let lines: Vec<&str> = export.lines().collect();
    std::fs::write(path("short.jsonl"), lines[..3].join("\n")).unwrap();
    std::fs::write(
        path("edited.jsonl"),
        export.replacen("\"alice\"", "\"mallory\"", 1),
    )
    .unwrap();
    let stranger = rollgate::grants::SigningKey::from_pem(
        rollgate::grants::keys::generate_pem().unwrap().as_bytes(),
    )
    .unwrap();
    std::fs::write(path("stranger.pem"), stranger.public_pem()).unwrap();
    let cases = [
        ("cut", "short.jsonl", "pub.pem", true, "cut off the tail"),
        ("edited", "edited.jsonl", "pub.pem", false, "was edited"),
        (
            "unknown key",
            "export.jsonl",
            "stranger.pem",
            false,
            "is not a valid checkpoint",
        ),
    ];
    for (name, file, key, with_checkpoint, says) in cases {
        let mut args = vec!["--file".into(), path(file), "--key".into(), path(key)];
        if with_checkpoint {
            args.extend(["--checkpoint".into(), path("cp.jws")]);
        }
        let out = offline(args).await;
        assert!(
            stdout(&out).contains("Audit chain BROKEN"),
            "{name}: {}",
            stdout(&out)
        );
        let err = failed(&out);
        assert!(err.contains(says), "{name}: {err}");
    }
    let usage = offline(vec!["--file".into(), export_file]).await;
    assert_eq!(
        usage.status.code(),
        Some(2),
        "--file needs keys: {}",
        stderr(&usage)
    );

    let denied = rollgate(
        &s,
        &s.alice,
        &["audit", "export", "-o", &path("alice.jsonl")],
    )
    .await;
    assert!(failed(&denied).contains("403"), "{}", stderr(&denied));
    assert!(!dir.join("alice.jsonl").exists(), "no partial file is left");
}

/// The directory of the first path among `args` (a HOME for the offline run).
fn dir_of(args: &[String]) -> std::path::PathBuf {
    args.iter()
        .find_map(|a| Path::new(a).parent().filter(|p| p.is_dir()))
        .unwrap_or(Path::new("/"))
        .to_owned()
}

/// The README's text between `start` (included) and the first `end` after it.
fn readme_block(start: &str, end: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let from = readme
        .find(start)
        .unwrap_or_else(|| panic!("README has no {start:?}"));
    let to = from + readme[from..].find(end).unwrap();
    readme[from..to].to_owned()
}

#[tokio::test]
async fn readme_auditor_session_and_python_check_work_as_printed() {
    let s = spawn_server("{}").await;
    denial(&s.review(&restart_by("alice")).await);
    s.approved_ticket().await;
    allowed(&s.review(&restart_by("alice")).await);
    let work = tempfile::tempdir().unwrap();
    let bin_dir = binary().parent().unwrap().to_owned();
    let sh = |script: String| {
        let path = work.path().join("block.sh");
        std::fs::write(&path, format!("set -e\n{script}\n")).unwrap();
        let mut cmd = bare(Path::new("bash"), work.path());
        cmd.arg(&path)
            .current_dir(work.path())
            .env(
                "PATH",
                format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()),
            )
            .env("ROLLGATE_SERVER", &s.api)
            .env("ROLLGATE_CA", s.dir.path().join("ca.crt"))
            .env("CAROL", &s.carol);
        cmd.output()
    };

    let session = readme_block("<!-- auditor-session", "\n```\n");
    let session = session.split_once("```sh\n").unwrap().1.to_owned();
    let out = sh(session).await.unwrap();
    let text = ok(&out);
    for expected in [
        "production/checkout-api",
        "Rollout: not recorded yet",
        "Audit chain intact: 5 records",
        "Checked against the supplied checkpoint: 5 records",
        "Audit chain intact: 6 records",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from\n{text}");
    }
    assert!(
        stderr(&out).contains("Checkpoint record 6 attests 5 records"),
        "{}",
        stderr(&out)
    );

    let python = readme_block("python3 - audit.jsonl jwks.json <<'EOF'", "\nEOF\n") + "\nEOF";
    let out = sh(python.clone()).await.unwrap();
    assert!(
        ok(&out).starts_with("OK: 6 records, head "),
        "{}",
        stdout(&out)
    );
    let export = work.path().join("audit.jsonl");
    let text = std::fs::read_to_string(&export).unwrap();
    std::fs::write(&export, text.replacen("\"alice\"", "\"mallory\"", 1)).unwrap();
    let out = sh(python).await.unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("BROKEN at record 1"),
        "{}",
        stderr(&out)
    );
}
