//! `rollgate serve`: builds the state from the [`Config`], binds the three
//! listeners (webhook and API over TLS, admin over plain HTTP), runs the
//! background tasks, and drains in-flight requests on shutdown.
//!
//! [`start`] binds and returns a [`RunningServer`] with the bound addresses,
//! so tests start the real server on port 0 without racing for ports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::limit::ConcurrencyLimitLayer;

use crate::audit::AuditTrail;
use crate::audit::ship::ShippedLog;
use crate::auth::cluster::{AccessReviewer, TokenReviewer};
use crate::auth::{AnyOf, Authenticator, Authorizer, DevUsers, FirstOf};
use crate::config::Config;
use crate::grants::verify::GrantIssuer;
use crate::grants::{GrantFilter, GrantVerifier, KeySet, SigningKey};
use crate::metrics::Metrics;
use crate::policy::index::{NamespaceIndex, NamespaceLookup};
use crate::state::AppState;
use crate::tickets::TicketDesk;
use crate::tls::ReloadingCert;

/// Longest a graceful shutdown waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);
/// Longest a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests handled at once per listener; more wait.
pub const MAX_CONCURRENT_REQUESTS: usize = 1024;

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot bind the {listener} listener on {addr}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS set-up failed")]
    Tls(#[from] crate::tls::Error),
    #[error("grant signing key")]
    Key(#[from] crate::grants::KeyError),
    #[error("cannot open the store")]
    Store(#[from] crate::error::Error),
    #[error("cannot load API users")]
    Auth(#[from] crate::auth::Error),
    #[error("metrics registry")]
    Metrics(#[from] prometheus::Error),
    #[error("dev mode set-up failed")]
    Dev(#[from] crate::dev::Error),
    #[error("cannot read the kubeconfig")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("cannot use the in-cluster configuration")]
    InCluster(#[from] kube::config::InClusterError),
    #[error("cannot build the Kubernetes client")]
    KubeClient(#[from] kube::Error),
    #[error(
        "no way to authenticate API callers: give rollgate a cluster (--kubeconfig, or run it in a pod) for TokenReview, or a usersFile"
    )]
    NoAuthenticator,
    #[error("cannot set up notifications")]
    Notify(#[from] crate::notify::Error),
    #[error("config key `audit.logFile`: cannot open {target} for writing")]
    AuditLog {
        target: String,
        #[source]
        source: std::io::Error,
    },
}

/// A started server: its bound addresses and a handle to stop it.
pub struct RunningServer {
    pub webhook_addr: SocketAddr,
    pub api_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: AppState,
    shutdown: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting connections and lets in-flight requests finish.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until every listener has drained (at most [`DRAIN_TIMEOUT`] after shutdown).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
        for task in &self.background {
            task.abort();
        }
    }
}

/// Builds everything from `config`, binds the listeners and starts serving.
pub async fn start(config: Config) -> Result<RunningServer, Error> {
    if let Some(dir) = &config.dev_dir {
        crate::dev::prepare(dir)?;
    }
    let signing = SigningKey::load(&config.signing_key)?;
    let mut keys = KeySet::new(&signing);
    for path in &config.verification_keys {
        keys.insert_pem_file(path)?;
    }
    let verifier = GrantVerifier::new(keys.clone(), &config.grants);
    let issuer = GrantIssuer::new(signing.clone(), &config.grants);
    let redis = redis_options(&config);
    let mut stores = crate::store::open_with(&config.store, &redis).await?;
    let metrics = Arc::new(Metrics::new()?);
    let mut background = Vec::new();
    if let Some(target) = &config.audit.log_file {
        let dropped = metrics.audit_log_dropped_total.clone();
        let (shipped, writer) = ShippedLog::start(stores.audit.clone(), target, dropped)
            .await
            .map_err(|source| Error::AuditLog {
                target: target.to_string(),
                source,
            })?;
        stores.audit = Arc::new(shipped);
        background.push(writer);
    }
    let trail = AuditTrail::new(
        stores.audit.clone(),
        signing,
        keys.clone(),
        config.grants.issuer.clone(),
    );
    let kube = kube_client(&config).await?;
    // Demo users first (dev mode), then the cluster's TokenReview.
    let mut authenticators: Vec<Arc<dyn Authenticator>> = Vec::new();
    if let Some(path) = &config.users_file {
        authenticators.push(Arc::new(DevUsers::load(path)?));
    }
    // Roles from the config, then from RBAC when a cluster is configured.
    let mut authorizers: Vec<Arc<dyn Authorizer>> = vec![Arc::new(config.roles.clone())];
    if let Some(client) = &kube {
        authenticators.push(Arc::new(TokenReviewer::new(client.clone(), Vec::new())));
        authorizers.push(Arc::new(AccessReviewer::new(client.clone())));
    }
    if authenticators.is_empty() {
        return Err(Error::NoAuthenticator);
    }
    let authenticator: Arc<dyn Authenticator> = Arc::new(FirstOf(authenticators));
    let authorizer: Arc<dyn Authorizer> = Arc::new(AnyOf(authorizers));
    let (notifier, deliveries) =
        crate::notify::Notifier::new(config.notifications.clone(), metrics.clone())?;
    let desk = TicketDesk {
        tickets: stores.tickets.clone(),
        grants: stores.grants.clone(),
        audit: stores.audit.clone(),
        issuer,
        authorizer: authorizer.clone(),
        metrics: metrics.clone(),
        pending_ttl: config.pending_ticket_ttl,
        notifier,
        required_approvals: config.roles.required_approvals.clone(),
        ticket_rate_limit: config.ticket_rate_limit,
    };
    let namespaces = Arc::new(NamespaceIndex::new(
        &config.policy.protected_label,
        kube.is_none(),
    ));
    let (wake_follower, woken) = tokio::sync::mpsc::channel(1024);
    let mut state = AppState {
        rollouts: kube.is_some().then_some(wake_follower),
        namespaces: namespaces.clone(),
        namespace_lookup: kube.as_ref().map(|client| {
            Arc::new(NamespaceLookup::new(
                client.clone(),
                namespaces.clone(),
                config.store_timeout,
            ))
        }),
        policy: Arc::new(config.policy.clone()),
        stores,
        verifier: Arc::new(verifier),
        keys: Arc::new(keys),
        metrics,
        authenticator,
        authorizer,
        desk: Arc::new(desk),
        store_timeout: config.store_timeout,
        public_api_url: config.public_api_url.clone().into(),
        kube: kube.clone(),
        ready: Arc::new(AtomicBool::new(false)),
        store_health: Arc::default(),
        trail: Arc::new(trail),
    };

    let resolver = Arc::new(ReloadingCert::new(&config.tls.cert, &config.tls.key)?);
    let tls = crate::tls::server_config(resolver.clone())?;

    let bind = |listener: &'static str, addr: SocketAddr| async move {
        TcpListener::bind(addr).await.map_err(|source| Error::Bind {
            listener,
            addr,
            source,
        })
    };
    let webhook = bind("webhook", config.webhook_addr).await?;
    let api = bind("api", config.api_addr).await?;
    let admin = bind("admin", config.admin_addr).await?;
    let local = |l: &TcpListener, listener: &'static str, addr| {
        l.local_addr().map_err(|source| Error::Bind {
            listener,
            addr,
            source,
        })
    };
    let webhook_addr = local(&webhook, "webhook", config.webhook_addr)?;
    let api_addr = local(&api, "api", config.api_addr)?;
    let admin_addr = local(&admin, "admin", config.admin_addr)?;

    // With port 0 the URL printed in denials must name the port actually bound.
    if state.public_api_url.as_ref() == format!("https://{}", config.api_addr) {
        state.public_api_url = format!("https://{api_addr}").into();
    }
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let webhook_router = crate::admission::router(state.clone())
        .layer(ConcurrencyLimitLayer::new(MAX_CONCURRENT_REQUESTS));
    let api_router = crate::api::router(state.clone())
        .layer(ConcurrencyLimitLayer::new(MAX_CONCURRENT_REQUESTS));
    tasks.spawn(serve_tls(
        "webhook",
        webhook,
        webhook_router,
        tls.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(serve_tls("api", api, api_router, tls, shutdown.clone()));
    tasks.spawn(serve_admin(
        admin,
        admin_router(state.clone()),
        shutdown.clone(),
    ));

    background.extend([
        resolver.spawn_reloader(config.tls_reload_interval),
        tokio::spawn(watch_store(state.clone())),
        tokio::spawn(expire_tickets(state.desk.clone(), config.sweep_interval)),
    ]);
    if let Some(every) = config.audit.checkpoint_interval {
        background.push(tokio::spawn(
            AuditTrail::clone(&state.trail).run_periodic(every),
        ));
    }
    // Started once the API port is known: messages link to the bound URL.
    background.extend(deliveries.spawn(state.public_api_url.clone()));
    if let Some(client) = &kube {
        background.push(tokio::spawn(crate::policy::index::watch(
            client.clone(),
            namespaces,
        )));
    }
    let follower = crate::rollout::Follower::new(
        kube,
        state.stores.audit.clone(),
        state.stores.operations.clone(),
        state.metrics.clone(),
        crate::rollout::FollowerSettings::default(),
    );
    // Drained with the listeners: on shutdown it gives its leases up.
    tasks.spawn(follower.run(woken, shutdown.clone()));
    state.ready.store(true, Ordering::SeqCst);
    tracing::info!(%webhook_addr, %api_addr, %admin_addr, store = %config.store.redacted(), "rollgate serving");
    Ok(RunningServer {
        webhook_addr,
        api_addr,
        admin_addr,
        state,
        shutdown,
        tasks,
        background,
    })
}

/// The cluster client, from `--kubeconfig`/`KUBECONFIG` or, in a pod, the
/// in-cluster configuration; `None` without either (dev mode on a laptop).
async fn kube_client(config: &Config) -> Result<Option<kube::Client>, Error> {
    let kube_config = match &config.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions::default(),
            )
            .await?
        }
        None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => kube::Config::incluster()?,
        None => return Ok(None),
    };
    Ok(Some(kube::Client::try_from(kube_config)?))
}

/// Accepts TLS connections on `listener` and serves `router` until `shutdown`,
/// then waits up to [`DRAIN_TIMEOUT`] for open connections to finish.
///
/// Public so the benchmark's baseline webhooks (`benches/baseline_webhook.rs`)
/// serve through exactly this code: their figures then differ from
/// rollgate's by the handler alone.
pub async fn serve_tls(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    // The protocol comes from ALPN, never from sniffing the first bytes:
    // hyper-util's sniffing waits for them without a timeout, so a client that
    // completed the handshake and sent nothing held its connection forever.
    let h1 = Arc::new(builder.clone().http1_only());
    let h2 = Arc::new(builder.http2_only());
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let first_request = Arc::new(tokio::sync::Notify::new());
        let seen = first_request.clone();
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            router.clone(),
            move |req: http::Request<hyper::body::Incoming>| {
                seen.notify_one();
                req
            },
        ));
        let (h1, h2) = (h1.clone(), h2.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(listener = name, %peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let is_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let builder = if is_h2 { h2 } else { h1 };
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(watcher.watch(conn.into_owned()));
            let result = if is_h2 {
                // hyper has no header read timeout for HTTP/2: a connection
                // whose first request has not arrived in time is dropped.
                let first = tokio::time::timeout(HEADER_READ_TIMEOUT, first_request.notified());
                tokio::select! {
                    result = &mut conn => result,
                    first = first => match first {
                        Ok(()) => conn.await,
                        Err(_) => {
                            tracing::debug!(listener = name, %peer, "no HTTP/2 request within the header timeout");
                            return;
                        }
                    },
                }
            } else {
                conn.await
            };
            if let Err(error) = result {
                tracing::debug!(listener = name, %peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            "drain timed out; closing remaining connections"
        );
    }
}

async fn serve_admin(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let serve = axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await });
    if let Err(error) = serve.await {
        tracing::error!(%error, "admin listener failed");
    }
}

/// `/metrics`, `/healthz`, `/readyz` (plain HTTP, for probes and Prometheus).
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let ready = s.ready.load(Ordering::SeqCst) && s.namespaces.is_synced();
    // Readiness does not follow the store: an unready webhook makes the API
    // server fail every call, ungated ones too (DESIGN.md).
    let store = match &*s.store_health.read().unwrap_or_else(|p| p.into_inner()) {
        None => "ok".to_owned(),
        Some(reason) => format!("unavailable: {reason}"),
    };
    let status = if ready {
        http::StatusCode::OK
    } else {
        http::StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({ "ready": ready, "store": store })),
    )
}

/// Expires PENDING tickets nobody decided within `pendingTicketTtl`, and
/// records grants that expired unrevoked.
async fn expire_tickets(desk: Arc<TicketDesk>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match desk.expire_stale().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "expired pending tickets"),
            Err(e) => {
                tracing::warn!(error = %crate::error::error_chain(&e), "cannot expire pending tickets")
            }
        }
        match desk.expire_grants().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "grants expired"),
            Err(e) => {
                tracing::warn!(error = %crate::error::error_chain(&e), "cannot record expired grants")
            }
        }
    }
}

/// Checks the store every few seconds: `rollgate_store_up`, `/readyz`'s
/// `store` field and `app_redeploy_token_active_count` follow it.
async fn watch_store(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = jiff::Timestamp::now().as_second();
        let all = GrantFilter::default();
        let check = state.stores.grants.list_grants(&all, now);
        let health = match tokio::time::timeout(state.store_timeout, check).await {
            Ok(Ok(grants)) => {
                state
                    .metrics
                    .token_active_count
                    .set(i64::try_from(grants.len()).unwrap_or(i64::MAX));
                None
            }
            Ok(Err(e)) => Some(crate::error::error_chain(&e)),
            Err(_) => Some(format!("no answer within {:?}", state.store_timeout)),
        };
        state.metrics.store_up.set(i64::from(health.is_none()));
        if let Some(reason) = &health {
            tracing::warn!(%reason, "store unavailable");
        }
        *state
            .store_health
            .write()
            .unwrap_or_else(|p| p.into_inner()) = health;
    }
}

/// The Redis options `config` asks for: its password files, and its store
/// time budget (at least one second: API calls and `verify` use it too).
fn redis_options(config: &Config) -> crate::store::RedisOptions {
    crate::store::RedisOptions {
        password_file: config.redis_password_file.clone(),
        sentinel_password_file: config.redis_sentinel_password_file.clone(),
        timeout: config.store_timeout.max(std::time::Duration::from_secs(1)),
    }
}
