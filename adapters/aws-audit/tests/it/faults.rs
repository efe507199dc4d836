//! What S3's failures mean for shipping, through the real SDK over HTTP:
//! a tiny S3 stand-in answers with the status and error body a test
//! scripts (moto cannot throttle or fail on request). Throttling and 5xx
//! queue the records for later (`Unavailable`); access denied is
//! `Refused`; both carry S3's request IDs (S7).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use deployctl_audit::{Sink, SinkError};
use deployctl_aws_audit::{AwsAuditError, Retention, S3ObjectLockSink};

use crate::support::{TempDir, append, location, log, unique};

const LOCK_ENABLED: &str = r#"<?xml version="1.0" encoding="UTF-8"?><ObjectLockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>"#;

/// An answer: status and S3 error code (`None`: 200 with `body`).
#[derive(Clone, Copy)]
struct Answer {
    status: u16,
    code: Option<&'static str>,
    body: &'static str,
}

const OK_LOCKED: Answer = Answer {
    status: 200,
    code: None,
    body: LOCK_ENABLED,
};

fn error(status: u16, code: &'static str) -> Answer {
    Answer {
        status,
        code: Some(code),
        body: "",
    }
}

/// Serves `lock` to GetObjectLockConfiguration and `put` to everything
/// else; returns its URL.
fn fake_s3(lock: Answer, put: Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                    return;
                }
                let mut length = 0usize;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let answer = if request_line.contains("object-lock") {
                    lock
                } else {
                    put
                };
                let id = format!("REQ{}", answer.status);
                let body = match answer.code {
                    Some(code) => format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>scripted {code}</Message><RequestId>{id}</RequestId><HostId>EXT{}</HostId></Error>",
                        answer.status
                    ),
                    None => answer.body.to_string(),
                };
                let response = format!(
                    "HTTP/1.1 {} Scripted\r\nx-amz-request-id: {id}\r\nx-amz-id-2: EXT{}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    answer.status,
                    answer.status,
                    body.len()
                );
                let mut stream = stream;
                let _ = stream.write_all(response.as_bytes());
            });
        }
    });
    url
}

fn client(url: &str) -> aws_sdk_s3::Client {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sdk = runtime.block_on(deployctl_aws::testing::sdk_config(url));
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    )
}

fn records() -> (TempDir, Vec<deployctl_audit::AuditRecord>) {
    let dir = TempDir::new("faults");
    let log = log(dir.path(), None);
    append(&log, 2);
    drop(log);
    let records = deployctl_audit::show(
        &dir.path().join("audit"),
        &deployctl_audit::Filter::default(),
    )
    .unwrap();
    (dir, records)
}

fn sink(url: &str) -> Result<S3ObjectLockSink, AwsAuditError> {
    S3ObjectLockSink::with_client(client(url), location(&unique("fake")), Retention::default())
}

#[test]
fn throttling_and_server_errors_queue_the_batch_with_request_ids() {
    let (_dir, records) = records();
    for (lock, put) in [
        (error(503, "SlowDown"), error(503, "SlowDown")),
        (OK_LOCKED, error(503, "SlowDown")),
        (OK_LOCKED, error(500, "InternalError")),
    ] {
        let sink = sink(&fake_s3(lock, put)).expect("a failing preflight is retried later");
        match sink.ship(&records, None) {
            Err(SinkError::Unavailable(message)) => {
                let status = put.status;
                assert!(
                    message.contains(&format!("request ID REQ{status}")),
                    "{message}"
                );
                assert!(
                    message.contains(&format!("extended request ID EXT{status}")),
                    "{message}"
                );
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
}

#[test]
fn access_denied_is_refused_with_the_permissions_needed() {
    let (_dir, records) = records();
    let Err(refused) = sink(&fake_s3(error(403, "AccessDenied"), OK_LOCKED)) else {
        panic!("a preflight denied access must refuse the sink");
    };
    let message = refused.to_string();
    assert!(
        message.contains("s3:GetBucketObjectLockConfiguration"),
        "{message}"
    );
    assert!(message.contains("request ID REQ403"), "{message}");

    let sink = sink(&fake_s3(OK_LOCKED, error(403, "AccessDenied"))).unwrap();
    match sink.ship(&records, None) {
        Err(SinkError::Refused(message)) => {
            assert!(message.contains("PutObject s3://"), "{message}");
            assert!(message.contains("AccessDenied"), "{message}");
            assert!(message.contains("request ID REQ403"), "{message}");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
}
