//! The command line: `rollgate serve` and the client commands (`ticket`,
//! `grant`, `audit`) that talk to the ticket API over HTTPS. Installed as
//! `kubectl-rollgate`, the same binary works as `kubectl rollgate …`.
//!
//! Types here are clap's raw view; [`crate::config::Config::load`] turns
//! [`ServeArgs`] into a validated config. Client commands live in [`client`].

pub mod client;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::FailureMode;

/// rollgate: no restart or image change in protected namespaces without an approved ticket.
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
    /// Read and verify the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
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
    /// Store: sqlite://PATH (default) or redis://HOST:PORT[/DB] (also rediss://, redis+unix://).
    #[arg(long, env = "ROLLGATE_STORE")]
    pub store: Option<String>,
    /// File holding the Redis password (e.g. a mounted Secret); re-read when it changes.
    #[arg(long, env = "ROLLGATE_REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<PathBuf>,
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

/// Where and as whom a client command talks to the API.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Ticket API URL.
    #[arg(
        long,
        env = "ROLLGATE_SERVER",
        default_value = "https://127.0.0.1:8444"
    )]
    pub server: String,
    /// Bearer token (a demo token in dev mode, your Kubernetes token in a cluster).
    #[arg(long, env = "ROLLGATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) that signed the API's certificate.
    #[arg(long, env = "ROLLGATE_CA")]
    pub ca: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
    /// Only the id (tickets) or jti (grants), for scripts.
    Name,
}

#[derive(Debug, Subcommand)]
pub enum TicketCommand {
    /// File a redeploy ticket.
    Request {
        /// Application (the workload's app.kubernetes.io/name label, else app, else its name).
        application: String,
        #[arg(short = 'n', long)]
        namespace: String,
        /// Why the redeploy is needed (1 to 1000 characters).
        #[arg(long)]
        reason: String,
        #[arg(long, value_enum, default_value_t = ActionArg::Any)]
        action: ActionArg,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActionArg {
    Restart,
    Image,
    Any,
}

impl ActionArg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Image => "image",
            Self::Any => "any",
        }
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
    /// Verify the hash chain.
    Verify {
        #[command(flatten)]
        client: ClientArgs,
    },
}
