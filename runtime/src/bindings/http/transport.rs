//! Sending one request of an HTTP provider: the allowlist checked before every hop,
//! redirects followed only within it, every attempt bounded by the provider's timeout and
//! by what remains of the step's wall-clock budget, the response cut at its size cap, a
//! bounded number of retries. Blocking (ureq), TLS by rustls with Mozilla's roots.
//!
//! Invariant: nothing is sent to a URL the allowlist does not cover, and no request
//! outlives the step's deadline: an exchange that would is a typed [`HttpFailure`], never
//! a hang of the host. Proxies from the environment are not used: the allowlist names
//! the hosts Warden talks to, and a proxy would be another.

use std::io;
use std::time::{Duration, Instant};

use ureq::http;

use super::endpoint::{Allowlist, Scheme, Url};

/// Redirects followed in one attempt, at most.
const MAX_REDIRECTS: u32 = 3;
/// The wait before the first retry; doubled before each next one.
const BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    /// The method named `text` (upper case), if it is one a JSON tool uses.
    pub(crate) fn parse(text: &str) -> Option<Method> {
        Some(match text {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => return None,
        })
    }

    /// Its name on the wire.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    /// Whether the arguments travel as a JSON body (else as the query).
    pub(crate) fn has_body(self) -> bool {
        matches!(self, Method::Post | Method::Put | Method::Patch)
    }
}

/// One request as a provider asks for it.
#[derive(Debug)]
pub(crate) struct Exchange<'a> {
    pub method: Method,
    pub url: Url,
    /// Every header, credentials included (never logged, never part of an error).
    pub headers: Vec<(&'a str, String)>,
    /// The names of the headers that carry a credential: sent only to the origin (scheme,
    /// host and port) of `url`, never to another one a redirect leads to, even inside the
    /// allowlist.
    pub credentials: Vec<&'a str>,
    pub body: Option<&'a [u8]>,
    pub allow: &'a Allowlist,
    /// Bound of each attempt, redirects included.
    pub timeout: Duration,
    /// The step's wall-clock deadline: no attempt outlives it.
    pub deadline: Option<Instant>,
    pub max_response_bytes: u64,
    /// Attempts after the first, for a connection failure, a timeout, 408, 429 or 5xx.
    pub retries: u32,
}

/// A response, whatever its status.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// Attempts made.
    pub attempts: u32,
}

/// What bounded a request that timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeLimit {
    /// The provider's `timeout_ms`.
    Provider,
    /// What remained of the step's wall-clock budget (the policy's `wall_clock_ms`).
    Step,
}

/// Why an exchange got no response. Its text names the cause and the limit, never a
/// header value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HttpFailure {
    /// A URL (the request's, or a redirect's) is not covered by the allowlist.
    #[error("denied: {0}; nothing was sent there")]
    Denied(String),
    /// The attempt took longer than its limit.
    #[error("timed out after {ms} ms ({})", match limit { TimeLimit::Provider => "its timeout_ms", TimeLimit::Step => "what remained of the step's wall-clock budget, the policy's wall_clock_ms" })]
    Timeout { ms: u64, limit: TimeLimit },
    /// The step's deadline had passed before the request could be sent.
    #[error("not sent: the step's wall-clock budget (the policy's wall_clock_ms) was spent")]
    NoTimeLeft,
    /// The host name does not resolve.
    #[error("cannot resolve host {host}")]
    Dns { host: String },
    /// No connection could be made, or it broke.
    #[error("connection to {origin} failed: {cause}")]
    Connect { origin: String, cause: String },
    /// The TLS handshake failed.
    #[error("TLS with {host} failed: {cause}")]
    Tls { host: String, cause: String },
    /// The response is larger than the provider's cap.
    #[error("the response is larger than max_response_bytes ({max} bytes); not read further")]
    TooLarge { max: u64 },
    /// A redirect that is not followed.
    #[error("redirect ({status}) not followed: {why}")]
    Redirect { status: u16, why: String },
    /// The server spoke something other than HTTP/1.1.
    #[error("{cause}")]
    Protocol { cause: String },
}

impl HttpFailure {
    fn retryable(&self) -> bool {
        matches!(
            self,
            HttpFailure::Timeout {
                limit: TimeLimit::Provider,
                ..
            } | HttpFailure::Connect { .. }
                | HttpFailure::Protocol { .. }
        )
    }
}

/// An exchange that got no usable response: the last failure and the attempts made.
#[derive(Debug)]
pub(crate) struct Failed {
    pub failure: HttpFailure,
    pub attempts: u32,
}

/// Whether a status is worth another attempt.
pub(crate) fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// The HTTP client of one provider (its own connection pool).
#[derive(Debug)]
pub(crate) struct Transport {
    agent: ureq::Agent,
}

impl Transport {
    pub(crate) fn new() -> Transport {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .proxy(None)
            .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
            .build();
        Transport {
            agent: config.new_agent(),
        }
    }

    /// Sends `exchange`, retrying as it allows; the last response, or why there is none.
    pub(crate) fn send(&self, exchange: &Exchange<'_>) -> Result<Reply, Failed> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = self.attempt(exchange);
            let again = match &result {
                Ok(reply) => retryable_status(reply.status),
                Err(failure) => failure.retryable(),
            };
            let wait = BACKOFF
                .saturating_mul(1 << (attempts - 1).min(8))
                .min(MAX_BACKOFF);
            let in_time = exchange
                .deadline
                .is_none_or(|deadline| Instant::now() + wait < deadline);
            if !again || attempts > exchange.retries || !in_time {
                return match result {
                    Ok(mut reply) => {
                        reply.attempts = attempts;
                        Ok(reply)
                    }
                    Err(failure) => Err(Failed { failure, attempts }),
                };
            }
            std::thread::sleep(wait);
        }
    }

    /// One attempt: the request, and the redirects it is allowed to follow.
    fn attempt(&self, exchange: &Exchange<'_>) -> Result<Reply, HttpFailure> {
        let started = Instant::now();
        let (end, limit) = match exchange.deadline {
            Some(deadline) if deadline < started + exchange.timeout => (deadline, TimeLimit::Step),
            _ => (started + exchange.timeout, TimeLimit::Provider),
        };
        let mut url = exchange.url.clone();
        let mut method = exchange.method;
        let mut body = exchange.body;
        for _ in 0..=MAX_REDIRECTS {
            exchange.allow.check(&url).map_err(HttpFailure::Denied)?;
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(match limit {
                    TimeLimit::Step if url == exchange.url => HttpFailure::NoTimeLeft,
                    _ => timed_out(started, limit),
                });
            }
            let same_origin = url.scheme == exchange.url.scheme
                && url.host == exchange.url.host
                && url.port == exchange.url.port;
            let headers: Vec<(&str, String)> = exchange
                .headers
                .iter()
                .filter(|(name, _)| {
                    same_origin
                        || !exchange
                            .credentials
                            .iter()
                            .any(|c| c.eq_ignore_ascii_case(name))
                })
                .cloned()
                .collect();
            let mut response = self
                .request(method, &url, &headers, body, left)
                .map_err(|e| classify(e, &url, started, limit))?;
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .map(|l| l.to_str().unwrap_or("").to_string());
            if let (301 | 302 | 303 | 307 | 308, Some(location)) = (status, location) {
                let redirect = |why: String| HttpFailure::Redirect { status, why };
                let target = url.follow(&location).map_err(redirect)?;
                if status < 307 && method != Method::Get {
                    return Err(redirect(format!(
                        "a {status} to {target} would turn {} into GET; give the final URL in the bindings",
                        method.as_str()
                    )));
                }
                if status == 303 {
                    method = Method::Get;
                    body = None;
                }
                url = target;
                continue;
            }
            let declared = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|l| l.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|len| len > exchange.max_response_bytes) {
                return Err(HttpFailure::TooLarge {
                    max: exchange.max_response_bytes,
                });
            }
            let body = response
                .body_mut()
                .with_config()
                .limit(exchange.max_response_bytes)
                .read_to_vec()
                .map_err(|e| match e {
                    ureq::Error::BodyExceedsLimit(_) => HttpFailure::TooLarge {
                        max: exchange.max_response_bytes,
                    },
                    e => classify(e, &url, started, limit),
                })?;
            return Ok(Reply {
                status,
                body,
                attempts: 1,
            });
        }
        Err(HttpFailure::Redirect {
            status: 0,
            why: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    fn request(
        &self,
        method: Method,
        url: &Url,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<http::Response<ureq::Body>, ureq::Error> {
        let mut builder = http::Request::builder()
            .method(method.as_str())
            .uri(url.to_string());
        for (name, value) in headers {
            builder = builder.header(*name, value.as_str());
        }
        match body {
            Some(body) => {
                let request = builder.body(body.to_vec())?;
                let request = self
                    .agent
                    .configure_request(request)
                    .timeout_global(Some(timeout))
                    .build();
                self.agent.run(request)
            }
            None => {
                let request = builder.body(())?;
                let request = self
                    .agent
                    .configure_request(request)
                    .timeout_global(Some(timeout))
                    .build();
                self.agent.run(request)
            }
        }
    }
}

fn timed_out(started: Instant, limit: TimeLimit) -> HttpFailure {
    HttpFailure::Timeout {
        ms: started.elapsed().as_millis() as u64,
        limit,
    }
}

/// The typed failure of a ureq error.
fn classify(error: ureq::Error, url: &Url, started: Instant, limit: TimeLimit) -> HttpFailure {
    let origin = format!("{}:{}", url.host, url.port);
    match error {
        ureq::Error::Timeout(_) => timed_out(started, limit),
        ureq::Error::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) =>
        {
            timed_out(started, limit)
        }
        ureq::Error::HostNotFound => HttpFailure::Dns {
            host: url.host.clone(),
        },
        // std's resolver reports a failed lookup as an uncategorised I/O error.
        ureq::Error::Io(e) if e.to_string().contains("lookup address") => HttpFailure::Dns {
            host: url.host.clone(),
        },
        ureq::Error::Rustls(e) => HttpFailure::Tls {
            host: url.host.clone(),
            cause: e.to_string(),
        },
        ureq::Error::Tls(cause) => HttpFailure::Tls {
            host: url.host.clone(),
            cause: cause.to_string(),
        },
        // A server that does not speak TLS closes the connection, or answers garbage, at
        // the handshake.
        ureq::Error::Io(e)
            if url.scheme == Scheme::Https
                && matches!(
                    e.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ) =>
        {
            HttpFailure::Tls {
                host: url.host.clone(),
                cause: e.to_string(),
            }
        }
        ureq::Error::Io(e) => HttpFailure::Connect {
            origin,
            cause: e.to_string(),
        },
        ureq::Error::ConnectionFailed => HttpFailure::Connect {
            origin,
            cause: "connection failed".into(),
        },
        ureq::Error::BodyExceedsLimit(max) => HttpFailure::TooLarge { max },
        other => HttpFailure::Protocol {
            cause: other.to_string(),
        },
    }
}
