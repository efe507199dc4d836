//! The one place retries are decided. Adapters classify their errors
//! ([`AdapterError::class`]); this module turns a class, an attempt number
//! and a jitter draw into a decision, as data:
//!
//! - `Transient` → retry after exponential backoff with full jitter, never
//!   sooner than the platform's `retry_after`;
//! - `Stale` (a lost optimistic-concurrency race) → re-observe, then retry
//!   after a jittered backoff, so racing writers don't collide again;
//! - `Permanent` → give up at once;
//! - out of attempts → give up.
//!
//! Jitter is passed in so decisions are testable; [`jitter`] draws one
//! cheaply. [`retry`] runs an async operation under a policy.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deployctl_adapter::{AdapterError, ErrorClass};

/// How hard to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. 0 behaves as 1: an operation is
    /// always tried once.
    pub max_attempts: u32,
    /// The backoff ceiling after the first failure; it doubles per attempt.
    pub base_delay: Duration,
    /// The highest backoff ceiling. A platform's `retry_after` may exceed it:
    /// the cap bounds our own guesses, not the platform's instructions.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 6 attempts over at most ~6 s of backoff (200 ms doubling, capped at
    /// 10 s): rides out a throttling burst or a brief 5xx without holding a
    /// stage for long when the platform is really down.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait, then make the same call again.
    RetryAfter(Duration),
    /// Wait, re-observe the target (our view is stale), then retry.
    ReobserveThenRetry(Duration),
    /// Stop: the error is permanent or the attempts are spent.
    GiveUp,
}

impl RetryPolicy {
    /// Decides after attempt number `attempt` (1 for the first) failed with
    /// `error`. `jitter` is a draw from `[0, 1)` (see [`jitter`]); values
    /// outside are clamped.
    pub fn decide(&self, attempt: u32, error: &AdapterError, jitter: f64) -> RetryDecision {
        let class = error.class();
        if class == ErrorClass::Permanent || attempt >= self.max_attempts.max(1) {
            return RetryDecision::GiveUp;
        }
        let delay = self.backoff(attempt, jitter);
        match class {
            ErrorClass::Transient => RetryDecision::RetryAfter(
                error.retry_after().map_or(delay, |asked| asked.max(delay)),
            ),
            ErrorClass::Stale => RetryDecision::ReobserveThenRetry(delay),
            ErrorClass::Permanent => RetryDecision::GiveUp,
        }
    }

    /// The most we wait after attempt `attempt` failed:
    /// `base_delay · 2^(attempt-1)`, capped at `max_delay`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.base_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay)
    }

    /// Full jitter: a uniform share of the ceiling. Spreading retries over
    /// the whole window is what stops many clients throttled together from
    /// retrying together.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_nanos()).unwrap_or(u64::MAX);
        // In whole nanoseconds, because float rounding could otherwise
        // reach the ceiling itself; `as` saturates.
        let share = (ceiling as f64 * unit(jitter)) as u64;
        Duration::from_nanos(share.min(ceiling.saturating_sub(1)))
    }
}

/// `jitter` forced into `[0, 1)`; NaN counts as 0.
fn unit(jitter: f64) -> f64 {
    if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, 1.0 - f64::EPSILON)
    }
}

/// A uniform draw from `[0, 1)` for [`RetryPolicy::decide`].
///
/// xorshift64 over one process-wide state seeded from the clock: retries
/// need spread, not unpredictability, so a statistical generator is enough
/// and the crate needs no `rand`.
pub fn jitter() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut current = STATE.load(Ordering::Relaxed);
    loop {
        let from = if current == 0 { clock_seed() } else { current };
        let next = xorshift(from);
        match STATE.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            // The top 53 bits fill an f64 mantissa exactly.
            Ok(_) => return (next >> 11) as f64 / (1u64 << 53) as f64,
            Err(actual) => current = actual,
        }
    }
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// A non-zero seed (xorshift stays at zero forever) from the wall clock,
/// mixed with splitmix64 so close instants give unrelated seeds.
fn clock_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64);
    let mut z = nanos.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) | 1
}

/// Which attempt an operation is on, passed to it by [`retry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first.
    pub number: u32,
    /// The previous attempt lost a concurrency race: re-observe the target
    /// before acting.
    pub reobserve: bool,
}

/// An operation that [`retry`] stopped retrying.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("gave up after {attempts} attempt(s): {error}")]
pub struct GaveUp {
    /// The last attempt's error.
    pub error: AdapterError,
    pub attempts: u32,
}

/// Runs `op` until it succeeds or `policy` gives up, sleeping with
/// `tokio::time` between attempts. Dropping the future stops retrying.
pub async fn retry<T, F, Fut>(policy: &RetryPolicy, op: F) -> Result<T, GaveUp>
where
    F: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Result<T, AdapterError>>,
{
    retry_with_jitter(policy, jitter, op).await
}

/// [`retry`] with the jitter source given, for deterministic tests.
pub async fn retry_with_jitter<T, F, Fut>(
    policy: &RetryPolicy,
    mut jitter: impl FnMut() -> f64,
    mut op: F,
) -> Result<T, GaveUp>
where
    F: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Result<T, AdapterError>>,
{
    let mut attempt = Attempt {
        number: 1,
        reobserve: false,
    };
    loop {
        let error = match op(attempt).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let (delay, reobserve) = match policy.decide(attempt.number, &error, jitter()) {
            RetryDecision::RetryAfter(delay) => (delay, false),
            RetryDecision::ReobserveThenRetry(delay) => (delay, true),
            RetryDecision::GiveUp => {
                return Err(GaveUp {
                    error,
                    attempts: attempt.number,
                });
            }
        };
        tokio::time::sleep(delay).await;
        attempt = Attempt {
            number: attempt.number + 1,
            reobserve,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::time::Instant;

    fn unavailable() -> AdapterError {
        AdapterError::Unavailable {
            message: "503".into(),
            request_id: None,
        }
    }

    fn throttled(retry_after: Option<Duration>) -> AdapterError {
        AdapterError::Throttled {
            message: "slow down".into(),
            request_id: None,
            retry_after,
        }
    }

    fn conflict() -> AdapterError {
        AdapterError::Conflict {
            message: "stale RevisionId".into(),
            request_id: None,
        }
    }

    fn rejected() -> AdapterError {
        AdapterError::Rejected {
            message: "invalid weight".into(),
            request_id: None,
        }
    }

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn transient_errors_back_off() {
        let policy = RetryPolicy::default();
        for error in [
            unavailable(),
            throttled(None),
            AdapterError::Timeout {
                message: "reset".into(),
            },
        ] {
            assert_eq!(
                policy.decide(1, &error, 0.5),
                RetryDecision::RetryAfter(ms(100))
            );
        }
    }

    #[test]
    fn conflicts_reobserve_then_retry() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.decide(2, &conflict(), 0.5),
            RetryDecision::ReobserveThenRetry(ms(200))
        );
    }

    #[test]
    fn permanent_errors_give_up_at_once() {
        let policy = RetryPolicy::default();
        for error in [
            rejected(),
            AdapterError::NotFound { what: "v42".into() },
            AdapterError::Unsupported {
                what: "halt".into(),
            },
        ] {
            assert_eq!(policy.decide(1, &error, 0.5), RetryDecision::GiveUp);
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let ceilings: Vec<_> = (1..=9).map(|attempt| policy.ceiling(attempt)).collect();
        assert_eq!(
            ceilings,
            [
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                ms(6400),
                ms(10_000),
                ms(10_000),
                ms(10_000)
            ]
        );
        // Huge attempt numbers neither overflow nor exceed the cap.
        assert_eq!(policy.ceiling(u32::MAX), ms(10_000));
        let patient = RetryPolicy {
            max_attempts: 100,
            ..policy
        };
        assert_eq!(
            patient.decide(50, &unavailable(), 0.5),
            RetryDecision::RetryAfter(ms(5_000))
        );
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(3, 0.0), Duration::ZERO);
        assert_eq!(policy.backoff(3, 0.25), ms(200));
        assert!(policy.backoff(3, 0.999_999) < ms(800));
        // Out-of-range draws are clamped, never panic.
        assert_eq!(policy.backoff(3, -1.0), Duration::ZERO);
        assert_eq!(policy.backoff(3, f64::NAN), Duration::ZERO);
        assert!(policy.backoff(3, 7.0) < ms(800));
        assert!(policy.backoff(3, f64::INFINITY) < ms(800));
    }

    #[test]
    fn retry_after_is_never_cut_short() {
        let policy = RetryPolicy::default();
        // Longer than our backoff, and even than our cap: the platform wins.
        assert_eq!(
            policy.decide(1, &throttled(Some(Duration::from_secs(30))), 0.5),
            RetryDecision::RetryAfter(Duration::from_secs(30))
        );
        // Shorter than our backoff: ours wins.
        assert_eq!(
            policy.decide(4, &throttled(Some(ms(10))), 0.5),
            RetryDecision::RetryAfter(ms(800))
        );
    }

    #[test]
    fn spent_attempts_give_up() {
        let policy = RetryPolicy::default();
        assert!(matches!(
            policy.decide(5, &unavailable(), 0.5),
            RetryDecision::RetryAfter(_)
        ));
        assert_eq!(policy.decide(6, &unavailable(), 0.5), RetryDecision::GiveUp);
        assert_eq!(policy.decide(6, &conflict(), 0.5), RetryDecision::GiveUp);
        let once = RetryPolicy {
            max_attempts: 0,
            ..policy
        };
        assert_eq!(once.decide(1, &unavailable(), 0.5), RetryDecision::GiveUp);
    }

    #[test]
    fn jitter_draws_spread_over_the_unit_interval() {
        let draws: Vec<f64> = (0..10_000).map(|_| jitter()).collect();
        assert!(draws.iter().all(|draw| (0.0..1.0).contains(draw)));
        let low = draws.iter().filter(|draw| **draw < 0.5).count();
        assert!((4_000..6_000).contains(&low), "{low} of 10000 below 0.5");
        assert!(draws.windows(2).all(|pair| pair[0] != pair[1]));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_sleeps_between_attempts_until_success() {
        let seen = Mutex::new(Vec::new());
        let started = Instant::now();
        let result = retry_with_jitter(
            &RetryPolicy::default(),
            || 0.5,
            |attempt| {
                seen.lock().unwrap().push(attempt);
                async move {
                    match attempt.number {
                        1 => Err(unavailable()),
                        2 => Err(conflict()),
                        _ => Ok("applied"),
                    }
                }
            },
        )
        .await;
        assert_eq!(result, Ok("applied"));
        assert_eq!(started.elapsed(), ms(100 + 200));
        let seen = seen.into_inner().unwrap();
        assert_eq!(
            seen.iter().map(|a| a.reobserve).collect::<Vec<_>>(),
            [false, false, true]
        );
        assert_eq!(seen.iter().map(|a| a.number).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_returns_the_last_error_and_the_attempts() {
        let started = Instant::now();
        let failure = retry_with_jitter(
            &RetryPolicy::default(),
            || 0.5,
            |attempt| async move {
                Err::<(), _>(AdapterError::Timeout {
                    message: format!("attempt {}", attempt.number),
                })
            },
        )
        .await
        .unwrap_err();
        assert_eq!(failure.attempts, 6);
        assert_eq!(
            failure.error,
            AdapterError::Timeout {
                message: "attempt 6".into()
            }
        );
        assert_eq!(started.elapsed(), ms(100 + 200 + 400 + 800 + 1600));
        assert!(
            failure
                .to_string()
                .starts_with("gave up after 6 attempt(s)")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_at_a_permanent_error_and_honours_retry_after() {
        let started = Instant::now();
        let failure = retry(&RetryPolicy::default(), |_| async {
            Err::<(), _>(rejected())
        })
        .await
        .unwrap_err();
        assert_eq!(failure.attempts, 1);
        assert_eq!(started.elapsed(), Duration::ZERO);

        let result = retry(&RetryPolicy::default(), |attempt| async move {
            if attempt.number == 1 {
                Err(throttled(Some(Duration::from_secs(3))))
            } else {
                Ok(attempt.number)
            }
        })
        .await;
        assert_eq!(result, Ok(2));
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }
}
