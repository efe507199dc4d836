//! S2: an unreachable sink never loses a record. The sink points at a port
//! where nothing listens; records queue in the outbox (across a restart
//! too), and the background shipper delivers them once the endpoint
//! answers: a forwarder to moto starts listening on that port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deployctl_audit::{AuditLog, AuditOptions, Who};
use deployctl_aws_audit::{Retention, S3ObjectLockSink};

use crate::support::{Moto, TempDir, append, location, moto};

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Forwards every connection to `127.0.0.1:port` on to `target`, from now
/// until the test process ends.
fn forward(port: u16, target: SocketAddr) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("the port is still free");
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(upstream) = TcpStream::connect(target) else {
                continue;
            };
            let pump = |mut from: TcpStream, mut to: TcpStream| {
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 16 * 1024];
                    while let Ok(n) = from.read(&mut buffer) {
                        if n == 0 || to.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            };
            pump(client.try_clone().unwrap(), upstream.try_clone().unwrap());
            pump(upstream, client);
        }
    });
}

fn open(dir: &TempDir, moto: &Moto, endpoint: &str, bucket: &str) -> AuditLog {
    // Opening does not fail while S3 is unreachable: the Object Lock check
    // waits for the first shipment.
    let sink =
        S3ObjectLockSink::with_client(moto.s3_at(endpoint), location(bucket), Retention::default())
            .expect("an unreachable sink still opens");
    let mut options = AuditOptions::new(Who::local("tester")).sink(Arc::new(sink));
    options.retry_min = Duration::from_millis(100);
    options.retry_max = Duration::from_millis(300);
    AuditLog::open(dir.path().join("audit"), options).unwrap()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn records_queue_while_s3_is_unreachable_and_ship_when_it_is_back() {
    let Some(url) = moto("records_queue_while_s3_is_unreachable_and_ship_when_it_is_back") else {
        return;
    };
    let moto = Moto::new(&url);
    let bucket = moto.locked_bucket();
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let dir = TempDir::new("queue");

    let log = open(&dir, &moto, &endpoint, &bucket);
    append(&log, 4);
    wait_until("the shipper has failed", || {
        log.pending().last_error.is_some()
    });
    let pending = log.pending();
    assert_eq!((pending.records, pending.oldest_seq), (4, Some(1)));
    let error = pending.last_error.unwrap();
    assert!(error.contains("unavailable"), "{error}");
    assert!(pending.failing_since.is_some());
    assert!(log.ship_now().is_err());
    drop(log);

    // A restart while S3 is still away: the queue is on disk.
    let log = open(&dir, &moto, &endpoint, &bucket);
    assert_eq!(log.pending().records, 4);
    append(&log, 2);
    assert!(moto.keys(&bucket).is_empty(), "nothing reached S3");

    // S3 is reachable again on the same endpoint: the background shipper's
    // next retry delivers everything, in order.
    let target: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    forward(port, target);
    wait_until("everything is shipped", || log.pending().is_empty());
    assert_eq!(log.pending().last_error, None);
    let keys = moto.keys(&bucket);
    assert!(!keys.is_empty());
    let mut shipped = Vec::new();
    for key in keys.iter().filter(|k| k.contains("/records-")) {
        shipped.extend(moto.body(&bucket, key));
    }
    assert_eq!(
        shipped,
        std::fs::read(dir.path().join("audit/audit.jsonl")).unwrap(),
        "all six records, each once, in order"
    );
}
