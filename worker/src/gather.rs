//! Response coalescing: the head of a response waits a moment for the start of its body, so that
//! a small response leaves in one write.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;

use crate::backend::{Response, full_body};

/// How long a response head waits for its body.
const GATHER_WAIT: Duration = Duration::from_millis(1);
/// Body bytes gathered before the head is sent.
const GATHER_BYTES: usize = 64 << 10;

/// Gathers the start of a response body (for up to [`GATHER_WAIT`] and [`GATHER_BYTES`]), so
/// that the head and a short body leave in one write, with a `Content-Length` when the body is
/// complete. A guest sets its response head before it writes the body; sent as they come, head,
/// chunk and end of a small response are three writes, and on a loopback or LAN connection each
/// costs a packet and wakes the client. A body that takes longer streams as before.
pub(crate) async fn gather(response: Response) -> Response {
    use futures::StreamExt;
    let (parts, mut body) = response.into_parts();
    let deadline = tokio::time::Instant::now() + GATHER_WAIT;
    let mut frames = Vec::new();
    let mut size = 0;
    let ended = loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_elapsed) => break false,
            Ok(None) => break true,
            Ok(Some(Ok(frame))) => {
                size += frame.data_ref().map_or(0, |d| d.len());
                frames.push(Ok(frame));
                if size >= GATHER_BYTES {
                    break false;
                }
            }
            Ok(Some(Err(e))) => {
                frames.push(Err(e));
                break true;
            }
        }
    };
    if frames.is_empty() && !ended {
        return Response::from_parts(parts, body);
    }
    if ended && frames.iter().all(|f| f.as_ref().is_ok_and(|f| f.is_data())) {
        let mut chunks = frames
            .into_iter()
            .flatten()
            .filter_map(|frame| frame.into_data().ok());
        // Usually one chunk, passed on as it is; several are joined.
        let bytes = match (chunks.next(), chunks.next()) {
            (None, _) => Bytes::new(),
            (Some(only), None) => only,
            (Some(first), Some(second)) => {
                let mut joined = bytes::BytesMut::with_capacity(size);
                for chunk in [first, second].into_iter().chain(chunks) {
                    joined.extend_from_slice(&chunk);
                }
                joined.freeze()
            }
        };
        return Response::from_parts(parts, full_body(bytes));
    }
    let gathered = futures::stream::iter(frames);
    let body = if ended {
        http_body_util::StreamBody::new(gathered.boxed())
    } else {
        let rest = http_body_util::BodyStream::new(body);
        http_body_util::StreamBody::new(gathered.chain(rest).boxed())
    };
    Response::from_parts(parts, body.boxed_unsync())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BoxError;

    /// A body fed by the test, one frame at a time.
    fn fed() -> (
        tokio::sync::mpsc::Sender<Result<http_body::Frame<Bytes>, BoxError>>,
        Response,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|frame| (frame, rx))
        });
        let body = http_body_util::StreamBody::new(stream).boxed_unsync();
        (tx, http::Response::new(body))
    }

    #[tokio::test]
    async fn a_short_complete_body_leaves_whole_with_its_length() {
        let (tx, response) = fed();
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"hel"))))
            .await
            .unwrap();
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"lo"))))
            .await
            .unwrap();
        drop(tx);
        let body = gather(response).await.into_body();
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(5));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
    }

    #[tokio::test]
    async fn a_slow_body_streams_on_with_nothing_lost() {
        let (tx, response) = fed();
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"first "))))
            .await
            .unwrap();
        // The rest comes after the gather wait: the head goes without it.
        let response = gather(response).await;
        assert_eq!(http_body::Body::size_hint(response.body()).exact(), None);
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"second"))))
            .await
            .unwrap();
        drop(tx);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "first second");
    }
}
