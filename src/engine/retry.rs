//! The job-level retry policy: exponential backoff with jitter (the `backoff` crate's policy),
//! a maximum number of attempts, and `Retry-After` taking precedence when the API sends one.
//! Pure arithmetic, no clock and no store, so it is tested on its own.

use std::time::Duration;

use backoff::backoff::Backoff;
use backoff::ExponentialBackoff;

use crate::config::RetryConfig;

/// When and whether to try again.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    pub initial_interval: Duration,
    pub multiplier: f64,
    pub max_interval: Duration,
    pub randomization_factor: f64,
    pub max_attempts: u32,
    /// The longest `Retry-After` obeyed; a longer one waits this long instead.
    pub max_retry_after: Duration,
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Try again after this delay.
    RetryAfter(Duration),
    /// Record the failure as final.
    GiveUp,
}

impl RetryPolicy {
    /// The policy the configuration describes.
    pub fn from_config(c: &RetryConfig) -> RetryPolicy {
        RetryPolicy {
            initial_interval: c.initial_interval,
            multiplier: c.multiplier,
            max_interval: c.max_interval,
            randomization_factor: c.randomization_factor,
            max_attempts: c.max_attempts,
            max_retry_after: c.max_retry_after,
        }
    }

    /// The wait a `Retry-After` of `asked` buys: at most [`RetryPolicy::max_retry_after`].
    pub fn cap_retry_after(&self, asked: Duration) -> Duration {
        asked.min(self.max_retry_after)
    }

    /// The computed delay after failed attempt number `attempt` (1-based): the backoff crate's
    /// `attempt`-th interval, `initial · multiplier^(attempt-1)` capped at `max_interval`, with jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let mut b = ExponentialBackoff {
            current_interval: self.initial_interval,
            initial_interval: self.initial_interval,
            randomization_factor: self.randomization_factor,
            multiplier: self.multiplier,
            max_interval: self.max_interval,
            max_elapsed_time: None,
            ..ExponentialBackoff::default()
        };
        b.reset();
        let mut d = self.initial_interval;
        for _ in 0..attempt.max(1) {
            d = b.next_backoff().unwrap_or(self.max_interval);
        }
        d
    }

    /// Decides after failed attempt `attempt` of a job.
    pub fn decide(&self, attempt: u32, retryable: bool, retry_after: Option<Duration>) -> Decision {
        if !retryable || attempt >= self.max_attempts {
            return Decision::GiveUp;
        }
        Decision::RetryAfter(
            retry_after
                .map(|d| self.cap_retry_after(d))
                .unwrap_or_else(|| self.delay(attempt)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(randomization_factor: f64) -> RetryPolicy {
        RetryPolicy {
            initial_interval: Duration::from_millis(100),
            multiplier: 2.0,
            max_interval: Duration::from_millis(1000),
            randomization_factor,
            max_attempts: 5,
            max_retry_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn delays_grow_exponentially_up_to_the_cap() {
        let p = policy(0.0);
        let got: Vec<u128> = (1..=6).map(|a| p.delay(a).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_stays_within_the_randomization_band() {
        let p = policy(0.5);
        for attempt in 1..=3u32 {
            let base = 100.0 * 2f64.powi(attempt as i32 - 1);
            for _ in 0..200 {
                let d = p.delay(attempt).as_secs_f64() * 1000.0;
                assert!(
                    d >= base * 0.5 - 1.0 && d <= base * 1.5 + 1.0,
                    "attempt {attempt}: {d} outside [{}, {}]",
                    base * 0.5,
                    base * 1.5
                );
            }
        }
    }

    #[test]
    fn retry_after_overrides_the_computed_delay() {
        let p = policy(0.0);
        assert_eq!(
            p.decide(1, true, Some(Duration::from_secs(2))),
            Decision::RetryAfter(Duration::from_secs(2))
        );
        assert_eq!(
            p.decide(2, true, None),
            Decision::RetryAfter(Duration::from_millis(200))
        );
    }

    #[test]
    fn retry_after_is_capped() {
        let p = policy(0.0);
        assert_eq!(
            p.decide(1, true, Some(Duration::from_secs(99_999))),
            Decision::RetryAfter(Duration::from_secs(60))
        );
    }

    #[test]
    fn gives_up_on_final_errors_and_at_max_attempts() {
        let p = policy(0.0);
        assert_eq!(p.decide(1, false, None), Decision::GiveUp);
        assert_eq!(p.decide(5, true, None), Decision::GiveUp);
        assert!(matches!(p.decide(4, true, None), Decision::RetryAfter(_)));
    }
}
