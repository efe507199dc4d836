//! A small real HTTP/1.1 server for the probes to talk to: tokio's
//! `TcpListener` on an ephemeral 127.0.0.1 port and hand-written answers,
//! one request per connection (`Connection: close`, as the probes open a
//! fresh connection per measurement anyway). It records what reached it,
//! so tests can check what was sent and that nothing was.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use deployctl_plan::model::{Comparison, GateCheck};
use reqwest::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Connections one server accepts before it stops listening: no test needs
/// more, and a runaway client cannot keep a test alive.
const MAX_CONNECTIONS: usize = 32;
/// The most of a request head the server reads.
const MAX_HEAD: usize = 64 * 1024;
/// How long the server waits for a request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A request as it reached the server.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, exactly as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// The request body, up to the head-size bound.
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// A query parameter, decoded the way Prometheus (Go's `ParseQuery`)
    /// decodes it.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let url = Url::parse(&format!("http://server{}", self.target)).ok()?;
        url.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn json(status: u16, body: impl Into<String>) -> Reply {
        Reply::status(status)
            .header("Content-Type", "application/json")
            .body(body.into())
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Answer only after `delay`.
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct Seen {
    connections: usize,
    requests: Vec<Request>,
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A running server; stops (with every open connection) when dropped.
pub struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let handler: Arc<Handler> = Arc::new(handler);
        let task = tokio::spawn(accept_loop(listener, handler, Arc::clone(&seen)));
        Server { addr, seen, task }
    }

    /// A server that answers every request with `reply`.
    pub async fn replying(reply: Reply) -> Server {
        Server::start(move |_| reply.clone()).await
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.seen().requests.clone()
    }

    pub fn connections(&self) -> usize {
        self.seen().connections
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Dropping the accept task drops its JoinSet, which aborts the
        // connection tasks (slow answers included).
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, handler: Arc<Handler>, seen: Arc<Mutex<Seen>>) {
    let mut connections = JoinSet::new();
    for _ in 0..MAX_CONNECTIONS {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        lock(&seen).connections += 1;
        connections.spawn(serve(stream, Arc::clone(&handler), Arc::clone(&seen)));
    }
    // Keep answering the connections already open until the test ends.
    while connections.join_next().await.is_some() {}
}

fn lock(seen: &Mutex<Seen>) -> MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

enum Incoming {
    Http(Request),
    /// A TLS ClientHello (record type 0x16) on this plain-text port.
    Tls,
}

async fn serve(mut stream: TcpStream, handler: Arc<Handler>, seen: Arc<Mutex<Seen>>) {
    let incoming = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await {
        Ok(Some(incoming)) => incoming,
        Ok(None) | Err(_) => return,
    };
    let request = match incoming {
        Incoming::Http(request) => request,
        Incoming::Tls => {
            // Answer in plain text so the client's handshake fails at once.
            let _ = stream
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            let _ = stream.shutdown().await;
            return;
        }
    };
    lock(&seen).requests.push(request.clone());
    let reply = handler(&request);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reason(reply.status),
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    // Errors are expected here: a probe may hang up once it has read enough.
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    if request.method != "HEAD" {
        let _ = stream.write_all(&reply.body).await;
    }
    let _ = stream.shutdown().await;
}

/// Reads one request head (and skips a declared body), bounded in size.
async fn read_request(stream: &mut TcpStream) -> Option<Incoming> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    while buffer.len() < MAX_HEAD {
        if buffer.first() == Some(&0x16) {
            return Some(Incoming::Tls);
        }
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            let mut request = parse_head(&buffer[..end])?;
            let declared: usize = request
                .header("content-length")
                .and_then(|length| length.parse().ok())
                .unwrap_or(0);
            let mut body = buffer[end + 4..].to_vec();
            let wanted = declared.min(MAX_HEAD);
            while body.len() < wanted {
                let read = stream.read(&mut chunk).await.ok()?;
                if read == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..read]);
            }
            body.truncate(wanted);
            request.body = body;
            return Some(Incoming::Http(request));
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    None
}

fn parse_head(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    Some(Request {
        method,
        target,
        headers,
        body: Vec::new(),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        302 => "Found",
        400 => "Bad Request",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// A port nothing listens on: bound once to get it, then released.
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    listener.local_addr().expect("local address").port()
}

/// The fields of an `http` gate check, so tests can use struct update
/// syntax: `HttpGate { expect_body: ..., ..HttpGate::new(url) }.check()`.
pub struct HttpGate {
    pub url: String,
    pub method: String,
    pub expect_status: Vec<u16>,
    pub expect_body: Option<String>,
    pub timeout: Duration,
    pub headers: BTreeMap<String, String>,
    pub allow_insecure_http: bool,
}

impl HttpGate {
    /// The validator's defaults, with a short timeout, and plain HTTP
    /// allowed by the plan (the test server has no TLS).
    pub fn new(url: &str) -> HttpGate {
        HttpGate {
            url: url.to_owned(),
            method: "GET".to_owned(),
            expect_status: vec![200],
            expect_body: None,
            timeout: Duration::from_secs(2),
            headers: BTreeMap::new(),
            allow_insecure_http: true,
        }
    }

    pub fn check(self) -> GateCheck {
        GateCheck::Http {
            url: self.url,
            method: self.method,
            expect_status: self.expect_status,
            expect_body: self.expect_body,
            timeout: self.timeout,
            headers: self.headers,
            allow_insecure_http: self.allow_insecure_http,
        }
    }
}

/// A `prometheus` gate check whose plan allows plain HTTP (the test
/// server has no TLS).
pub fn prometheus_check(address: &str, comparison: Comparison, threshold: f64) -> GateCheck {
    GateCheck::Prometheus {
        address: address.to_owned(),
        query: "sum(rate(errors_total[5m]))".to_owned(),
        comparison,
        threshold,
        allow_insecure_http: true,
    }
}
