//! Outbound HTTP: which hosts a function may reach (`allowed_outbound_hosts`), and the wasi:http
//! hooks that hold every outbound request of a store to that list.

use std::sync::Arc;

use wasmtime_wasi_http::{WasiBody, WasiHttpHooks};

/// Which outbound requests a function may make, from its `allowed_outbound_hosts`.
///
/// Each entry is `[scheme://]host[:port]`: `host` is a name, an IP, `*.suffix` or `*`; `port` is a
/// number or `*` (absent: the scheme's default port, or any port when no scheme is given);
/// `scheme` is `http`, `https` or `*`. An empty list denies everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedHosts(Arc<[HostPattern]>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct HostPattern {
    scheme: Option<String>,
    host: String,
    port: Option<u16>,
}

impl AllowedHosts {
    /// Parses the entries, naming the first one that is malformed.
    pub fn parse(entries: &[String]) -> Result<AllowedHosts, String> {
        let patterns = entries
            .iter()
            .map(|entry| HostPattern::parse(entry).ok_or_else(|| format!("invalid allowed_outbound_hosts entry `{entry}`: expected [scheme://]host[:port], e.g. `https://api.example.com` or `*.example.com:8080`")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AllowedHosts(patterns.into()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a request to `uri` is allowed.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else {
            return false;
        };
        let scheme = uri.scheme_str().unwrap_or("https");
        let port = uri.port_u16().or(match scheme {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        });
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.0.iter().any(|p| p.matches(scheme, host, port))
    }
}

impl HostPattern {
    fn parse(entry: &str) -> Option<HostPattern> {
        let (scheme, rest) = match entry.split_once("://") {
            Some((scheme, rest)) => {
                if !matches!(scheme, "http" | "https" | "*") {
                    return None;
                }
                (Some(scheme.to_string()), rest)
            }
            None => (None, entry),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        let valid_host = host == "*"
            || (!host.is_empty()
                && host
                    .strip_prefix("*.")
                    .unwrap_or(host)
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':')));
        if !valid_host {
            return None;
        }
        let port = match port {
            None => match scheme.as_deref() {
                Some("http") => Some(80),
                Some("https") => Some(443),
                _ => None,
            },
            Some("*") => None,
            Some(p) => Some(p.parse().ok()?),
        };
        Some(HostPattern {
            scheme: scheme.filter(|s| s != "*"),
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    fn matches(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        if self.port.is_some() && self.port != port {
            return false;
        }
        let host = host.to_ascii_lowercase();
        match self.host.strip_prefix("*.") {
            _ if self.host == "*" => true,
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|head| head.ends_with('.')),
            None => host == self.host,
        }
    }
}

/// Request headers that carry a W3C trace context: a guest's outbound requests carry them on
/// (where wafer can tell which call made the request) unless it sets its own.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// The `wasi:http` hooks of one store: outbound requests pass through the function's allow list,
/// and carry on the trace context of the call that made them.
pub(crate) struct OutboundPolicy {
    allowed: AllowedHosts,
    /// The current call's `traceparent` and `tracestate`, for an instance that serves one call
    /// at a time (a 0.3 instance serving several cannot tell which call a request is for).
    trace: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl OutboundPolicy {
    pub(crate) fn new(allowed: AllowedHosts) -> OutboundPolicy {
        OutboundPolicy {
            allowed,
            trace: Vec::new(),
        }
    }

    /// Takes the trace context of the call now starting from its request's headers.
    pub(crate) fn carry_trace(&mut self, headers: &http::HeaderMap) {
        self.trace.clear();
        for name in TRACE_HEADERS {
            if let Some(value) = headers.get(name) {
                self.trace
                    .push((http::HeaderName::from_static(name), value.clone()));
            }
        }
    }
}

type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        if !self.allowed.allows(request.uri()) {
            tracing::debug!(uri = %request.uri(), "outbound request denied");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        // A guest that propagates its own context (or starts a new trace) keeps it.
        if !request.headers().contains_key("traceparent") {
            for (name, value) in &self.trace {
                request.headers_mut().insert(name.clone(), value.clone());
            }
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }

    /// A guest may run this many writes ahead of the client. With wasi:http's default of one, a
    /// guest blocks on every write until hyper takes the chunk, so even a small response costs
    /// a round trip through the scheduler per write, and its head, body and end leave as
    /// separate packets. Four writes of at most 64 KiB bound what one response buffers.
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        4
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        64 << 10
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn uri(s: &str) -> http::Uri {
        s.parse().unwrap()
    }

    #[test]
    fn empty_list_denies_everything() {
        assert!(!allowed(&[]).allows(&uri("https://example.com/")));
    }

    #[test]
    fn host_patterns() {
        let a = allowed(&[
            "api.example.com",
            "https://*.good.org",
            "http://127.0.0.1:*",
        ]);
        assert!(a.allows(&uri("https://api.example.com/x")));
        assert!(a.allows(&uri("http://API.example.com:8080/x")));
        assert!(!a.allows(&uri("https://example.com/")));
        assert!(a.allows(&uri("https://a.b.good.org/")));
        assert!(!a.allows(&uri("https://good.org/")));
        assert!(!a.allows(&uri("https://evilgood.org/")));
        assert!(!a.allows(&uri("http://a.good.org/")), "scheme must match");
        assert!(
            !a.allows(&uri("https://a.good.org:8443/")),
            "https default port only"
        );
        assert!(a.allows(&uri("http://127.0.0.1:9999/")));
        assert!(!a.allows(&uri("https://127.0.0.1:9999/")));
        assert!(allowed(&["*"]).allows(&uri("http://anything:1/")));
    }

    #[test]
    fn malformed_entries_are_named() {
        let err = AllowedHosts::parse(&["ftp://x".into()]).unwrap_err();
        assert!(err.contains("ftp://x"), "{err}");
        assert!(AllowedHosts::parse(&["host:notaport".into()]).is_err());
        assert!(AllowedHosts::parse(&["".into()]).is_err());
        assert!(AllowedHosts::parse(&["a b".into()]).is_err());
    }
}
