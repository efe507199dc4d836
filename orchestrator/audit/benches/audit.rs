//! Audit trail benchmark: `cargo bench -p deployctl-audit --bench audit`.
//!
//! 1. Durable append rate, chaining and group commit included, on the
//!    system temp dir (ext4 on the standard machine): one thread appending
//!    one record at a time (one fsync each: the floor), 8 threads doing the
//!    same (group commit shares fsyncs), and one thread appending batches
//!    of 256. Target: ≥ 20,000 records/s.
//! 2. Verification rate over 1,000,000 records (`verify`: read, check
//!    `seq`/`prev`, recompute every SHA-256, check the 1,000 signed
//!    checkpoints). Target: ≥ 500,000 records/s. To show where the time
//!    goes it also times the parts alone: reading and splitting lines,
//!    SHA-256 of every line, and (for comparison) a full `serde_json`
//!    parse of every line into an `AuditRecord`, which `verify` avoids.
//!
//! Records look like a real run's: operator, OS user, host, an AWS caller
//! ARN, run/stage/target, a version change, a plan digest, a request ID
//! (≈ 560 bytes a line).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deployctl_audit::canonical::{body_hash, parse_record_line};
use deployctl_audit::{
    Action, AuditLog, AuditOptions, AuditRecord, Entry, Outcome, What, Who, verify,
};

const APPEND_TARGET: f64 = 20_000.0;
const VERIFY_TARGET: f64 = 500_000.0;
const VERIFY_RECORDS: u64 = 1_000_000;
const VERIFY_RUNS: usize = 5;

fn who() -> Who {
    Who {
        operator: "alice.example".into(),
        os_user: "alice".into(),
        host: "deploy-pc-07.corp.example".into(),
        aws_caller_arn: Some(
            "arn:aws:sts::123456789012:assumed-role/deployctl-deploy/alice.example".into(),
        ),
    }
}

fn entry(i: u64) -> Entry {
    let what = What::new(Action::StageWeightSet)
        .run(format!("run-20261124-{:06}", i / 1000))
        .stage(format!("canary-eu-west-1-{}", i % 50))
        .target("checkout-service-lambda-alias-live")
        .change(format!("{}", i % 100), format!("{}", (i + 10) % 100))
        .plan_digest("sha256:9f2c4e0b6d1a8f3e7c5b2a0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f")
        .detail("weight moved by the canary schedule (step 3 of 7)");
    Entry::new(who(), what, Outcome::ok()).request_id(format!("0f3c9a1e-7b2d-4c5e-9f8a-{:012x}", i))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "deployctl-audit-bench-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn options() -> AuditOptions {
    AuditOptions::new(who()).background_shipping(false)
}

struct AppendRun {
    name: String,
    records: u64,
    elapsed: Duration,
    commits: u64,
}

impl AppendRun {
    fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
}

fn append_threads(threads: u64, each: u64) -> AppendRun {
    let dir = scratch(&format!("threads-{threads}"));
    let log = Arc::new(AuditLog::open(&dir, options()).expect("open"));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..each {
                    log.append(entry(t * each + i)).expect("append");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("appender");
    }
    let elapsed = start.elapsed();
    let stats = log.stats();
    assert_eq!(stats.seq, threads * each);
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
    AppendRun {
        name: format!("{threads} thread(s), `append` one record at a time"),
        records: threads * each,
        elapsed,
        commits: stats.commits,
    }
}

fn append_batches(batch: u64, batches: u64) -> AppendRun {
    let dir = scratch("batches");
    let log = AuditLog::open(&dir, options()).expect("open");
    let start = Instant::now();
    for b in 0..batches {
        log.append_batch((0..batch).map(|i| entry(b * batch + i)).collect())
            .expect("append_batch");
    }
    let elapsed = start.elapsed();
    let stats = log.stats();
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
    AppendRun {
        name: format!("1 thread, `append_batch` of {batch}"),
        records: batch * batches,
        elapsed,
        commits: stats.commits,
    }
}

/// Bare 560-byte append + fdatasync on the same file system, for context.
fn bare_fsync(count: u32) -> Duration {
    let dir = scratch("fsync");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut file = std::fs::File::create(dir.join("f")).expect("file");
    let line = [b'x'; 560];
    let start = Instant::now();
    for _ in 0..count {
        file.write_all(&line).expect("write");
        file.sync_data().expect("fsync");
    }
    let elapsed = start.elapsed() / count;
    let _ = std::fs::remove_dir_all(&dir);
    elapsed
}

fn for_each_line(path: &Path, mut each: impl FnMut(&[u8])) {
    let file = std::fs::File::open(path).expect("open");
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).expect("read") == 0 {
            return;
        }
        line.pop();
        each(&line);
    }
}

fn timed(work: impl FnOnce()) -> Duration {
    let start = Instant::now();
    work();
    start.elapsed()
}

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "NO" }
}

fn main() {
    println!("# deployctl-audit benchmark");
    println!(
        "temp dir: {} ({} cores)",
        std::env::temp_dir().display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();

    // 1. Durable appends.
    let fsync = bare_fsync(500);
    let runs = [
        append_threads(1, 2_000),
        append_threads(8, 5_000),
        append_threads(32, 2_000),
        append_batches(256, 400),
    ];
    println!("## durable append (chained, fsynced; target ≥ {APPEND_TARGET:.0} records/s)");
    println!();
    println!(
        "| appenders | records | time | records/s | fsynced commits | records/commit | target met |"
    );
    println!("|---|---|---|---|---|---|---|");
    for run in &runs {
        println!(
            "| {} | {} | {:.2} s | {:.0} | {} | {:.1} | {} |",
            run.name,
            run.records,
            run.elapsed.as_secs_f64(),
            run.rate(),
            run.commits,
            run.records as f64 / run.commits.max(1) as f64,
            if run.name.starts_with("1 thread(s)") {
                "(floor: one fsync per record)"
            } else {
                met(run.rate() >= APPEND_TARGET)
            }
        );
    }
    println!();
    println!(
        "bare 560-byte write + fdatasync, same file system: {:.0} µs",
        fsync.as_secs_f64() * 1e6
    );
    println!();

    // 2. Verification.
    let dir = scratch("verify");
    let generate = Instant::now();
    {
        let log = AuditLog::open(&dir, options()).expect("open");
        let batch = 4096;
        let mut next = 0;
        while next < VERIFY_RECORDS {
            let count = batch.min(VERIFY_RECORDS - next);
            log.append_batch((next..next + count).map(entry).collect())
                .expect("append_batch");
            next += count;
        }
        log.checkpoint().expect("checkpoint");
    }
    let log_path = dir.join("audit.jsonl");
    let bytes = std::fs::metadata(&log_path).expect("log").len();
    println!(
        "## verification ({VERIFY_RECORDS} records, {:.0} MB, {:.0} bytes/record; generated in {:.1} s)",
        bytes as f64 / 1e6,
        bytes as f64 / VERIFY_RECORDS as f64,
        generate.elapsed().as_secs_f64()
    );
    println!();
    let key = dir.join("signing-key.pub");
    // Warm the page cache once, as a re-run would find it.
    let warm = verify(&dir, &key, None).expect("verify");
    println!(
        "signed checkpoints verified per run: {} (one per 4,096-record batch, and the final one)",
        warm.checkpoints
    );
    println!();
    let mut times: Vec<Duration> = (0..VERIFY_RUNS)
        .map(|_| {
            let start = Instant::now();
            let report = verify(&dir, &key, None).expect("verify");
            let elapsed = start.elapsed();
            assert!(report.is_ok(), "{report}");
            assert_eq!(report.records, VERIFY_RECORDS);
            assert!(report.checkpoints > 0);
            elapsed
        })
        .collect();
    times.sort();
    let rate = |d: Duration| VERIFY_RECORDS as f64 / d.as_secs_f64();
    let median = times[times.len() / 2];
    println!("| measure | runs | min | median | max | records/s (median) | target met |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| `verify` (chain + every hash + checkpoints) | {VERIFY_RUNS} | {:.0} ms | {:.0} ms | {:.0} ms | **{:.0}** | {} |",
        times[0].as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        rate(median),
        met(rate(median) >= VERIFY_TARGET)
    );

    // Where the time goes: each part alone, one pass each.
    let mut count = 0u64;
    let read = timed(|| for_each_line(&log_path, |_| count += 1));
    let mut seqs = 0u64;
    let fast = timed(|| {
        for_each_line(&log_path, |line| {
            seqs += parse_record_line(line).expect("canonical").seq;
        })
    });
    let mut hashed = 0u8;
    let hash = timed(|| for_each_line(&log_path, |line| hashed ^= body_hash(line).0[0]));
    let mut parsed = 0u64;
    let serde = timed(|| {
        for_each_line(&log_path, |line| {
            let record: AuditRecord = serde_json::from_slice(line).expect("record");
            parsed += record.seq;
        })
    });
    std::hint::black_box((count, seqs, hashed, parsed));
    println!();
    println!("| each part alone (one pass, page cache warm) | time | records/s |");
    println!("|---|---|---|");
    for (name, time) in [
        ("read + split lines", read),
        ("read + split + `seq`/`prev`/`hash` by position", fast),
        ("read + split + SHA-256 of every line", hash),
        (
            "read + split + full `serde_json` parse (`verify` does not)",
            serde,
        ),
    ] {
        println!(
            "| {name} | {:.0} ms | {:.0} |",
            time.as_secs_f64() * 1e3,
            rate(time)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
