//! `hello` as a wasi:http 0.3 service: it exports `wasi:http/handler`, an async function, so one
//! instance can serve many calls at once while each waits on I/O.
//!
//! ```sh
//! wafer deploy examples/hello-p3
//! curl http://127.0.0.1:8080/hello-p3       # Hello from wafer! (GET /hello-p3)
//! curl -d 'echo me' http://127.0.0.1:8080/hello-p3/echo
//! ```
//!
//! It answers as `examples/hello` does: `GET` a greeting (`GREETING` from the manifest's
//! `[env]`), any other method echoes the request body back, streaming. Each call logs one line.

use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response};
use wasip3::wit_bindgen::StreamResult;
use wasip3::{wit_future, wit_stream};

struct Hello;

wasip3::http::service::export!(Hello);

impl wasip3::exports::http::handler::Guest for Hello {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        let method = request.get_method();
        let method_name = match &method {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Connect => "CONNECT",
            Method::Trace => "TRACE",
            Method::Other(other) => other.as_str(),
        };
        println!("{method_name} {path}");

        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        )])
        .expect("valid header");
        let (mut out, body) = wit_stream::new();
        // No trailers: dropping the writer resolves the future to `Ok(None)`.
        let (_, trailers) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(headers, Some(body), trailers);

        let greeting = matches!(method, Method::Get | Method::Head).then(|| {
            let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".into());
            format!("{greeting} from wafer! ({method_name} {path})\n")
        });
        // The body is written after the response is returned: the host reads it as it comes.
        wasip3::spawn_local(async move {
            if let Some(text) = greeting {
                out.write_all(text.into_bytes()).await;
                return;
            }
            // Echo the request body in chunks, never holding all of it.
            let (_, handled) = wit_future::new(|| Ok(()));
            let (mut input, _trailers) = Request::consume_body(request, handled);
            loop {
                let (result, chunk) = input.read(Vec::with_capacity(16 * 1024)).await;
                if !chunk.is_empty() && !out.write_all(chunk).await.is_empty() {
                    break; // the client went away
                }
                if !matches!(result, StreamResult::Complete(_)) {
                    break;
                }
            }
        });
        Ok(response)
    }
}
