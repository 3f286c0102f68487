//! Notification receivers: the `notifications` entries of the config file,
//! checked into [`Receiver`]s (pure: no file is read here). Secrets, such as
//! a Slack webhook URL or an `Authorization` value, stay in files that
//! [`Receiver::resolve`] reads at each delivery, so a rotated Secret applies
//! without a restart and never sits in the config.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::{Error, EventKind};

/// One `notifications` entry as written in the config file.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiverSpec {
    pub name: String,
    pub url: Option<String>,
    pub url_file: Option<PathBuf>,
    pub format: String,
    pub events: Option<Vec<String>>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub header_files: BTreeMap<String, PathBuf>,
}

impl std::fmt::Debug for ReceiverSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A webhook URL or a header value may be a credential.
        f.debug_struct("ReceiverSpec")
            .field("name", &self.name)
            .field("url", &self.url.as_ref().map(|_| "***"))
            .field("url_file", &self.url_file)
            .field("format", &self.format)
            .field("events", &self.events)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("header_files", &self.header_files)
            .finish()
    }
}

/// The body a receiver gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Slack-compatible incoming webhook: `{"text": "…"}`.
    Slack,
    /// The generic event: `{"event", "summary", "ticket", "actor", "reason", "links", "timestamp"}`.
    Json,
}

/// Where a receiver's URL comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Written in the config (`url`).
    Url(reqwest::Url),
    /// Read from this file at each delivery (`urlFile`), e.g. a mounted Secret
    /// holding a Slack webhook URL, whose path is the credential.
    File(PathBuf),
}

/// Where a header's value comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum HeaderSource {
    /// Written in the config (`headers`): not for secrets.
    Value(HeaderValue),
    /// Read from this file at each delivery (`headerFiles`), trimmed.
    File(PathBuf),
}

/// A checked notification receiver. Its `Debug` shows no URL path and no
/// header value.
#[derive(Clone, PartialEq, Eq)]
pub struct Receiver {
    /// Unique among receivers; the `receiver` label of the metric and logs.
    pub name: String,
    pub endpoint: Endpoint,
    pub format: Format,
    /// The events it gets; every one unless the config lists some.
    pub events: BTreeSet<EventKind>,
    pub headers: Vec<(HeaderName, HeaderSource)>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let endpoint = match &self.endpoint {
            Endpoint::Url(url) => redact(url),
            Endpoint::File(path) => format!("file {}", path.display()),
        };
        f.debug_struct("Receiver")
            .field("name", &self.name)
            .field("endpoint", &endpoint)
            .field("format", &self.format)
            .field("events", &self.events)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// `scheme://host:port/***`: enough to tell receivers apart, never a path
/// or query that may carry a credential.
fn redact(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}/***", url.scheme()),
        None => format!("{}://{host}/***", url.scheme()),
    }
}

/// A bad `notifications` entry: the config key at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: &'static str,
    pub reason: String,
}

fn invalid(key: &'static str, name: &str, reason: impl std::fmt::Display) -> Invalid {
    Invalid {
        key,
        reason: format!("receiver {name:?}: {reason}"),
    }
}

/// Checks the config file's `notifications` list: every name unique and
/// non-empty, exactly one of `url`/`urlFile`, an `http://` or `https://` URL,
/// a known format, known events, valid header names and values.
pub fn receivers(specs: Vec<ReceiverSpec>) -> Result<Vec<Receiver>, Invalid> {
    let mut names = BTreeSet::new();
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let receiver = Receiver::from_spec(spec)?;
        if !names.insert(receiver.name.clone()) {
            return Err(invalid(
                "notifications.name",
                &receiver.name,
                "names must be unique",
            ));
        }
        out.push(receiver);
    }
    Ok(out)
}

/// Checks an `http://` or `https://` URL with a host.
pub fn parse_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text.trim())
        .map_err(|e| format!("not a URL like https://hooks.example.com/path ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http:// or https:// URL with a host".into());
    }
    Ok(url)
}

impl Receiver {
    fn from_spec(spec: ReceiverSpec) -> Result<Self, Invalid> {
        let name = spec.name.trim().to_owned();
        if name.is_empty() || name.len() > 63 || name.chars().any(char::is_control) {
            return Err(invalid(
                "notifications.name",
                &name,
                "must be 1 to 63 printable characters",
            ));
        }
        let endpoint = match (spec.url, spec.url_file) {
            (Some(url), None) => Endpoint::Url(
                parse_url(&url).map_err(|reason| invalid("notifications.url", &name, reason))?,
            ),
            (None, Some(path)) => Endpoint::File(path),
            _ => {
                return Err(invalid(
                    "notifications.url",
                    &name,
                    "set exactly one of url and urlFile (a file holding the URL, for webhook URLs that are secrets)",
                ));
            }
        };
        let format = match spec.format.as_str() {
            "slack" => Format::Slack,
            "json" => Format::Json,
            other => {
                return Err(invalid(
                    "notifications.format",
                    &name,
                    format!("{other:?} is not one of slack, json"),
                ));
            }
        };
        let events = match spec.events {
            None => EventKind::ALL.into_iter().collect(),
            Some(list) if list.is_empty() => {
                return Err(invalid(
                    "notifications.events",
                    &name,
                    "must name at least one event (leave it out for all)",
                ));
            }
            Some(list) => list
                .iter()
                .map(|e| {
                    EventKind::parse(e).ok_or_else(|| {
                        let known: Vec<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                        invalid(
                            "notifications.events",
                            &name,
                            format!("{e:?} is not one of {}", known.join(", ")),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let header_name = |key: &'static str, text: &str| {
            HeaderName::from_bytes(text.as_bytes())
                .map_err(|_| invalid(key, &name, format!("{text:?} is not a header name")))
        };
        let mut headers = Vec::new();
        for (header, value) in spec.headers {
            let header = header_name("notifications.headers", &header)?;
            let value = HeaderValue::from_str(&value).map_err(|_| {
                invalid(
                    "notifications.headers",
                    &name,
                    format!("the value of {header} is not a valid header value"),
                )
            })?;
            headers.push((header, HeaderSource::Value(value)));
        }
        for (header, path) in spec.header_files {
            let header = header_name("notifications.headerFiles", &header)?;
            if headers.iter().any(|(h, _)| *h == header) {
                return Err(invalid(
                    "notifications.headerFiles",
                    &name,
                    format!("{header} is also in headers: set it in one place"),
                ));
            }
            headers.push((header, HeaderSource::File(path)));
        }
        Ok(Self {
            name,
            endpoint,
            format,
            events,
            headers,
        })
    }

    /// Does this receiver want events of `kind`?
    pub fn wants(&self, kind: EventKind) -> bool {
        self.events.contains(&kind)
    }

    /// The URL and headers to send with, reading `urlFile` and `headerFiles`
    /// now. Errors name the receiver and the file, never its content.
    pub fn resolve(&self) -> Result<(reqwest::Url, HeaderMap), Error> {
        let url = match &self.endpoint {
            Endpoint::Url(url) => url.clone(),
            Endpoint::File(path) => {
                parse_url(&self.read(path)?).map_err(|reason| Error::BadUrlFile {
                    receiver: self.name.clone(),
                    path: path.clone(),
                    reason,
                })?
            }
        };
        let mut headers = HeaderMap::new();
        for (header, source) in &self.headers {
            let value = match source {
                HeaderSource::Value(value) => value.clone(),
                HeaderSource::File(path) => {
                    let mut value =
                        HeaderValue::from_str(self.read(path)?.trim()).map_err(|_| {
                            Error::BadHeaderFile {
                                receiver: self.name.clone(),
                                path: path.clone(),
                            }
                        })?;
                    // Kept out of HTTP/2 header compression tables and debug output.
                    value.set_sensitive(true);
                    value
                }
            };
            headers.insert(header.clone(), value);
        }
        Ok((url, headers))
    }

    fn read(&self, path: &Path) -> Result<String, Error> {
        std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
            receiver: self.name.clone(),
            path: path.to_owned(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_spec(name: &str) -> ReceiverSpec {
        ReceiverSpec {
            name: name.into(),
            url: Some("https://hooks.example.com/services/T0/B0/secret".into()),
            url_file: None,
            format: "slack".into(),
            events: None,
            headers: BTreeMap::new(),
            header_files: BTreeMap::new(),
        }
    }

    #[test]
    fn a_receiver_gets_every_event_unless_it_lists_some() {
        let all = receivers(vec![mk_spec("chat")]).unwrap();
        assert!(EventKind::ALL.iter().all(|k| all[0].wants(*k)));

        let some = receivers(vec![ReceiverSpec {
            events: Some(vec!["TICKET_CREATED".into(), "GRANT_REVOKED".into()]),
            ..mk_spec("chat")
        }])
        .unwrap();
        assert!(some[0].wants(EventKind::TicketCreated));
        assert!(some[0].wants(EventKind::GrantRevoked));
        assert!(!some[0].wants(EventKind::TicketApproved));
    }

    #[test]
    fn bad_entries_name_their_key_and_receiver() {
        let headers = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        let cases: Vec<(&str, Vec<ReceiverSpec>, &str)> = vec![
            ("empty name", vec![mk_spec(" ")], "notifications.name"),
            (
                "duplicate name",
                vec![mk_spec("chat"), mk_spec("chat")],
                "notifications.name",
            ),
            (
                "ftp url",
                vec![ReceiverSpec {
                    url: Some("ftp://example.com/x".into()),
                    ..mk_spec("chat")
                }],
                "notifications.url",
            ),
            (
                "no url",
                vec![ReceiverSpec {
                    url: None,
                    ..mk_spec("chat")
                }],
                "notifications.url",
            ),
            (
                "url and urlFile",
                vec![ReceiverSpec {
                    url_file: Some("/run/url".into()),
                    ..mk_spec("chat")
                }],
                "notifications.url",
            ),
            (
                "unknown format",
                vec![ReceiverSpec {
                    format: "teams".into(),
                    ..mk_spec("chat")
                }],
                "notifications.format",
            ),
            (
                "unknown event",
                vec![ReceiverSpec {
                    events: Some(vec!["ADMISSION".into()]),
                    ..mk_spec("chat")
                }],
                "notifications.events",
            ),
            (
                "no events",
                vec![ReceiverSpec {
                    events: Some(vec![]),
                    ..mk_spec("chat")
                }],
                "notifications.events",
            ),
            (
                "bad header name",
                vec![ReceiverSpec {
                    headers: headers("X Bad", "1"),
                    ..mk_spec("chat")
                }],
                "notifications.headers",
            ),
            (
                "bad header value",
                vec![ReceiverSpec {
                    headers: headers("X-Env", "a\nb"),
                    ..mk_spec("chat")
                }],
                "notifications.headers",
            ),
            (
                "header in both places",
                vec![ReceiverSpec {
                    headers: headers("Authorization", "x"),
                    header_files: BTreeMap::from([("authorization".into(), "/run/a".into())]),
                    ..mk_spec("chat")
                }],
                "notifications.headerFiles",
            ),
        ];
        for (row, specs, key) in cases {
            let err = receivers(specs).expect_err(row);
            assert_eq!(err.key, key, "{row}: {err:?}");
            let named = if row == "empty name" {
                "\"\""
            } else {
                "\"chat\""
            };
            assert!(
                err.reason.contains(&format!("receiver {named}")),
                "{row}: {err:?}"
            );
        }
    }

    #[test]
    fn debug_shows_neither_the_url_path_nor_header_values() {
        let receiver = receivers(vec![ReceiverSpec {
            headers: BTreeMap::from([("X-Token".into(), "hunter2".into())]),
            ..mk_spec("chat")
        }])
        .unwrap()
        .remove(0);
        let shown = format!("{receiver:?}");
        assert!(shown.contains("hooks.example.com"), "{shown}");
        assert!(
            !shown.contains("secret") && !shown.contains("hunter2"),
            "{shown}"
        );
        let spec = format!("{:?}", mk_spec("chat"));
        assert!(!spec.contains("secret"), "{spec}");
    }

    #[test]
    fn files_are_read_at_delivery_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let url_file = dir.path().join("url");
        let auth_file = dir.path().join("auth");
        std::fs::write(&url_file, "https://hooks.example.com/a\n").unwrap();
        std::fs::write(&auth_file, "Bearer s3cret\n").unwrap();
        let receiver = receivers(vec![ReceiverSpec {
            url: None,
            url_file: Some(url_file.clone()),
            header_files: BTreeMap::from([("Authorization".into(), auth_file)]),
            ..mk_spec("chat")
        }])
        .unwrap()
        .remove(0);
        let (url, headers) = receiver.resolve().unwrap();
        assert_eq!(url.as_str(), "https://hooks.example.com/a");
        assert_eq!(headers["authorization"], "Bearer s3cret");
        assert!(headers["authorization"].is_sensitive());

        std::fs::write(&url_file, "https://hooks.example.com/rotated").unwrap();
        assert_eq!(
            receiver.resolve().unwrap().0.as_str(),
            "https://hooks.example.com/rotated"
        );
        std::fs::write(&url_file, "file:///etc/passwd").unwrap();
        assert!(matches!(receiver.resolve(), Err(Error::BadUrlFile { .. })));
        std::fs::remove_file(&url_file).unwrap();
        let err = receiver.resolve().unwrap_err();
        assert!(err.to_string().contains("chat"), "{err}");
    }
}
