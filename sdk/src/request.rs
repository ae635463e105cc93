//! Reading a request: its body as bytes, text or JSON, and its query parameters.

use serde::de::DeserializeOwned;

use crate::{Error, Request};

/// Helpers on [`Request`].
#[allow(async_fn_in_trait)] // guests are single-threaded: no `Send` bound is wanted
pub trait RequestExt {
    /// The whole body.
    async fn bytes(&mut self) -> Result<Vec<u8>, Error>;
    /// The whole body as UTF-8 (400 if it is not).
    async fn text(&mut self) -> Result<String, Error>;
    /// The body parsed as JSON (400 with the parser's message if it does not fit `T`).
    async fn json<T: DeserializeOwned>(&mut self) -> Result<T, Error>;
    /// A query parameter, percent-decoded.
    fn query(&self, key: &str) -> Option<String>;
}

impl RequestExt for Request {
    async fn bytes(&mut self) -> Result<Vec<u8>, Error> {
        let body = self.body_mut().contents().await?;
        Ok(body.to_vec())
    }

    async fn text(&mut self) -> Result<String, Error> {
        String::from_utf8(self.bytes().await?)
            .map_err(|_| Error::bad_request("the request body is not UTF-8"))
    }

    async fn json<T: DeserializeOwned>(&mut self) -> Result<T, Error> {
        let bytes = self.bytes().await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::bad_request(format!("invalid JSON body: {e}")))
    }

    fn query(&self, key: &str) -> Option<String> {
        query_param(self.uri().query()?, key)
    }
}

/// The value of `key` in a query string (`a=1&b=x%20y`), percent- and `+`-decoded.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

/// Decodes `%XX` sequences only (a `+` stays a `+`), as header values are encoded.
pub(crate) fn percent_decode_strict(text: &str) -> String {
    decode(text, false)
}

pub(crate) fn percent_decode(text: &str) -> String {
    decode(text, true)
}

fn decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        assert_eq!(query_param("a=1&b=x%20y+z", "b").as_deref(), Some("x y z"));
        assert_eq!(query_param("flag&a=1", "flag").as_deref(), Some(""));
        assert_eq!(query_param("a=1", "b"), None);
        assert_eq!(query_param("a=%zz%4", "a").as_deref(), Some("%zz%4"));
    }
}
