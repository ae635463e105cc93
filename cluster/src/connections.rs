//! Keep-alive HTTP/1.1 connections from a gateway to its workers, a few per worker, reused
//! call after call. Sending goes through hyper's `try_send_request`, which hands a request back
//! when it never left (the connection was gone before a byte of it was written): such a call
//! can go to another worker, body and all, because no guest has seen it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use wafer_worker::{Body, Request};

/// How long connecting to a worker may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Idle connections kept per worker.
const IDLE_PER_WORKER: usize = 64;
/// An idle connection is dropped after this long, well before a worker would close it (its
/// header timeout, [`WORKER_HEADER_TIMEOUT`]): so a request never goes out on a connection the
/// worker is closing at that moment, where it would be lost without a trace.
const IDLE_LIMIT: Duration = Duration::from_secs(20);
/// How long a worker waits for the next request on an idle connection.
pub const WORKER_HEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// How sending a request went wrong.
pub enum SendError {
    /// The request never left: here it is, unchanged, for another worker.
    NotSent(Box<Request>, String),
    /// It left, and then the connection failed: the worker may have run it.
    Lost(String),
}

/// Connections by worker address (`host:port`).
#[derive(Default)]
pub struct Connections {
    idle: Mutex<HashMap<String, Vec<Idle>>>,
}

/// A connection waiting for the next request, and since when.
type Idle = (SendRequest<Body>, Instant);

impl Connections {
    /// Sends `request` to the worker at `addr` on an idle connection, or a new one.
    pub async fn send(
        &self,
        addr: &str,
        request: Request,
    ) -> Result<http::Response<Incoming>, SendError> {
        let mut sender = match self.checkout(addr) {
            Some(sender) => sender,
            None => match connect(addr).await {
                Ok(sender) => sender,
                Err(e) => return Err(SendError::NotSent(Box::new(request), e)),
            },
        };
        let sent = sender.try_send_request(request).await;
        match sent {
            Ok(response) => {
                // Ready again once this response's body has been read.
                self.checkin(addr, sender);
                Ok(response)
            }
            Err(mut e) => match e.take_message() {
                Some(request) => Err(SendError::NotSent(
                    Box::new(request),
                    e.into_error().to_string(),
                )),
                None => Err(SendError::Lost(e.into_error().to_string())),
            },
        }
    }

    /// An idle connection that is ready for another request; closed ones are dropped.
    fn checkout(&self, addr: &str) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap();
        let list = idle.get_mut(addr)?;
        let now = Instant::now();
        list.retain(|(s, used)| !s.is_closed() && now.duration_since(*used) < IDLE_LIMIT);
        let ready = list.iter().rposition(|(s, _)| s.is_ready())?;
        Some(list.swap_remove(ready).0)
    }

    fn checkin(&self, addr: &str, sender: SendRequest<Body>) {
        let mut idle = self.idle.lock().unwrap();
        let list = idle.entry(addr.to_string()).or_default();
        if list.len() < IDLE_PER_WORKER {
            list.push((sender, Instant::now()));
        }
    }

    /// Drops every connection to `addr` (its worker left or died).
    pub fn forget(&self, addr: &str) {
        self.idle.lock().unwrap().remove(addr);
    }
}

async fn connect(addr: &str) -> Result<SendRequest<Body>, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    // Small requests and answers leave at once instead of waiting out Nagle.
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake with {addr}: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "connection to a worker ended");
        }
    });
    Ok(sender)
}
