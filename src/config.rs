//! Configuration: one [`Config`] struct built from a YAML file, `ROLLGATE_*`
//! environment variables and command-line flags, in rising precedence.
//!
//! Parsing happens in two stages (as ripgrep does): clap produces the raw
//! [`ServeArgs`] (flags and env), then [`Config::load`] merges them over the
//! file and validates every value, so a bad config fails at start with an
//! error naming the key. `Config` is a plain struct: tests build it directly.
//! It holds *paths* to secrets, never their values.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::auth::roles::{MAX_REQUIRED_APPROVALS, RequiredApprovals, Roles};
use crate::cli::ServeArgs;
use crate::grants::{GrantSettings, MAX_LEEWAY};
use crate::policy::FailureMode;
use crate::policy::{Policy, WorkloadKind};
use crate::store::StoreConfig;

/// A configuration problem, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> Error {
    Error::Invalid {
        key,
        reason: reason.into(),
    }
}

/// Paths of the serving certificate and key (PEM), re-read when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Every key of `roles.requiredApprovals` is `"*"` or a DNS-1123 label,
/// every count within 1..=[`MAX_REQUIRED_APPROVALS`].
fn validate_required_approvals(rules: &RequiredApprovals) -> Result<(), Error> {
    const KEY: &str = "roles.requiredApprovals";
    for (namespace, count) in rules.counts() {
        if namespace != "*" {
            crate::names::validate_dns_label(namespace).map_err(|reason| {
                invalid(
                    KEY,
                    format!("{namespace:?}: {reason}, or \"*\" for every namespace"),
                )
            })?;
        }
        if !(1..=MAX_REQUIRED_APPROVALS).contains(count) {
            return Err(invalid(
                KEY,
                format!("{namespace:?}: {count} is not between 1 and {MAX_REQUIRED_APPROVALS}"),
            ));
        }
    }
    Ok(())
}

/// The whole runtime configuration of `rollgate serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub webhook_addr: SocketAddr,
    pub api_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// Set in `--dev` mode: the directory holding the CA, keys, store and users.
    pub dev_dir: Option<PathBuf>,
    pub tls: TlsFiles,
    /// PKCS#8 PEM Ed25519 key that signs grants and checkpoints.
    pub signing_key: PathBuf,
    /// Extra PEM public keys accepted when verifying grants (key rotation).
    pub verification_keys: Vec<PathBuf>,
    pub store: StoreConfig,
    /// File holding the Redis password (a mounted Secret), re-read when it
    /// changes; never logged.
    pub redis_password_file: Option<PathBuf>,
    /// File holding the Redis Sentinels' own password; never logged.
    pub redis_sentinel_password_file: Option<PathBuf>,
    /// Time budget of one store round trip on the webhook path.
    pub store_timeout: Duration,
    pub policy: Policy,
    pub grants: GrantSettings,
    pub roles: Roles,
    /// Demo users file (`users.json`) authenticating API callers; dev mode only.
    pub users_file: Option<PathBuf>,
    /// Base URL of the ticket API, as users should reach it; printed in denials.
    pub public_api_url: String,
    pub kubeconfig: Option<PathBuf>,
    /// How long a PENDING ticket waits for a decision before it expires.
    pub pending_ticket_ttl: Duration,
    /// How often certificate and key files are checked for rotation.
    pub tls_reload_interval: Duration,
    /// How often expired tickets and grants are swept (and recorded).
    pub sweep_interval: Duration,
    /// Where ticket and grant events are sent (`notifications`); empty: nowhere.
    pub notifications: Vec<crate::notify::Receiver>,
    /// Most tickets one user may file per window; `None`: unlimited.
    pub ticket_rate_limit: Option<crate::policy::RateLimit>,
    /// Checkpoints and log shipping of the audit trail (`audit`).
    pub audit: AuditSettings,
}

/// The `audit` section: signed checkpoints and log shipping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// How often a checkpoint is made when records were appended since the
    /// last one (`audit.checkpointInterval`, default 10m); `None` (`0s`): never.
    pub checkpoint_interval: Option<Duration>,
    /// Where every appended record is also written as a JSON line
    /// (`audit.logFile`, `--audit-log`; `-` is stdout); `None`: nowhere.
    pub log_file: Option<crate::audit::ship::LogTarget>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            checkpoint_interval: Some(DEFAULT_CHECKPOINT_INTERVAL),
            log_file: None,
        }
    }
}

/// Default of `audit.checkpointInterval`.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(600);

/// The YAML file's shape. Every key is optional; unknown keys are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileConfig {
    webhook_addr: Option<String>,
    api_addr: Option<String>,
    admin_addr: Option<String>,
    tls: Option<FileTls>,
    signing_key_file: Option<PathBuf>,
    #[serde(default)]
    verification_key_files: Vec<PathBuf>,
    store: Option<String>,
    redis_password_file: Option<PathBuf>,
    redis_sentinel_password_file: Option<PathBuf>,
    store_timeout: Option<String>,
    policy: Option<FilePolicy>,
    grants: Option<FileGrants>,
    roles: Option<Roles>,
    users_file: Option<PathBuf>,
    public_api_url: Option<String>,
    service_account_username: Option<String>,
    pending_ticket_ttl: Option<String>,
    tls_reload_interval: Option<String>,
    sweep_interval: Option<String>,
    #[serde(default)]
    notifications: Vec<crate::notify::ReceiverSpec>,
    audit: Option<FileAudit>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileAudit {
    checkpoint_interval: Option<String>,
    log_file: Option<String>,
}

fn audit_settings(file: Option<FileAudit>, args: &ServeArgs) -> Result<AuditSettings, Error> {
    let file = file.unwrap_or_default();
    let checkpoint_interval = match file.checkpoint_interval.as_deref() {
        None => Some(DEFAULT_CHECKPOINT_INTERVAL),
        Some(v) => {
            let every = parse_duration("audit.checkpointInterval", v)?;
            if !every.is_zero()
                && !(Duration::from_millis(100)..=Duration::from_secs(7 * 86400)).contains(&every)
            {
                return Err(invalid(
                    "audit.checkpointInterval",
                    "must be between 100ms and 7d, or 0s for no periodic checkpoints",
                ));
            }
            (!every.is_zero()).then_some(every)
        }
    };
    let log_file = match args.audit_log.as_deref().or(file.log_file.as_deref()) {
        None => None,
        Some("") => {
            return Err(invalid(
                "audit.logFile",
                "must be a file path, or - for stdout",
            ));
        }
        Some(v) => Some(crate::audit::ship::LogTarget::parse(v)),
    };
    Ok(AuditSettings {
        checkpoint_interval,
        log_file,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FilePolicy {
    protected_namespaces: Option<Vec<String>>,
    protected_label: Option<String>,
    gated_kinds: Option<Vec<String>>,
    exempt_users: Option<Vec<String>>,
    exempt_groups: Option<Vec<String>>,
    gate_any_template_change: Option<bool>,
    failure_mode: Option<FailureMode>,
    fail_open_namespaces: Option<Vec<String>>,
    rate_limit: Option<FileRateLimit>,
    ticket_rate_limit: Option<FileRateLimit>,
}

/// `{limit: 6, window: 1h}`; `limit: 0` turns the limit off.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileRateLimit {
    limit: u32,
    window: Option<String>,
}

fn rate_limit(
    key: &'static str,
    file: Option<FileRateLimit>,
    default: crate::policy::RateLimit,
) -> Result<Option<crate::policy::RateLimit>, Error> {
    let Some(file) = file else {
        return Ok(Some(default));
    };
    if file.limit == 0 {
        return Ok(None);
    }
    let window = match file.window.as_deref() {
        Some(w) => parse_duration(key, w)?,
        None => default.window,
    };
    if window.is_zero() || window > Duration::from_secs(7 * 86400) {
        return Err(invalid(key, "window must be between 1s and 7d"));
    }
    Ok(Some(crate::policy::RateLimit {
        limit: file.limit,
        window,
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileGrants {
    ttl: Option<String>,
    leeway: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl Config {
    /// Merges the config file named by `args.config` (if any), then the
    /// environment and flags already folded into `args` by clap, then applies
    /// `--dev` defaults for whatever is still unset, and validates the result.
    pub fn load(args: &ServeArgs) -> Result<Self, Error> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Self::merge(file, args)
    }

    /// Parses a YAML document as the config file (used by [`Config::load`] and tests).
    pub fn from_yaml(yaml: &str, args: &ServeArgs) -> Result<Self, Error> {
        let file: FileConfig = serde_saphyr::from_str(yaml).map_err(|source| Error::Parse {
            path: PathBuf::from("<inline>"),
            source: Box::new(source),
        })?;
        Self::merge(file, args)
    }

    fn merge(file: FileConfig, args: &ServeArgs) -> Result<Self, Error> {
        let dev_dir = args.dev.then(|| args.dev_dir.clone());
        let dev = dev_dir.is_some();
        // Dev mode binds loopback only: it runs with demo tokens.
        let default_host = if dev { "127.0.0.1" } else { "0.0.0.0" };

        let webhook_addr = pick_addr(
            "webhookAddr",
            args.webhook_addr,
            file.webhook_addr,
            default_host,
            8443,
        )?;
        let api_addr = pick_addr("apiAddr", args.api_addr, file.api_addr, default_host, 8444)?;
        let admin_addr = pick_addr(
            "adminAddr",
            args.admin_addr,
            file.admin_addr,
            default_host,
            9090,
        )?;

        let file_tls = file.tls.unwrap_or_default();
        let tls = match (
            args.tls_cert.clone().or(file_tls.cert_file),
            args.tls_key.clone().or(file_tls.key_file),
            &dev_dir,
        ) {
            (Some(cert), Some(key), _) => TlsFiles { cert, key },
            (None, None, Some(dir)) => TlsFiles {
                cert: dir.join("tls.crt"),
                key: dir.join("tls.key"),
            },
            (None, None, None) => {
                return Err(invalid(
                    "tls.certFile",
                    "a serving certificate is required outside --dev: set tls.certFile and tls.keyFile (or --tls-cert/--tls-key)",
                ));
            }
            _ => {
                return Err(invalid(
                    "tls.keyFile",
                    "tls.certFile and tls.keyFile must be set together",
                ));
            }
        };

        let signing_key = match (args.signing_key.clone().or(file.signing_key_file), &dev_dir) {
            (Some(path), _) => path,
            (None, Some(dir)) => dir.join("signing-key.pem"),
            (None, None) => {
                return Err(invalid(
                    "signingKeyFile",
                    "a grant signing key is required outside --dev (PKCS#8 PEM Ed25519; `rollgate certs generate` can make one)",
                ));
            }
        };

        let store = match (args.store.as_deref().or(file.store.as_deref()), &dev_dir) {
            (Some(value), _) => {
                StoreConfig::parse(value).map_err(|e| invalid("store", e.to_string()))?
            }
            (None, Some(dir)) => StoreConfig::Sqlite(dir.join("rollgate.db")),
            (None, None) => StoreConfig::Sqlite(PathBuf::from("rollgate.db")),
        };

        let mut file_policy = file.policy.unwrap_or_default();
        let ticket_rate_limit = rate_limit(
            "policy.ticketRateLimit",
            file_policy.ticket_rate_limit.take(),
            crate::policy::RateLimit {
                limit: 20,
                window: Duration::from_secs(3600),
            },
        )?;
        let mut protected: BTreeSet<String> = file_policy
            .protected_namespaces
            .unwrap_or_default()
            .into_iter()
            .collect();
        if dev && protected.is_empty() {
            protected.insert("production".into());
        }
        for ns in &protected {
            crate::names::validate_dns_label(ns).map_err(|reason| {
                invalid("policy.protectedNamespaces", format!("{ns:?}: {reason}"))
            })?;
        }
        let gated_kinds = match file_policy.gated_kinds {
            None => WorkloadKind::ALL.to_vec(),
            Some(kinds) => kinds
                .iter()
                .map(|k| {
                    WorkloadKind::from_kind(k).ok_or_else(|| {
                        invalid(
                            "policy.gatedKinds",
                            format!("{k:?} is not one of Deployment, StatefulSet, DaemonSet, ReplicaSet, CronJob, Pod"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let policy = Policy {
            protected_namespaces: protected,
            protected_label: file_policy
                .protected_label
                .unwrap_or_else(|| crate::policy::PROTECTED_LABEL.into()),
            gated_kinds,
            exempt_users: file_policy
                .exempt_users
                .unwrap_or_default()
                .into_iter()
                .collect(),
            exempt_groups: file_policy
                .exempt_groups
                .unwrap_or_default()
                .into_iter()
                .collect(),
            gate_any_template_change: file_policy.gate_any_template_change.unwrap_or(true),
            rate_limit: rate_limit(
                "policy.rateLimit",
                file_policy.rate_limit.take(),
                crate::policy::RateLimit::default(),
            )?,
            fail_open_namespaces: file_policy
                .fail_open_namespaces
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            failure_mode: args
                .failure_mode
                .or(file_policy.failure_mode)
                .unwrap_or_default(),
            rollgate_username: file
                .service_account_username
                .clone()
                .unwrap_or_else(|| crate::policy::DEFAULT_ROLLGATE_USERNAME.into()),
        };

        for ns in &policy.fail_open_namespaces {
            crate::names::validate_dns_label(ns).map_err(|reason| {
                invalid("policy.failOpenNamespaces", format!("{ns:?}: {reason}"))
            })?;
        }

        let file_grants = file.grants.unwrap_or_default();
        let defaults = GrantSettings::default();
        let grants = GrantSettings {
            ttl: match args.grant_ttl.as_deref().or(file_grants.ttl.as_deref()) {
                Some(v) => parse_duration("grants.ttl", v)?,
                None => defaults.ttl,
            },
            leeway: match file_grants.leeway.as_deref() {
                Some(v) => parse_duration("grants.leeway", v)?,
                None => defaults.leeway,
            },
            issuer: file_grants.issuer.unwrap_or(defaults.issuer),
            audience: file_grants.audience.unwrap_or(defaults.audience),
        };
        if grants.ttl.is_zero() || grants.ttl > Duration::from_secs(7 * 24 * 3600) {
            return Err(invalid("grants.ttl", "must be between 1s and 7d"));
        }
        if grants.leeway > MAX_LEEWAY {
            return Err(invalid("grants.leeway", "must be at most 30s"));
        }
        if grants.issuer.is_empty() {
            return Err(invalid("grants.issuer", "must not be empty"));
        }
        if grants.audience.is_empty() {
            return Err(invalid("grants.audience", "must not be empty"));
        }

        let mut roles = file.roles.unwrap_or_default();
        validate_required_approvals(&roles.required_approvals)?;
        let users_file = args
            .users_file
            .clone()
            .or(file.users_file)
            .or_else(|| dev_dir.as_ref().map(|d| d.join("users.json")));
        if dev {
            // The demo roles of DESIGN.md: bob approves, carol audits, everywhere.
            let approvers = roles.approvers.entry("*".into()).or_default();
            approvers
                .groups
                .insert(crate::auth::DEMO_APPROVER_GROUP.into());
            let auditors = roles.auditors.entry("*".into()).or_default();
            auditors
                .groups
                .insert(crate::auth::DEMO_AUDITOR_GROUP.into());
        }

        let store_timeout = match file.store_timeout.as_deref() {
            Some(v) => parse_duration("storeTimeout", v)?,
            None => Duration::from_secs(2),
        };
        if store_timeout.is_zero() || store_timeout > Duration::from_secs(10) {
            return Err(invalid(
                "storeTimeout",
                "must be between 1ms and 10s (the API server gives a webhook at most 30s, rollgate's chart 3s)",
            ));
        }
        let pending_ticket_ttl = match file.pending_ticket_ttl.as_deref() {
            Some(v) => parse_duration("pendingTicketTtl", v)?,
            None => Duration::from_secs(24 * 3600),
        };
        let tls_reload_interval = match file.tls_reload_interval.as_deref() {
            Some(v) => parse_duration("tlsReloadInterval", v)?,
            None => Duration::from_secs(10),
        };

        let public_api_url = match args.public_api_url.clone().or(file.public_api_url) {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if api_addr.ip().is_unspecified() => {
                format!("https://rollgate-api.rollgate.svc:{}", api_addr.port())
            }
            None => format!("https://{api_addr}"),
        };
        if !public_api_url.starts_with("https://") {
            return Err(invalid("publicApiUrl", "must be an https:// URL"));
        }

        let notifications =
            crate::notify::receivers(file.notifications).map_err(|e| invalid(e.key, e.reason))?;

        Ok(Self {
            webhook_addr,
            api_addr,
            admin_addr,
            dev_dir,
            tls,
            signing_key,
            verification_keys: file.verification_key_files,
            store,
            redis_password_file: args
                .redis_password_file
                .clone()
                .or(file.redis_password_file),
            redis_sentinel_password_file: args
                .redis_sentinel_password_file
                .clone()
                .or(file.redis_sentinel_password_file),
            store_timeout,
            policy,
            grants,
            roles,
            users_file,
            public_api_url,
            kubeconfig: args.kubeconfig.clone(),
            pending_ticket_ttl,
            tls_reload_interval,
            ticket_rate_limit,
            sweep_interval: match file.sweep_interval.as_deref() {
                Some(v) => parse_duration("sweepInterval", v)?,
                None => Duration::from_secs(15),
            },
            notifications,
            audit: audit_settings(file.audit, args)?,
        })
    }

    /// True in `--dev` mode.
    pub fn is_dev(&self) -> bool {
        self.dev_dir.is_some()
    }
}

fn read_file(path: &Path) -> Result<FileConfig, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_saphyr::from_str(&text).map_err(|source| Error::Parse {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

fn pick_addr(
    key: &'static str,
    flag: Option<SocketAddr>,
    file: Option<String>,
    default_host: &str,
    default_port: u16,
) -> Result<SocketAddr, Error> {
    if let Some(addr) = flag {
        return Ok(addr);
    }
    match file {
        Some(text) => text
            .parse()
            .map_err(|_| invalid(key, format!("{text:?} is not an address like 0.0.0.0:8443"))),
        None => format!("{default_host}:{default_port}")
            .parse()
            .map_err(|_| invalid(key, "bad default address")),
    }
}

/// Parses durations like `2h`, `90m`, `30s`, `1h30m` or `500ms`.
pub fn parse_duration(key: &'static str, text: &str) -> Result<Duration, Error> {
    let bad = || {
        invalid(
            key,
            format!("{text:?} is not a duration like 2h, 90m, 30s or 500ms"),
        )
    };
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.saturating_mul(60)),
            "h" => Duration::from_secs(value.saturating_mul(3600)),
            "d" => Duration::from_secs(value.saturating_mul(86400)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(unit);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct TestCli {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["serve"];
        argv.extend_from_slice(extra);
        TestCli::parse_from(argv).args
    }

    #[test]
    fn durations_parse_in_every_unit() {
        for (text, want) in [
            ("2h", 7200),
            ("90m", 5400),
            ("30s", 30),
            ("1h30m", 5400),
            ("1d", 86400),
        ] {
            assert_eq!(
                parse_duration("k", text).unwrap(),
                Duration::from_secs(want),
                "{text}"
            );
        }
        assert_eq!(
            parse_duration("k", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        for bad in ["", "h", "2", "2x", "-1s", "1.5h"] {
            assert!(
                parse_duration("k", bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn dev_mode_defaults_protect_production_on_loopback() {
        let config = Config::from_yaml("{}", &args(&["--dev", "--dev-dir", "/tmp/x"])).unwrap();
        assert!(config.policy.protected_namespaces.contains("production"));
        assert!(config.webhook_addr.ip().is_loopback());
        assert_eq!(config.grants.ttl, Duration::from_secs(7200));
        assert_eq!(config.policy.failure_mode, FailureMode::Closed);
        assert_eq!(config.signing_key, PathBuf::from("/tmp/x/signing-key.pem"));
    }

    #[test]
    fn flags_override_the_file() {
        let yaml = "grants:\n  ttl: 1h\nstore: sqlite:///var/a.db\n";
        let config = Config::from_yaml(
            yaml,
            &args(&[
                "--dev",
                "--grant-ttl",
                "5m",
                "--store",
                "sqlite:///var/b.db",
            ]),
        )
        .unwrap();
        assert_eq!(config.grants.ttl, Duration::from_secs(300));
        assert_eq!(config.store, StoreConfig::Sqlite("/var/b.db".into()));
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            ("grants:\n  leeway: 2m\n", "grants.leeway"),
            ("grants:\n  ttl: forever\n", "grants.ttl"),
            ("policy:\n  gatedKinds: [Job]\n", "policy.gatedKinds"),
            (
                "policy:\n  protectedNamespaces: [Prod_1]\n",
                "policy.protectedNamespaces",
            ),
            ("storeTimeout: 1m\n", "storeTimeout"),
            (
                "roles:\n  requiredApprovals: {production: 0}\n",
                "roles.requiredApprovals",
            ),
            (
                "roles:\n  requiredApprovals: {\"*\": 11}\n",
                "roles.requiredApprovals",
            ),
            (
                "roles:\n  requiredApprovals: {Prod_1: 2}\n",
                "roles.requiredApprovals",
            ),
            (
                "notifications:\n  - {name: chat, url: ftp://x/y, format: slack}\n",
                "notifications.url",
            ),
            (
                "notifications:\n  - {name: a, url: https://x/1, format: json}\n  - {name: a, url: https://x/2, format: json}\n",
                "notifications.name",
            ),
            ("store: redis+sentinel://s1:26379\n", "store"),
            ("store: redis+cluster://n1:port\n", "store"),
        ];
        for (yaml, key) in cases {
            let err = Config::from_yaml(yaml, &args(&["--dev"])).unwrap_err();
            assert!(err.to_string().contains(key), "{yaml:?} gave {err}");
        }
    }

    #[test]
    fn notification_receivers_come_from_the_file() {
        let yaml = "notifications:\n  - name: chat\n    urlFile: /run/slack/url\n    format: slack\n    events: [TICKET_CREATED]\n";
        let config = Config::from_yaml(yaml, &args(&["--dev"])).unwrap();
        let [chat] = config.notifications.as_slice() else {
            panic!("one receiver: {:?}", config.notifications)
        };
        assert_eq!(chat.name, "chat");
        assert!(chat.wants(crate::notify::EventKind::TicketCreated));
        assert!(!chat.wants(crate::notify::EventKind::TicketApproved));
        let typo =
            "notifications:\n  - {name: chat, url: https://x/y, format: slack, header: {}}\n";
        assert!(Config::from_yaml(typo, &args(&["--dev"])).is_err());
    }

    #[test]
    fn required_approvals_apply_per_namespace_then_star_then_one() {
        let config = Config::from_yaml("{}", &args(&["--dev"])).unwrap();
        assert_eq!(
            config.roles.required_approvals.for_namespace("production"),
            1,
            "default"
        );
        let yaml = "roles:\n  requiredApprovals: {\"*\": 2, production: 3}\n";
        let config = Config::from_yaml(yaml, &args(&["--dev"])).unwrap();
        let rules = &config.roles.required_approvals;
        for (namespace, want) in [("production", 3), ("staging", 2)] {
            assert_eq!(rules.for_namespace(namespace), want, "{namespace}");
        }
        let only = Config::from_yaml(
            "roles:\n  requiredApprovals: {production: 2}\n",
            &args(&["--dev"]),
        )
        .unwrap();
        assert_eq!(only.roles.required_approvals.for_namespace("staging"), 1);
        let err = Config::from_yaml(
            "roles:\n  requiredApprovals: {production: 0}\n",
            &args(&["--dev"]),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("\"production\": 0 is not between 1 and 10"),
            "{err}"
        );
    }

    #[test]
    fn audit_settings_come_from_the_file_and_the_flag() {
        let config = Config::from_yaml("{}", &args(&["--dev"])).unwrap();
        assert_eq!(config.audit, AuditSettings::default(), "defaults");
        assert_eq!(
            config.audit.checkpoint_interval,
            Some(Duration::from_secs(600))
        );
        let yaml = "audit: {checkpointInterval: 1h, logFile: /var/log/rollgate/audit.jsonl}\n";
        let config = Config::from_yaml(yaml, &args(&["--dev"])).unwrap();
        assert_eq!(
            config.audit,
            AuditSettings {
                checkpoint_interval: Some(Duration::from_secs(3600)),
                log_file: Some(crate::audit::ship::LogTarget::File(
                    "/var/log/rollgate/audit.jsonl".into()
                )),
            }
        );
        let config = Config::from_yaml(yaml, &args(&["--dev", "--audit-log", "-"])).unwrap();
        assert_eq!(
            config.audit.log_file,
            Some(crate::audit::ship::LogTarget::Stdout),
            "the flag wins"
        );
        let off =
            Config::from_yaml("audit: {checkpointInterval: 0s}\n", &args(&["--dev"])).unwrap();
        assert_eq!(off.audit.checkpoint_interval, None, "0s turns it off");
        for bad in [
            "audit: {checkpointInterval: 10ms}\n",
            "audit: {checkpointInterval: soon}\n",
            "audit: {logFile: \"\"}\n",
            "audit: {logfile: x}\n",
        ] {
            let err = Config::from_yaml(bad, &args(&["--dev"])).unwrap_err();
            let chain = format!("{err} {err:?}");
            assert!(
                chain.contains("audit.checkpointInterval")
                    || chain.contains("audit.logFile")
                    || chain.contains("logfile"),
                "{bad:?} gave {chain}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::from_yaml("polcy: {}\n", &args(&["--dev"])).unwrap_err();
        let chain = format!("{:?}", err);
        assert!(chain.contains("polcy"), "{chain}");
    }

    #[test]
    fn production_mode_requires_certificate_and_key() {
        let err = Config::from_yaml("{}", &args(&[])).unwrap_err();
        assert!(err.to_string().contains("tls.certFile"), "{err}");
    }

    #[test]
    fn redis_password_is_redacted() {
        for url in [
            "redis://:hunter2@redis:6379/0",
            "rediss://rollgate:hunter2@redis:6380",
            "redis+unix:///run/redis.sock?db=0&pass=hunter2",
        ] {
            let store = StoreConfig::parse(url).unwrap();
            assert!(!store.redacted().contains("hunter2"), "{url}");
        }
    }

    #[test]
    fn redis_password_file_comes_from_flag_or_file() {
        let yaml = "store: redis://redis:6379\nredisPasswordFile: /etc/rollgate/redis/file\n";
        let config = Config::from_yaml(yaml, &args(&["--dev"])).unwrap();
        assert_eq!(
            config.redis_password_file,
            Some(PathBuf::from("/etc/rollgate/redis/file"))
        );
        let config = Config::from_yaml(
            yaml,
            &args(&["--dev", "--redis-password-file", "/run/flag"]),
        )
        .unwrap();
        assert_eq!(config.redis_password_file, Some(PathBuf::from("/run/flag")));
        let yaml = "store: redis+sentinel://s1,s2/main\nredisSentinelPasswordFile: /run/s\n";
        let config = Config::from_yaml(yaml, &args(&["--dev"])).unwrap();
        assert_eq!(
            config.redis_sentinel_password_file,
            Some(PathBuf::from("/run/s"))
        );
    }
}
