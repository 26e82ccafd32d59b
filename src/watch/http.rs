//! The HTTP endpoint for probes and Prometheus: `/healthz`, `/readyz`, `/metrics`.
//!
//! HTTP parsing is hyper's (a hand-written parser let slow clients hold sockets forever); this
//! module only bounds what a client may cost the watcher, whose real work is reconciling:
//!
//! - at most [`MAX_CONNECTIONS`] connections at once. When all slots are taken, a new
//!   connection takes the slot of the oldest one, which is closed: a crowd of slow or idle
//!   clients cannot lock a prober out (refusing newcomers would let them), and the process
//!   never holds more than the cap (plus the one being accepted) in file descriptors. To cut a
//!   probe off, a client would have to open the cap's worth of connections within the
//!   milliseconds the probe takes;
//! - a request head must arrive within [`HEADER_READ_TIMEOUT`] of the connection opening
//!   (a fixed deadline: trickling a byte at a time does not extend it), and a connection lives
//!   at most [`CONNECTION_DEADLINE`], however slowly its client reads;
//! - one request per connection (no keep-alive): probes and scrapers reconnect anyway;
//! - an accept error (out of file descriptors, most likely) pauses accepting for
//!   [`ACCEPT_ERROR_PAUSE`] instead of retrying in a busy loop.

use super::metrics::Metrics;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing::warn;

/// Connections served at once. Probes and a scraper or two need a handful; the cap keeps a
/// flood of clients from taking the descriptors the database and Chroma connections need.
pub const MAX_CONNECTIONS: usize = 64;

/// From the connection opening to the end of the request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// From the connection opening to its close, response included.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);

/// How long accepting pauses after an error.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Request heads are a few hundred bytes; hyper's default buffer would allow 400 KiB each.
const MAX_BUFFER: usize = 16 * 1024;

/// Serves until the process ends.
pub async fn serve(listener: TcpListener, metrics: Arc<Mutex<Metrics>>) {
    let slots = Slots::default();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(MAX_BUFFER);
    let mut failing = false;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                failing = false;
                stream
            }
            Err(error) => {
                // The connection stays in the kernel's queue, so the listener is readable
                // again at once: without a pause this loop would take a whole core. One line
                // per run of failures, not ten a second.
                if !failing {
                    warn!(%error, "cannot accept a connection on the metrics endpoint; retrying every 100 ms");
                    failing = true;
                }
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let (slot, evicted) = slots.take();
        let metrics = metrics.clone();
        let connection = builder.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |request| {
                let response = respond(&request, &metrics);
                async move { Ok::<_, Infallible>(response) }
            }),
        );
        tokio::spawn(async move {
            // Dropping the connection closes its socket: on the deadline, or when a newer
            // connection needs the slot.
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_DEADLINE, connection) => {}
                _ = evicted => {}
            }
            drop(slot);
        });
    }
}

/// The open connections, oldest first, each with the sender whose drop closes it.
#[derive(Default, Clone)]
struct Slots(Arc<Mutex<Open>>);

#[derive(Default)]
struct Open {
    next_id: u64,
    connections: VecDeque<(u64, oneshot::Sender<Infallible>)>,
}

/// A connection's place among the open ones; given back when dropped.
struct Slot {
    id: u64,
    slots: Slots,
}

impl Slots {
    /// A slot for a new connection, evicting the oldest one when all are taken. The receiver
    /// completes when this connection is evicted in turn.
    fn take(&self) -> (Slot, oneshot::Receiver<Infallible>) {
        let (sender, receiver) = oneshot::channel();
        let mut open = self.0.lock().expect("slots lock");
        open.next_id += 1;
        let id = open.next_id;
        while open.connections.len() >= MAX_CONNECTIONS {
            // Dropping the sender completes the oldest connection's receiver.
            open.connections.pop_front();
        }
        open.connections.push_back((id, sender));
        (
            Slot {
                id,
                slots: self.clone(),
            },
            receiver,
        )
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().expect("slots lock").connections.len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.0.lock().expect("slots lock");
        if let Some(index) = open.connections.iter().position(|(id, _)| *id == self.id) {
            open.connections.remove(index);
        }
    }
}

fn respond(request: &Request<Incoming>, metrics: &Mutex<Metrics>) -> Response<String> {
    const PLAIN: &str = "text/plain";
    if request.method() != Method::GET {
        let mut response = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN,
            "GET only\n".to_string(),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    let metrics = metrics.lock().expect("metrics lock");
    match request.uri().path() {
        "/healthz" => reply(StatusCode::OK, PLAIN, "ok\n".to_string()),
        "/readyz" if metrics.ready() => reply(StatusCode::OK, PLAIN, "ready\n".to_string()),
        "/readyz" => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            PLAIN,
            "not ready: no successful reconcile yet, the last one failed, or the watched directory is missing or invalid\n"
                .to_string(),
        ),
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        _ => reply(StatusCode::NOT_FOUND, PLAIN, "not found\n".to_string()),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_connection_evicts_the_oldest_when_all_slots_are_taken() {
        let slots = Slots::default();
        let mut taken: Vec<_> = (0..MAX_CONNECTIONS).map(|_| slots.take()).collect();
        let (_newest, _) = slots.take();
        let (_, oldest_evicted) = &mut taken[0];
        assert!(
            oldest_evicted
                .try_recv()
                .is_err_and(|error| error == oneshot::error::TryRecvError::Closed),
            "the oldest connection was not told to close"
        );
        let (_, second) = &mut taken[1];
        assert_eq!(
            second.try_recv().unwrap_err(),
            oneshot::error::TryRecvError::Empty
        );
        assert_eq!(slots.len(), MAX_CONNECTIONS);

        // A connection that ends gives its slot back.
        drop(taken.pop());
        assert_eq!(slots.len(), MAX_CONNECTIONS - 1);
    }
}
