//! A loopback TCP relay in front of the real Chroma that cuts the network at a chosen moment:
//! it forwards traffic untouched until a client sends a request whose bytes contain `trigger`
//! (or the test calls [`FaultProxy::cut`]), then drops every connection and refuses new ones, as
//! a server that went away would, until [`FaultProxy::heal`]. Listens on 127.0.0.1 only; its
//! threads end with the test process.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

pub struct FaultProxy {
    pub url: String,
    tripped: Arc<AtomicBool>,
    /// After the trip, hold connections open and answer nothing (a hung server) instead of
    /// dropping them.
    hang: Arc<AtomicBool>,
    /// The first 1 MiB a client sent, for tests that check what went over the wire.
    sent: Arc<std::sync::Mutex<Vec<u8>>>,
    /// HTTP requests the clients sent (request lines seen), all connections together.
    requests: Arc<AtomicUsize>,
}

/// What the client -> server direction records.
#[derive(Clone)]
struct Recorder {
    sent: Arc<std::sync::Mutex<Vec<u8>>>,
    requests: Arc<AtomicUsize>,
}

/// The end of an HTTP/1.1 request line; counted across reads of one connection.
const REQUEST_LINE_END: &[u8] = b" HTTP/1.1\r\n";

impl FaultProxy {
    /// Starts a relay to `upstream` (`http://host:port`) that hangs on `trigger`: from then on
    /// every connection is held open without an answer, for at most [`HANG_FOR`].
    pub fn start_hanging(upstream: &str, trigger: &'static [&'static str]) -> Self {
        let proxy = FaultProxy::start(upstream, trigger);
        proxy.hang.store(true, Ordering::SeqCst);
        proxy
    }

    /// Starts a relay to `upstream` (`http://host:port`) that trips on `trigger`.
    pub fn start(upstream: &str, trigger: &'static [&'static str]) -> Self {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let tripped = Arc::new(AtomicBool::new(false));
        let hang = Arc::new(AtomicBool::new(false));
        let hang_flag = hang.clone();
        let sent: Arc<std::sync::Mutex<Vec<u8>>> = Arc::default();
        let requests: Arc<AtomicUsize> = Arc::default();
        let tripped_flag = tripped.clone();
        let record = Recorder {
            sent: sent.clone(),
            requests: requests.clone(),
        };
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if tripped_flag.load(Ordering::SeqCst) {
                    if hang_flag.load(Ordering::SeqCst) {
                        thread::spawn(move || hold(client));
                    } else {
                        let _ = client.shutdown(Shutdown::Both);
                    }
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let tripped = tripped_flag.clone();
                let (client_read, server_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                // client -> server, watching for the trigger and recording
                let record = record.clone();
                let hang = hang_flag.clone();
                thread::spawn(move || {
                    relay(
                        client_read,
                        server_write,
                        Some((trigger, tripped)),
                        Some(record),
                        hang,
                    )
                });
                // server -> client, cut as well when the fault trips
                let cut = tripped_flag.clone();
                let hang = hang_flag.clone();
                thread::spawn(move || relay(server, client, Some((&[], cut)), None, hang));
            }
        });
        FaultProxy {
            url,
            tripped,
            hang,
            sent,
            requests,
        }
    }

    /// True once the trigger was seen (or the network was cut by hand).
    pub fn tripped(&self) -> bool {
        self.tripped.load(Ordering::SeqCst)
    }

    /// True when the clients sent `needle` (in the first MiB of traffic).
    pub fn client_sent(&self, needle: &str) -> bool {
        String::from_utf8_lossy(&self.sent.lock().unwrap()).contains(needle)
    }

    /// HTTP requests the clients sent so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Cuts the network now: open connections drop at their next byte, new ones are refused.
    pub fn cut(&self) {
        self.tripped.store(true, Ordering::SeqCst);
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.tripped.store(false, Ordering::SeqCst);
    }
}

type Watch = (&'static [&'static str], Arc<AtomicBool>);

/// How long a hanging proxy holds a connection before closing it (the test is over by then).
pub const HANG_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Holds a connection open, answering nothing, then closes it.
fn hold(stream: TcpStream) {
    thread::sleep(HANG_FOR);
    let _ = stream.shutdown(Shutdown::Both);
}

fn relay(
    mut from: TcpStream,
    mut to: TcpStream,
    watch: Option<Watch>,
    record: Option<Recorder>,
    hang: Arc<AtomicBool>,
) {
    let mut buffer = [0u8; 64 * 1024];
    // The last bytes of the previous read: a request line may be split between two reads.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if let Some((trigger, tripped)) = &watch {
            // An empty trigger never fires (the server -> client direction only obeys cuts).
            let chunk = String::from_utf8_lossy(&buffer[..read]);
            if !trigger.is_empty() && trigger.iter().all(|part| chunk.contains(part)) {
                tripped.store(true, Ordering::SeqCst);
            }
            if tripped.load(Ordering::SeqCst) {
                if hang.load(Ordering::SeqCst) {
                    hold(from);
                    return;
                }
                break;
            }
        }
        if let Some(record) = &record {
            tail.extend_from_slice(&buffer[..read]);
            let lines = tail
                .windows(REQUEST_LINE_END.len())
                .filter(|window| *window == REQUEST_LINE_END)
                .count();
            record.requests.fetch_add(lines, Ordering::SeqCst);
            let keep = REQUEST_LINE_END.len() - 1;
            tail.drain(..tail.len().saturating_sub(keep));
            let mut sent = record.sent.lock().unwrap();
            if sent.len() < 1 << 20 {
                sent.extend_from_slice(&buffer[..read]);
            }
        }
        if to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
