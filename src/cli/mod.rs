//! The command line: `rollgate serve` and the client commands (`ticket`,
//! `grant`, `redeploy`, `audit`) that talk to the ticket API over HTTPS.
//! Installed as `kubectl-rollgate`, the same binary works as
//! `kubectl rollgate …` and says so in its usage lines ([`parse`]).
//!
//! Types here are clap's raw view; [`crate::config::Config::load`] turns
//! [`ServeArgs`] into a validated config. Client commands live in [`client`],
//! the HTTPS connection and its credentials in [`api`], tables in [`output`].

pub mod api;
pub mod audit;
pub mod client;
mod output;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::policy::FailureMode;
use crate::tickets::Action;

/// rollgate: no restart, image or other change of what runs in protected namespaces without an approved ticket.
#[derive(Debug, Parser)]
#[command(name = "rollgate", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the webhook, the ticket API and the admin listener.
    Serve(ServeArgs),
    /// File, list, decide and fetch redeploy tickets.
    #[command(subcommand)]
    Ticket(TicketCommand),
    /// List and revoke grants.
    #[command(subcommand)]
    Grant(GrantCommand),
    /// Restart an application through rollgate with the grant of your approved ticket.
    Redeploy(RedeployArgs),
    /// Read and verify the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Make the CA, serving certificate and signing key of a cluster install.
    #[command(subcommand)]
    Certs(CertsCommand),
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Write a CA and a serving certificate for the Services' DNS names into
    /// DIR and print the webhook's caBundle (an existing CA in DIR is reused).
    Generate(CertsGenerateArgs),
}

/// Flags of `rollgate certs generate`.
#[derive(Debug, Args)]
pub struct CertsGenerateArgs {
    /// Service whose DNS names the certificate carries (repeat: the webhook's and the API's).
    #[arg(long = "service", value_name = "S", required = true)]
    pub services: Vec<String>,
    /// Namespace of the Services.
    #[arg(short = 'n', long, value_name = "N")]
    pub namespace: String,
    /// Directory for ca.crt, ca.key, tls.crt, tls.key (and signing-key.pem).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// More DNS names or IP addresses for the certificate (e.g. the API's Ingress host).
    #[arg(long = "dns", value_name = "NAME")]
    pub extra_names: Vec<String>,
    /// Days the serving certificate is valid.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u16).range(1..=3650))]
    pub days: u16,
    /// Make a new CA even when DIR has one (the caBundle changes).
    #[arg(long)]
    pub new_ca: bool,
    /// Also write an Ed25519 grant signing key, DIR/signing-key.pem, unless it exists.
    #[arg(long)]
    pub signing_key: bool,
    /// Print a kubectl patch command setting the caBundle of this ValidatingWebhookConfiguration
    /// (its two entries) instead of the bare caBundle.
    #[arg(long, value_name = "WEBHOOK_CONFIGURATION")]
    pub patch: Option<String>,
}

/// The name a plugin binary must have for kubectl to run it as `kubectl rollgate`.
pub const KUBECTL_PLUGIN_NAME: &str = "kubectl-rollgate";

/// Parses the process's arguments, as [`Parser::parse`] does, except that
/// usage and help say `kubectl rollgate` when the binary was started as
/// `kubectl-rollgate` (kubectl runs plugins under their file name). Exits
/// with clap's message and code on bad arguments.
pub fn parse() -> Cli {
    let mut command = Cli::command();
    if invoked_as_plugin() {
        command = command.bin_name("kubectl rollgate");
    }
    let mut matches = command.get_matches();
    Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.exit())
}

/// How the user runs this program: `kubectl rollgate` or `rollgate`, for the
/// commands that output and error messages suggest.
pub fn program() -> &'static str {
    if invoked_as_plugin() {
        "kubectl rollgate"
    } else {
        "rollgate"
    }
}

fn invoked_as_plugin() -> bool {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|argv0| argv0.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .is_some_and(|stem| stem == KUBECTL_PLUGIN_NAME)
}

/// Flags of `rollgate serve`; each may also come from its `ROLLGATE_*` variable.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// YAML config file (flags and ROLLGATE_* variables override it).
    #[arg(long, env = "ROLLGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Dev mode: loopback only, self-made CA and keys, demo users, embedded store.
    #[arg(long, env = "ROLLGATE_DEV")]
    pub dev: bool,
    /// Directory of dev mode's state.
    #[arg(long, env = "ROLLGATE_DEV_DIR", default_value = ".rollgate-dev")]
    pub dev_dir: PathBuf,
    /// Webhook listener (HTTPS); port 0 picks a free port.
    #[arg(long, env = "ROLLGATE_WEBHOOK_ADDR")]
    pub webhook_addr: Option<SocketAddr>,
    /// Ticket API listener (HTTPS).
    #[arg(long, env = "ROLLGATE_API_ADDR")]
    pub api_addr: Option<SocketAddr>,
    /// Admin listener (HTTP: metrics and probes).
    #[arg(long, env = "ROLLGATE_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,
    /// Store: sqlite://PATH (default), redis://HOST:PORT[/DB] (also rediss://, redis+unix://),
    /// redis+sentinel://HOST:26379[,HOST…]/SERVICE[/DB] or redis+cluster://HOST:6379[,HOST…].
    #[arg(long, env = "ROLLGATE_STORE")]
    pub store: Option<String>,
    /// File holding the Redis password (e.g. a mounted Secret); re-read when it changes.
    #[arg(long, env = "ROLLGATE_REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<PathBuf>,
    /// File holding the Redis Sentinels' own password (redis+sentinel:// only).
    #[arg(long, env = "ROLLGATE_REDIS_SENTINEL_PASSWORD_FILE")]
    pub redis_sentinel_password_file: Option<PathBuf>,
    /// Serving certificate (PEM), re-read when it changes.
    #[arg(long, env = "ROLLGATE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Serving key (PEM), re-read when it changes.
    #[arg(long, env = "ROLLGATE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Ed25519 grant signing key (PKCS#8 PEM).
    #[arg(long, env = "ROLLGATE_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// Demo users file (users.json) for API authentication.
    #[arg(long, env = "ROLLGATE_USERS_FILE")]
    pub users_file: Option<PathBuf>,
    /// Grant lifetime, e.g. 2h or 90m.
    #[arg(long, env = "ROLLGATE_GRANT_TTL")]
    pub grant_ttl: Option<String>,
    /// What to do with gated changes when the store is unreachable.
    #[arg(long, env = "ROLLGATE_FAILURE_MODE", value_enum)]
    pub failure_mode: Option<FailureMode>,
    /// API URL printed in denial messages (default: from --api-addr).
    #[arg(long, env = "ROLLGATE_PUBLIC_API_URL")]
    pub public_api_url: Option<String>,
    /// Kubeconfig of the cluster (namespace labels, later rollouts and TokenReview).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "ROLLGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Also write every audit record this replica appends as a JSON line to FILE (- for stdout),
    /// for log shippers (config key audit.logFile).
    #[arg(long, env = "ROLLGATE_AUDIT_LOG", value_name = "FILE")]
    pub audit_log: Option<String>,
}

impl ValueEnum for FailureMode {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Closed, Self::Open]
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(match self {
            Self::Closed => "closed",
            Self::Open => "open",
        }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where and as whom a client command talks to the API. The token is
/// `--token`, else `ROLLGATE_TOKEN`, else the credentials of the kubeconfig's
/// user (static token, token file, exec plugin or auth provider), as kubectl
/// would send them to the cluster.
#[derive(Clone, Args)]
pub struct ConnectArgs {
    /// Ticket API URL.
    #[arg(
        long,
        env = "ROLLGATE_SERVER",
        default_value = "https://127.0.0.1:8444"
    )]
    pub server: String,
    /// Bearer token (a demo token in dev mode, your Kubernetes token in a cluster);
    /// without it, the current kubeconfig user's credentials.
    #[arg(long, env = "ROLLGATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) that signed the API's certificate (default: the system's roots).
    #[arg(long, env = "ROLLGATE_CA")]
    pub ca: Option<PathBuf>,
    /// Kubeconfig whose user's credentials are used when no token is given
    /// (default: KUBECONFIG, else ~/.kube/config, as kubectl).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context whose user is used (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
}

impl std::fmt::Debug for ConnectArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectArgs")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca", &self.ca)
            .field("kubeconfig", &self.kubeconfig)
            .field("context", &self.context)
            .finish()
    }
}

/// [`ConnectArgs`] and how to print the answer.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
    /// Only the id (tickets, audit records), jti (grants) or operation id (redeploy), for scripts.
    Name,
}

/// Flags of `rollgate redeploy`.
#[derive(Debug, Args)]
pub struct RedeployArgs {
    /// Application (the workload's app.kubernetes.io/name label, else app, else its name).
    pub application: String,
    /// Namespace of the application.
    #[arg(short = 'n', long)]
    pub namespace: String,
    /// Workload kind, when the application has several workloads.
    #[arg(long, value_enum)]
    pub kind: Option<KindArg>,
    /// Workload name, when the application has several workloads.
    #[arg(long)]
    pub name: Option<String>,
    /// Why, recorded in rollgate's log.
    #[arg(long)]
    pub reason: Option<String>,
    /// Ticket whose grant to use (default: your newest approved ticket for the application with a live grant).
    #[arg(long)]
    pub ticket: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A gated workload kind, spelled as Kubernetes does (any case accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "PascalCase")]
pub enum KindArg {
    #[value(alias = "deployment", alias = "deploy")]
    Deployment,
    #[value(alias = "statefulset", alias = "sts")]
    StatefulSet,
    #[value(alias = "daemonset", alias = "ds")]
    DaemonSet,
}

impl KindArg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TicketCommand {
    /// File a redeploy ticket.
    Request {
        /// Application (the workload's app.kubernetes.io/name label, else app, else its name).
        application: String,
        /// Namespace of the application.
        #[arg(short = 'n', long)]
        namespace: String,
        /// Why the redeploy is needed (1 to 1000 characters).
        #[arg(long)]
        reason: String,
        /// What the grant may allow: a restart, an image change, a debug
        /// container in a pod (`kubectl debug`), or any gated change.
        #[arg(long, value_enum, default_value_t = ActionArg::Any)]
        action: ActionArg,
        /// Pin an image change to this exact reference (repeat for several containers).
        #[arg(long = "image", value_name = "REF")]
        images: Vec<String>,
        /// Pin how many changes the grant admits (e.g. 1 for a single restart).
        #[arg(long)]
        max_uses: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List tickets.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[arg(long)]
        application: Option<String>,
        #[arg(long)]
        requester: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one ticket.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Approve a ticket (approvers; never your own).
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Reject a ticket (approvers).
    Reject {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel your own pending ticket.
    Cancel {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the grant token of your approved ticket.
    Grant {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `--action` of `ticket request`: the ticket actions of DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActionArg {
    /// Restart the workload (`kubectl rollout restart`, `rollgate redeploy`).
    Restart,
    /// Change container images (`kubectl set image`).
    Image,
    /// Add an ephemeral container to a pod (`kubectl debug`).
    Debug,
    /// Any gated change: restart, image, debug or another pod-template change.
    Any,
}

impl ActionArg {
    /// The ticket action this flag value asks for.
    pub fn action(self) -> Action {
        match self {
            Self::Restart => Action::Restart,
            Self::Image => Action::Image,
            Self::Debug => Action::Debug,
            Self::Any => Action::Any,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.action().as_str()
    }
}

#[derive(Debug, Subcommand)]
pub enum GrantCommand {
    /// List active grants (approvers, auditors).
    List {
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a grant at once (approvers).
    Revoke {
        jti: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit records, newest first.
    List {
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[arg(long)]
        application: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        event: Option<String>,
        #[arg(long)]
        decision: Option<String>,
        /// RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        /// The `next` cursor of a previous page.
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one record: its reason, its image changes (a kubectl debug container marked
    /// ephemeral) and its operation's latest rollout outcome with the rollout's note.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Verify the hash chain and every checkpoint's signature (exits 1 when broken).
    /// With --file, verify an export offline, without a server.
    #[command(group(clap::ArgGroup::new("public_keys").args(["jwks", "keys"]).multiple(true)))]
    Verify {
        /// Also check the chain against this checkpoint (a file holding the JWS
        /// `audit checkpoint` printed, or its `-o json` answer): fewer records
        /// than it attests means records were cut off the tail.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// Verify this export (`audit export`) instead of asking the server.
        #[arg(long, value_name = "EXPORT", requires = "public_keys")]
        file: Option<PathBuf>,
        /// The public keys as JWKS (GET /.well-known/jwks.json), for --file.
        #[arg(long, value_name = "FILE", requires = "file")]
        jwks: Option<PathBuf>,
        /// A public key as PEM (SubjectPublicKeyInfo), for --file; repeat for old keys.
        #[arg(long = "key", value_name = "PEM", requires = "file")]
        keys: Vec<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Sign a checkpoint of the chain now and print it (the JWS alone, to keep
    /// in a file and verify against later); answers the newest record instead
    /// when that already is a checkpoint.
    Checkpoint {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write every record, oldest first, as JSON lines (verify it offline with
    /// `audit verify --file`).
    Export {
        /// Write to FILE instead of stdout.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        file: Option<PathBuf>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_flag_offers_exactly_the_ticket_actions() {
        let offered: Vec<Action> = ActionArg::value_variants()
            .iter()
            .map(|a| a.action())
            .collect();
        assert_eq!(offered, Action::ALL);
        for arg in ActionArg::value_variants() {
            let name = arg.to_possible_value().expect("no variant is skipped");
            assert_eq!(name.get_name(), arg.as_str(), "--action {}", arg.as_str());
        }
    }
}
