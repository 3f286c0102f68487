//! The CLI's connection to the ticket API: one [`kube::Client`] pointed at
//! rollgate instead of the cluster. Its TLS trusts `--ca` (else the system's
//! roots); its credentials are `--token`/`ROLLGATE_TOKEN`, else the current
//! kubeconfig user's, which kube attaches and refreshes (static token, token
//! file, exec plugin, auth provider) exactly as kubectl would, so the user
//! the API sees is the one the API server sees.
//!
//! Failures become an [`Error`] a person can act on: which URL could not be
//! reached, which CA to pass, which token was refused and where it came from,
//! and the API's problem `detail` for everything else.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::BodyExt as _;
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig, KubeconfigError};
use serde_json::Value;

use super::ConnectArgs;

/// Why a call to the API failed.
///
/// kube's and kubeconfig's errors spell out their own causes in their
/// messages, so they are shown inline (`error`) rather than as a `#[source]`,
/// which would print every cause twice.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--server {server:?} is not a URL (e.g. https://rollgate.example.com:8444)")]
    InvalidServer {
        server: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("cannot read the CA file {}", path.display())]
    Ca {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the CA file {} holds no PEM certificate", path.display())]
    CaFormat { path: PathBuf },
    #[error(
        "no credentials: pass --token or set ROLLGATE_TOKEN, or log in so the current kubeconfig user has a \
         token or exec plugin (the kubeconfig comes from --kubeconfig, else KUBECONFIG, else ~/.kube/config): {error}"
    )]
    NoKubeconfig { error: KubeconfigError },
    #[error(
        "the kubeconfig has no context {context:?} (it has: {}): pass another --context, or --token",
        known.join(", ")
    )]
    UnknownContext { context: String, known: Vec<String> },
    #[error("the kubeconfig names no current context: pass --context, or --token")]
    NoCurrentContext,
    #[error("cannot load context {context:?} of the kubeconfig: {error}")]
    Kubeconfig {
        context: String,
        error: KubeconfigError,
    },
    #[error(
        "the kubeconfig user {user:?} (context {context:?}) has no token, token file, exec plugin or auth \
         provider, and rollgate's API takes bearer tokens only: pass --token or set ROLLGATE_TOKEN"
    )]
    NoTokenInKubeconfig { context: String, user: String },
    #[error("cannot get a token for the kubeconfig user {user:?} (context {context:?}): {error}")]
    Credentials {
        context: String,
        user: String,
        error: kube::Error,
    },
    #[error("cannot set up the HTTPS client: {error}")]
    Client { error: kube::Error },
    #[error(
        "cannot reach the rollgate API at {server} ({cause}): is rollgate running there? \
         Set its URL with --server or ROLLGATE_SERVER",
        cause = root_cause(.error)
    )]
    Unreachable { server: String, error: kube::Error },
    #[error(
        "{server} presented a certificate this client does not trust: pass the CA that signed it with \
         --ca or ROLLGATE_CA (in dev mode: the dev dir's ca.crt)"
    )]
    UntrustedServer {
        server: String,
        #[source]
        source: rustls::Error,
    },
    #[error(
        "the TLS handshake with {server} failed: is it rollgate's HTTPS API? \
         Check --server/ROLLGATE_SERVER and --ca/ROLLGATE_CA"
    )]
    Tls {
        server: String,
        #[source]
        source: rustls::Error,
    },
    #[error("401: the API refused {credentials}: {detail}. {hint}")]
    Unauthorized {
        credentials: String,
        detail: String,
        hint: &'static str,
    },
    #[error("403: {detail}")]
    Forbidden { detail: String },
    #[error("{status}: {detail}")]
    Api { status: u16, detail: String },
    #[error("cannot read the answer of {server}: {error}")]
    Body { server: String, error: kube::Error },
    #[error("cannot write {target}")]
    Save {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the answer of {server} ({status}) is not JSON: is it rollgate's API?")]
    Decode {
        server: String,
        status: u16,
        #[source]
        source: serde_json::Error,
    },
}

/// An authenticated connection to the ticket API.
pub struct ApiClient {
    client: kube::Client,
    server: String,
    base: kube::Config,
    /// Where the token comes from, for a 401's message; never the token.
    credentials: String,
    /// Where a better token comes from, for a 401's message.
    hint: &'static str,
}

/// Where the caller's own tokens come from.
const CALLER_HINT: &str = "Tokens come from --token or ROLLGATE_TOKEN, \
     else from the current kubeconfig user (--kubeconfig, --context)";

impl ApiClient {
    /// Connects as the caller of [`ConnectArgs`]: `--token`/`ROLLGATE_TOKEN`,
    /// else the kubeconfig user (an exec plugin runs here, once).
    pub async fn connect(args: &ConnectArgs) -> Result<Self, Error> {
        let base = base_config(args)?;
        match args.token.as_deref().filter(|t| !t.is_empty()) {
            Some(token) => Self::with_token(
                &base,
                &args.server,
                token,
                "the token from --token/ROLLGATE_TOKEN".into(),
                CALLER_HINT,
            ),
            None => {
                let (auth_info, context, user) =
                    kubeconfig_user(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
                let mut config = base.clone();
                config.auth_info = auth_info;
                let client =
                    kube::Client::try_from(config).map_err(|error| Error::Credentials {
                        context: context.clone(),
                        user: user.clone(),
                        error,
                    })?;
                Ok(Self {
                    client,
                    server: args.server.clone(),
                    base,
                    credentials: format!(
                        "the token of kubeconfig user {user:?} (context {context:?})"
                    ),
                    hint: CALLER_HINT,
                })
            }
        }
    }

    /// The same server and CA, authenticated with `token` instead (e.g. a
    /// grant); `what` names the token and `hint` says where a valid one comes
    /// from, in a 401's message.
    pub fn as_bearer(&self, token: &str, what: String, hint: &'static str) -> Result<Self, Error> {
        Self::with_token(&self.base, &self.server, token, what, hint)
    }

    fn with_token(
        base: &kube::Config,
        server: &str,
        token: &str,
        what: String,
        hint: &'static str,
    ) -> Result<Self, Error> {
        let mut config = base.clone();
        config.auth_info = AuthInfo {
            token: Some(token.to_owned().into()),
            ..AuthInfo::default()
        };
        Ok(Self {
            client: kube::Client::try_from(config).map_err(|error| Error::Client { error })?,
            server: server.to_owned(),
            base: base.clone(),
            credentials: what,
            hint,
        })
    }

    /// Calls `method path?query` with an optional JSON body and returns the
    /// JSON answer of a 2xx; anything else is an [`Error`].
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        query: &[(&str, Option<String>)],
        body: Option<Value>,
    ) -> Result<Value, Error> {
        let response = self
            .send(method, path, query, body, "application/json")
            .await?;
        let status = response.status();
        let bytes = self.read_body(response).await?;
        let value = if bytes.is_empty() {
            Ok(Value::Null)
        } else {
            serde_json::from_slice(&bytes)
        };
        if status.is_success() {
            return value.map_err(|source| Error::Decode {
                server: self.server.clone(),
                status: status.as_u16(),
                source,
            });
        }
        Err(self.failure(status, value.ok()))
    }

    /// `GET path`, streaming a 2xx answer's body into `out` (named `target`
    /// in errors) as it arrives; answers the bytes written.
    pub async fn download(
        &self,
        path: &str,
        accept: &str,
        out: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
        target: &str,
    ) -> Result<u64, Error> {
        use tokio::io::AsyncWriteExt as _;
        let response = self
            .send(http::Method::GET, path, &[], None, accept)
            .await?;
        let status = response.status();
        if !status.is_success() {
            let bytes = self.read_body(response).await?;
            return Err(self.failure(status, serde_json::from_slice(&bytes).ok()));
        }
        let mut body = response.into_body();
        let mut written = 0;
        let save = |source| Error::Save {
            target: target.to_owned(),
            source,
        };
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| Error::Body {
                server: self.server.clone(),
                error,
            })?;
            if let Ok(data) = frame.into_data() {
                out.write_all(&data).await.map_err(save)?;
                written += data.len() as u64;
            }
        }
        out.flush().await.map_err(save)?;
        Ok(written)
    }

    async fn send(
        &self,
        method: http::Method,
        path: &str,
        query: &[(&str, Option<String>)],
        body: Option<Value>,
        accept: &str,
    ) -> Result<http::Response<kube::client::Body>, Error> {
        let mut uri = path.to_owned();
        let mut sep = '?';
        for (key, value) in query {
            if let Some(value) = value {
                uri.push(sep);
                uri.push_str(key);
                uri.push('=');
                uri.push_str(&seg(value));
                sep = '&';
            }
        }
        let builder = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::ACCEPT, accept);
        let request = match body {
            Some(body) => builder
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(kube::client::Body::from(body.to_string().into_bytes())),
            None => builder.body(kube::client::Body::empty()),
        }
        .expect("method, path and headers are valid: the path segments are percent-encoded");
        self.client
            .send(request)
            .await
            .map_err(|e| self.transport_error(e))
    }

    async fn read_body(
        &self,
        response: http::Response<kube::client::Body>,
    ) -> Result<bytes::Bytes, Error> {
        Ok(response
            .into_body()
            .collect()
            .await
            .map_err(|error| Error::Body {
                server: self.server.clone(),
                error,
            })?
            .to_bytes())
    }

    /// The error a non-2xx answer (with its JSON body, if any) means.
    fn failure(&self, status: http::StatusCode, body: Option<Value>) -> Error {
        let detail = body
            .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
        match status.as_u16() {
            401 => Error::Unauthorized {
                credentials: self.credentials.clone(),
                detail,
                hint: self.hint,
            },
            403 => Error::Forbidden { detail },
            status => Error::Api { status, detail },
        }
    }

    /// Sorts a failed exchange into "untrusted certificate", "TLS failed"
    /// and "unreachable".
    fn transport_error(&self, error: kube::Error) -> Error {
        let server = self.server.clone();
        match find_tls_error(&error) {
            Some(source @ rustls::Error::InvalidCertificate(_)) => Error::UntrustedServer {
                server,
                source: source.clone(),
            },
            Some(source) => Error::Tls {
                server,
                source: source.clone(),
            },
            None => Error::Unreachable { server, error },
        }
    }
}

/// The parts of the client's config that do not depend on who calls: the
/// server, the CA and the timeouts.
fn base_config(args: &ConnectArgs) -> Result<kube::Config, Error> {
    let url: http::Uri = args
        .server
        .trim_end_matches('/')
        .parse()
        .map_err(|source| Error::InvalidServer {
            server: args.server.clone(),
            source,
        })?;
    let mut config = kube::Config::new(url);
    config.root_cert = args.ca.as_deref().map(read_ca).transpose()?;
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(60));
    config.reset_reader_on_write = true;
    // kube retries 503s, which would repeat a redeploy; every call here is one attempt.
    config.default_retry = false;
    Ok(config)
}

/// The DER certificates of a PEM file.
fn read_ca(path: &Path) -> Result<Vec<Vec<u8>>, Error> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;

    let pem = std::fs::read(path).map_err(|source| Error::Ca {
        path: path.to_owned(),
        source,
    })?;
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .map(|der| der.to_vec())
        .collect();
    if certs.is_empty() {
        return Err(Error::CaFormat {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The credentials of the kubeconfig user of `context` (default: the current
/// context), with the context's and user's names. Only what authenticates a
/// bearer is kept: client certificates, basic auth and impersonation are
/// meant for the cluster, and rollgate's API takes bearer tokens only.
async fn kubeconfig_user(
    path: Option<&Path>,
    context: Option<&str>,
) -> Result<(AuthInfo, String, String), Error> {
    let kubeconfig = match path {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    }
    .map_err(|error| Error::NoKubeconfig { error })?;
    let context_name = context
        .map(str::to_owned)
        .or_else(|| kubeconfig.current_context.clone())
        .filter(|c| !c.is_empty())
        .ok_or(Error::NoCurrentContext)?;
    let Some(named) = kubeconfig.contexts.iter().find(|c| c.name == context_name) else {
        return Err(Error::UnknownContext {
            context: context_name,
            known: kubeconfig.contexts.iter().map(|c| c.name.clone()).collect(),
        });
    };
    let user = named
        .context
        .as_ref()
        .and_then(|c| c.user.clone())
        .unwrap_or_default();
    let options = KubeConfigOptions {
        context: Some(context_name.clone()),
        ..KubeConfigOptions::default()
    };
    let loaded = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|error| Error::Kubeconfig {
            context: context_name.clone(),
            error,
        })?;
    let from = loaded.auth_info;
    let auth_info = AuthInfo {
        token: from.token,
        token_file: from.token_file,
        exec: from.exec,
        auth_provider: from.auth_provider,
        ..AuthInfo::default()
    };
    if auth_info.token.is_none()
        && auth_info.token_file.is_none()
        && auth_info.exec.is_none()
        && auth_info.auth_provider.is_none()
    {
        return Err(Error::NoTokenInKubeconfig {
            context: context_name,
            user,
        });
    }
    Ok((auth_info, context_name, user))
}

/// The rustls error behind a failed request, if any. `io::Error::source`
/// skips the error it wraps, so wrapped errors are opened by hand.
fn find_tls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && let Some(tls) = find_tls_error(inner)
        {
            return Some(tls);
        }
        current = e.source();
    }
    None
}

/// The innermost cause of a failed exchange ("Connection refused (os error
/// 111)", "dns error: …"): the outer layers only say "client error (Connect)".
fn root_cause(error: &kube::Error) -> String {
    let mut current: &(dyn std::error::Error + 'static) = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Percent-encodes a path segment or query value typed by the user.
pub fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
