//! Where an HTTP provider may send a request: URLs as Warden reads them, and the
//! allowlist (scheme, host, port, path prefix) every request and every redirect must
//! match before a byte is sent.
//!
//! Invariant: a URL that could be read two ways is refused rather than guessed at: no
//! user name or password in it, no fragment, no `.` or `..` path segment (in any
//! encoding), no backslash. So the string the allowlist compares is the request the
//! server receives.

use std::fmt;

use ureq::http::Uri;

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// Plain HTTP: for servers on this machine.
    Http,
    /// HTTP over TLS (rustls, Mozilla's roots).
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// An absolute `http` or `https` URL, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    pub scheme: Scheme,
    /// Lower case; an IPv6 address in brackets.
    pub host: String,
    /// Explicit, or the scheme's default.
    pub port: u16,
    /// Starts with `/`.
    pub path: String,
    /// Without the `?`.
    pub query: Option<String>,
}

impl Url {
    /// Parses an absolute URL, refusing anything ambiguous (see the module's invariant).
    pub(crate) fn parse(text: &str) -> Result<Url, String> {
        if text.contains('#') {
            return Err("a URL with a fragment (`#...`) is refused: a server never sees it".into());
        }
        if text.contains('\\') || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("a URL may not contain a backslash, a space or a control character".into());
        }
        let uri: Uri = text
            .parse()
            .map_err(|e| format!("not a URL ({e}); write it as https://host[:port]/path"))?;
        let scheme = match uri.scheme_str() {
            Some("https") => Scheme::Https,
            Some("http") => Scheme::Http,
            Some(other) => return Err(format!("scheme {other:?} is not http or https")),
            None => return Err("not an absolute URL: write it as https://host[:port]/path".into()),
        };
        let authority = uri
            .authority()
            .ok_or("a URL needs a host: https://host[:port]/path")?;
        if authority.as_str().contains('@') {
            return Err(
                "a user name or password in the URL is refused: give credentials in `headers` from the environment"
                    .into(),
            );
        }
        let host = authority.host().to_ascii_lowercase();
        if host.is_empty() {
            return Err("a URL needs a host: https://host[:port]/path".into());
        }
        let port = authority.port_u16().unwrap_or(scheme.default_port());
        let path = match uri.path() {
            "" => "/".to_string(),
            path => path.to_string(),
        };
        for segment in path.split('/') {
            let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
            if decoded == "." || decoded == ".." {
                return Err(format!(
                    "path {path:?} has a `{segment}` segment; write the path the server should see, without dot segments"
                ));
            }
        }
        Ok(Url {
            scheme,
            host,
            port,
            path,
            query: uri.query().map(str::to_string),
        })
    }

    /// Whether the host is this machine (`localhost`, `127.0.0.0/8`, `[::1]`).
    pub(crate) fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self.host == "[::1]"
            || self
                .host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// This URL with `extra` (already encoded) appended to its query.
    pub(crate) fn with_query(&self, extra: &str) -> Url {
        let mut url = self.clone();
        if !extra.is_empty() {
            url.query = Some(match &self.query {
                Some(query) if !query.is_empty() => format!("{query}&{extra}"),
                _ => extra.to_string(),
            });
        }
        url
    }

    /// Where a redirect's `Location` points, read against this URL: an absolute URL or
    /// an absolute path (other relative forms are refused: an API has no need of them).
    pub(crate) fn follow(&self, location: &str) -> Result<Url, String> {
        if location.starts_with("http://") || location.starts_with("https://") {
            return Url::parse(location);
        }
        if location.starts_with('/') && !location.starts_with("//") {
            let origin = format!("{}://{}:{}", self.scheme.as_str(), self.host, self.port);
            return Url::parse(&format!("{origin}{location}"));
        }
        Err(format!(
            "redirect to {location:?}: only an absolute URL or an absolute path is followed"
        ))
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.host)?;
        if self.port != self.scheme.default_port() {
            write!(f, ":{}", self.port)?;
        }
        f.write_str(&self.path)?;
        if let Some(query) = &self.query {
            write!(f, "?{query}")?;
        }
        Ok(())
    }
}

/// One allowlist entry: scheme, host, port and path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AllowRule {
    url: Url,
}

impl AllowRule {
    /// Parses `https://host[:port]/prefix`; no query.
    pub(crate) fn parse(text: &str) -> Result<AllowRule, String> {
        let url = Url::parse(text)?;
        if url.query.is_some() {
            return Err(
                "an allowlist entry is scheme, host, port and path prefix: remove the query".into(),
            );
        }
        Ok(AllowRule { url })
    }

    /// Whether `url` is on this rule's origin and under its path prefix. A prefix that
    /// ends in `/` covers every path below it; one that does not covers itself and the
    /// paths below `prefix/` (so `/v1` never covers `/v1-admin`).
    pub(crate) fn covers(&self, url: &Url) -> bool {
        let rule = &self.url;
        let prefix = rule.path.as_str();
        let path = url.path.as_str();
        rule.scheme == url.scheme
            && rule.host == url.host
            && rule.port == url.port
            && (path == prefix
                || (path.starts_with(prefix)
                    && (prefix.ends_with('/') || path[prefix.len()..].starts_with('/'))))
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = &self.url;
        write!(
            f,
            "{}://{}:{}{}",
            url.scheme.as_str(),
            url.host,
            url.port,
            url.path
        )
    }
}

/// The places a provider may send requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Allowlist {
    rules: Vec<AllowRule>,
}

impl Allowlist {
    pub(crate) fn new(rules: Vec<AllowRule>) -> Allowlist {
        Allowlist { rules }
    }

    /// `Ok` if a rule covers `url`; otherwise why not, naming the URL and the list.
    pub(crate) fn check(&self, url: &Url) -> Result<(), String> {
        if self.rules.iter().any(|rule| rule.covers(url)) {
            return Ok(());
        }
        Err(format!("{url} is not in the allowlist ({self})"))
    }
}

impl Allowlist {
    /// An entry that would send plain HTTP to another machine, if one does.
    pub(crate) fn plain_remote(&self) -> Option<&AllowRule> {
        self.rules
            .iter()
            .find(|rule| rule.url.scheme == Scheme::Http && !rule.url.is_loopback())
    }
}

impl fmt::Display for Allowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rules: Vec<String> = self.rules.iter().map(ToString::to_string).collect();
        f.write_str(&rules.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect(text)
    }

    #[test]
    fn urls_are_read_one_way_or_refused() {
        let u = url("https://Bureau.Example/v1/report?x=1");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("bureau.example", 443, "/v1/report")
        );
        assert_eq!(u.to_string(), "https://bureau.example/v1/report?x=1");
        assert_eq!(url("http://127.0.0.1:8080").path, "/");
        for bad in [
            "https://user:pw@bureau.example/v1",
            "https://bureau.example/v1/../admin",
            "https://bureau.example/v1/%2E%2e/admin",
            "https://bureau.example/v1#frag",
            "ftp://bureau.example/",
            "/v1/report",
            "https://bureau.example/a b",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn the_allowlist_compares_scheme_host_port_and_path_prefix() {
        let allow = Allowlist::new(vec![
            AllowRule::parse("https://bureau.example:443/v1/").expect("rule"),
            AllowRule::parse("http://127.0.0.1:9000/exact").expect("rule"),
        ]);
        for ok in [
            "https://bureau.example/v1/report",
            "https://BUREAU.example:443/v1/",
            "http://127.0.0.1:9000/exact",
            "http://127.0.0.1:9000/exact/below",
        ] {
            assert!(allow.check(&url(ok)).is_ok(), "{ok} was refused");
        }
        for denied in [
            "http://bureau.example/v1/report",
            "https://bureau.example:8443/v1/report",
            "https://evil.example/v1/report",
            "https://bureau.example/v2/report",
            "https://bureau.example/v1",
            "http://127.0.0.1:9000/exactly",
            "http://127.0.0.1:9001/exact",
        ] {
            let error = allow.check(&url(denied)).expect_err(denied);
            assert!(error.contains("not in the allowlist"), "{error}");
        }
        assert!(AllowRule::parse("https://bureau.example/v1/?q=1").is_err());
    }

    #[test]
    fn redirects_resolve_absolute_urls_and_paths_only() {
        let base = url("https://bureau.example:8443/v1/report");
        assert_eq!(
            base.follow("/v1/other").expect("path").to_string(),
            "https://bureau.example:8443/v1/other"
        );
        assert_eq!(
            base.follow("https://evil.example/x")
                .expect("absolute")
                .host,
            "evil.example"
        );
        assert!(base.follow("other").is_err());
        assert!(base.follow("//evil.example/x").is_err());
    }
}
