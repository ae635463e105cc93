//! WASI 0.1 command modules as functions, CGI style, with WAGI's conventions.
//!
//! Many toolchains still produce only WASI 0.1 core modules (TinyGo, Go's `GOOS=wasip1`,
//! AssemblyScript, C with wasi-libc). wafer runs such a module once per request: the request
//! arrives in the environment (`REQUEST_METHOD`, `PATH_INFO` = the path below the function's
//! route, `SCRIPT_NAME` = the route, `QUERY_STRING`, `CONTENT_TYPE`, `CONTENT_LENGTH`, one
//! `HTTP_<NAME>` per header, plus the function's own variables) and its body on stdin; the
//! module writes headers (`Status: 404 Not Found`, `Content-Type: ...`, `Location: ...`), a
//! blank line, then the body to stdout. stderr goes to the function's logs.
//!
//! The same limits apply as for components (memory, timeout, concurrency), and the same
//! sandbox (no files, no sockets, only its own environment). A command's `_start` runs to its
//! end, so every call gets a fresh instance from the pooling allocator; nothing is reused.
//!
//! This module is the protocol alone (is it a command, the environment, the output), with no
//! runtime in it; a call runs in `function::cgi`.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

use crate::backend::{FunctionConfig, Response, full_body};
use crate::error::InvokeError;

/// Checks that a core module is a WASI 0.1 command (so that it can be run per request).
pub(crate) fn check_command(module: &wasmtime::Module) -> Result<(), String> {
    match module.get_export("_start") {
        Some(wasmtime::ExternType::Func(_)) => Ok(()),
        _ => {
            let exports: Vec<String> = module
                .exports()
                .map(|e| format!("`{}`", e.name()))
                .collect();
            Err(format!(
                "this core module is not a WASI 0.1 command: it has no `_start` export (it exports {}); wafer runs core modules CGI-style, and components that export wasi:http/incoming-handler (0.2) or wasi:http/handler (0.3)",
                if exports.is_empty() {
                    "nothing".to_string()
                } else {
                    exports.join(", ")
                }
            ))
        }
    }
}

/// The CGI environment for one request, after the function's own variables.
pub(crate) fn environment(
    config: &FunctionConfig,
    parts: &http::request::Parts,
    length: usize,
) -> Vec<(String, String)> {
    let route = config.route.as_str();
    let path = parts.uri.path();
    let below = if route == "/" {
        path
    } else {
        path.strip_prefix(route)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .unwrap_or(path)
    };
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let (server_name, server_port) = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (name, port),
        _ => (host, "80"),
    };
    let mut env = config.env.clone();
    let mut set = |k: &str, v: String| env.push((k.to_string(), v));
    set("GATEWAY_INTERFACE", "CGI/1.1".into());
    set("SERVER_SOFTWARE", "wafer".into());
    set("SERVER_PROTOCOL", format!("{:?}", parts.version));
    set("SERVER_NAME", server_name.into());
    set("SERVER_PORT", server_port.into());
    set("REQUEST_METHOD", parts.method.to_string());
    set(
        "SCRIPT_NAME",
        if route == "/" {
            String::new()
        } else {
            route.into()
        },
    );
    set("PATH_INFO", below.into());
    set("PATH_TRANSLATED", below.into());
    set("QUERY_STRING", parts.uri.query().unwrap_or("").into());
    set("CONTENT_LENGTH", length.to_string());
    set(
        "X_MATCHED_ROUTE",
        if route == "/" {
            "/...".into()
        } else {
            format!("{route}/...")
        },
    );
    set(
        "X_FULL_URL",
        format!(
            "http://{host}{}",
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        ),
    );
    if let Some(t) = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        set("CONTENT_TYPE", t.into());
    }
    for (name, value) in &parts.headers {
        // Credentials stay out of the environment, as CGI servers do by default.
        if name == http::header::AUTHORIZATION
            || name == http::header::PROXY_AUTHORIZATION
            || name == http::header::CONTENT_TYPE
            || name == http::header::CONTENT_LENGTH
        {
            continue;
        }
        if let Ok(value) = value.to_str() {
            let key = format!(
                "HTTP_{}",
                name.as_str().to_ascii_uppercase().replace('-', "_")
            );
            set(&key, value.into());
        }
    }
    env
}

/// Turns a module's stdout (CGI headers, a blank line, the body) into a response.
pub(crate) fn parse_output(
    function: &str,
    output: Bytes,
    exit: i32,
) -> Result<Response, InvokeError> {
    let split = find_blank_line(&output);
    let Some((head_end, body_start)) = split else {
        if exit != 0 {
            return Err(InvokeError::Guest {
                function: function.to_string(),
                reason: format!("the module exited with code {exit} and wrote no CGI headers"),
            });
        }
        return Err(InvokeError::Guest {
            function: function.to_string(),
            reason:
                "the module's output has no CGI header block (headers, a blank line, then the body)"
                    .into(),
        });
    };
    let head = std::str::from_utf8(&output[..head_end]).map_err(|_| InvokeError::Guest {
        function: function.to_string(),
        reason: "the module's CGI headers are not UTF-8".into(),
    })?;
    let mut response = http::Response::new(full_body(output.slice(body_start..)));
    let mut status = None;
    let mut location = false;
    for line in head.lines().filter(|l| !l.trim().is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(InvokeError::Guest {
                function: function.to_string(),
                reason: format!("malformed CGI header line `{}`", line.escape_debug()),
            });
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("");
            status = Some(code.parse::<StatusCode>().map_err(|_| InvokeError::Guest {
                function: function.to_string(),
                reason: format!("invalid CGI status `{value}`"),
            })?);
            continue;
        }
        location |= name.eq_ignore_ascii_case("location");
        let header = HeaderName::from_bytes(name.as_bytes())
            .ok()
            .zip(HeaderValue::from_str(value).ok())
            .ok_or_else(|| InvokeError::Guest {
                function: function.to_string(),
                reason: format!("invalid CGI header `{}`", line.escape_debug()),
            })?;
        response.headers_mut().append(header.0, header.1);
    }
    *response.status_mut() = status.unwrap_or(if location {
        StatusCode::FOUND
    } else {
        StatusCode::OK
    });
    Ok(response)
}

/// Where the header block ends and the body starts (after `\n\n` or `\r\n\r\n`).
fn find_blank_line(output: &[u8]) -> Option<(usize, usize)> {
    let lf = output
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let crlf = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Fuzzing the CGI output parser with proptest: any bytes a module may write, and header blocks
/// built from CGI's own lines with hostile values. Parsing never panics; what parses has a
/// real status and exactly the bytes after the first blank line as its body. `PROPTEST_CASES`
/// sets the run's length.
#[cfg(test)]
mod fuzz {
    use http_body_util::BodyExt;
    use proptest::prelude::*;

    use super::*;

    fn line() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("Status".to_string()),
            Just("status".to_string()),
            Just("Location".to_string()),
            Just("Content-Type".to_string()),
            "[A-Za-z-]{1,20}",
            "\\PC{0,20}",
        ];
        let value = prop_oneof!["[0-9]{1,4}( [A-Za-z ]{0,12})?", "\\PC{0,40}", "[ -~]{0,40}",];
        let separator = prop_oneof![Just(":"), Just(": "), Just(""), Just("::")];
        (name, separator, value).prop_map(|(n, sep, v)| format!("{n}{sep}{v}"))
    }

    fn output() -> impl Strategy<Value = Vec<u8>> {
        let block = proptest::collection::vec(line(), 0..8);
        let eol = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
        (block, eol, any::<Vec<u8>>()).prop_map(|(lines, eol, body)| {
            let mut out = lines.join(eol).into_bytes();
            out.extend_from_slice(eol.as_bytes());
            out.extend_from_slice(eol.as_bytes());
            out.extend_from_slice(&body);
            out
        })
    }

    fn check(out: Vec<u8>, exit: i32) -> Result<(), TestCaseError> {
        let expected_body = find_blank_line(&out).map(|(_, start)| out[start..].to_vec());
        if let Ok(response) = parse_output("f", Bytes::from(out), exit) {
            let status = response.status().as_u16();
            prop_assert!((100..=999).contains(&status));
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let body = runtime
                .block_on(response.into_body().collect())
                .unwrap()
                .to_bytes();
            prop_assert_eq!(Some(body.to_vec()), expected_body);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_are_refused(out in any::<Vec<u8>>(), exit in any::<i32>()) {
            check(out, exit)?;
        }

        #[test]
        fn any_header_block_parses_or_is_refused(out in output(), exit in -1..2i32) {
            check(out, exit)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn body_of(response: Response) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn output_with_status_and_headers() {
        let out = Bytes::from_static(
            b"Status: 404 Not Found\r\nContent-Type: text/plain\r\nX-A: 1\r\n\r\nnope\n",
        );
        let response = parse_output("f", out, 0).unwrap();
        assert_eq!(response.status(), 404);
        assert_eq!(response.headers()["content-type"], "text/plain");
        assert_eq!(response.headers()["x-a"], "1");
        assert_eq!(body_of(response).await, "nope\n");
    }

    #[tokio::test]
    async fn defaults_and_redirects() {
        let response = parse_output(
            "f",
            Bytes::from_static(b"Content-Type: text/plain\n\nhi"),
            0,
        )
        .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(body_of(response).await, "hi");
        let response =
            parse_output("f", Bytes::from_static(b"Location: /elsewhere\n\n"), 0).unwrap();
        assert_eq!(response.status(), 302);
        assert_eq!(response.headers()["location"], "/elsewhere");
    }

    #[test]
    fn the_environment_follows_wagi() {
        let config = FunctionConfig {
            env: vec![("OWN".into(), "1".into())],
            route: "/api".into(),
            ..FunctionConfig::default()
        };
        let request = http::Request::post("/api/x/y?q=1")
            .header("host", "example.com:8443")
            .header("x-trace", "abc")
            .header("authorization", "Bearer secret")
            .header("content-type", "text/plain")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let env: std::collections::HashMap<_, _> =
            environment(&config, &parts, 5).into_iter().collect();
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("OWN"), Some("1"));
        assert_eq!(get("REQUEST_METHOD"), Some("POST"));
        assert_eq!(get("SCRIPT_NAME"), Some("/api"));
        assert_eq!(get("PATH_INFO"), Some("/x/y"));
        assert_eq!(get("QUERY_STRING"), Some("q=1"));
        assert_eq!(get("CONTENT_LENGTH"), Some("5"));
        assert_eq!(get("CONTENT_TYPE"), Some("text/plain"));
        assert_eq!(get("SERVER_NAME"), Some("example.com"));
        assert_eq!(get("SERVER_PORT"), Some("8443"));
        assert_eq!(get("HTTP_X_TRACE"), Some("abc"));
        assert_eq!(get("HTTP_AUTHORIZATION"), None, "credentials stay out");
        // A path outside the route (the admin API's invoke with another path) is all PATH_INFO.
        let (parts, ()) = http::Request::get("/other").body(()).unwrap().into_parts();
        let env: std::collections::HashMap<_, _> =
            environment(&config, &parts, 0).into_iter().collect();
        assert_eq!(env["PATH_INFO"], "/other");
    }

    #[test]
    fn bad_output_is_a_named_error() {
        let e = parse_output("f", Bytes::from_static(b"just text"), 0).unwrap_err();
        assert!(e.to_string().contains("no CGI header block"), "{e}");
        let e = parse_output("f", Bytes::new(), 3).unwrap_err();
        assert!(e.to_string().contains("exited with code 3"), "{e}");
        let e = parse_output("f", Bytes::from_static(b"Status: banana\n\n"), 0).unwrap_err();
        assert!(e.to_string().contains("invalid CGI status"), "{e}");
    }
}
