//! Backpressure: how fast a source may feed the job, estimated from how the
//! last batches went.
//!
//! The estimator is a PID controller on the processing rate, as Spark
//! Streaming's. After each batch with records, with
//! `processing_rate = records / processing_time` (records/s):
//!
//! ```text
//! error      = latest_rate - processing_rate
//! historical = scheduling_delay · processing_rate / batch_interval
//! d_error    = (error - latest_error) / seconds since the last estimate
//! rate       = max(latest_rate - P·error - I·historical - D·d_error, min_rate)
//! ```
//!
//! The first batch only sets `latest_rate = processing_rate`. The
//! historical error is the backlog (the records that arrived while the
//! batch waited) spread over one interval, so a job that fell behind takes
//! less until it has caught up. Defaults: P = 1.0, I = 0.2, D = 0,
//! minimum rate 100 records/s.
//!
//! The rate only decides where the next batch is cut (Kafka, files) or how
//! fast a receiver reads (socket, through a [`TokenBucket`] over a
//! [`SharedRate`]); what a batch holds is logged, so replay never depends
//! on it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The PID controller's constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PidConfig {
    /// Weight of the current error.
    pub proportional: f64,
    /// Weight of the accumulated error (the backlog).
    pub integral: f64,
    /// Weight of the error's change.
    pub derivative: f64,
    /// Lowest rate the estimator gives, records/s.
    pub min_rate: f64,
    /// Rate of the first batch, records/s (`None`: as much as there is).
    pub initial_rate: Option<f64>,
}

impl Default for PidConfig {
    fn default() -> Self {
        PidConfig {
            proportional: 1.0,
            integral: 0.2,
            derivative: 0.0,
            min_rate: 100.0,
            initial_rate: None,
        }
    }
}

/// Estimates the rate (records/s) a source should feed.
#[derive(Debug, Clone)]
pub struct PidRateEstimator {
    config: PidConfig,
    batch_interval_ms: f64,
    latest: Option<Latest>,
}

#[derive(Debug, Clone, Copy)]
struct Latest {
    time_ms: i64,
    rate: f64,
    error: f64,
    estimated: bool,
}

impl PidRateEstimator {
    /// For a job with batches every `batch_interval_ms`.
    pub fn new(config: PidConfig, batch_interval_ms: i64) -> Self {
        PidRateEstimator {
            config,
            batch_interval_ms: batch_interval_ms.max(1) as f64,
            latest: None,
        }
    }

    /// The current limit, records/s, if any.
    pub fn rate(&self) -> Option<f64> {
        match self.latest {
            Some(l) if l.estimated => Some(l.rate),
            _ => self.config.initial_rate,
        }
    }

    /// The rate to hold a receiver to: the estimate once there is one;
    /// before, the processing rate of the first batch measured (so a
    /// receiver is held back from the second batch on, not the third), or
    /// the initial rate.
    pub fn limit(&self) -> Option<f64> {
        match self.latest {
            Some(l) => Some(l.rate.max(self.config.min_rate)),
            None => self.config.initial_rate,
        }
    }

    /// Takes a completed batch into account: `records` from this source,
    /// finished at `time_ms`, after `processing_ms` of processing and
    /// `scheduling_delay_ms` of waiting. Returns the new rate, if this
    /// batch gave one.
    pub fn update(
        &mut self,
        time_ms: i64,
        records: u64,
        processing_ms: f64,
        scheduling_delay_ms: f64,
    ) -> Option<f64> {
        if records == 0 || processing_ms <= 0.0 {
            return None;
        }
        let processing_rate = records as f64 / processing_ms * 1000.0;
        let Some(latest) = self.latest else {
            self.latest = Some(Latest {
                time_ms,
                rate: processing_rate,
                error: 0.0,
                estimated: false,
            });
            return None;
        };
        if time_ms <= latest.time_ms {
            return None;
        }
        let c = &self.config;
        let since_s = (time_ms - latest.time_ms) as f64 / 1000.0;
        let error = latest.rate - processing_rate;
        let historical = scheduling_delay_ms * processing_rate / self.batch_interval_ms;
        let d_error = (error - latest.error) / since_s;
        let rate = (latest.rate
            - c.proportional * error
            - c.integral * historical
            - c.derivative * d_error)
            .max(c.min_rate);
        self.latest = Some(Latest {
            time_ms,
            rate,
            error,
            estimated: true,
        });
        Some(rate)
    }
}

/// The rate a receiver may read at, set by the batch clock's side of a
/// source (from its [`PidRateEstimator`]) and read by the receiver task.
/// Records/s; none: no limit.
#[derive(Debug, Default)]
pub struct SharedRate(AtomicU64);

impl SharedRate {
    /// No limit until one is set.
    pub fn unlimited() -> Self {
        SharedRate(AtomicU64::new(0))
    }

    /// Limits to `rate` records/s (`None`: no limit).
    pub fn set(&self, rate: Option<f64>) {
        let bits = match rate {
            Some(r) if r > 0.0 && r.is_finite() => r.to_bits(),
            _ => 0,
        };
        self.0.store(bits, Ordering::Relaxed);
    }

    /// The current limit, records/s.
    pub fn get(&self) -> Option<f64> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            bits => Some(f64::from_bits(bits)),
        }
    }
}

/// A token bucket over a [`SharedRate`] (Spark's receiver `RateLimiter`):
/// one token per record, refilled at the rate; it holds at most
/// [`TokenBucket::BURST`] of the rate, so an interval never gets much more
/// than rate × interval records, even after an idle spell.
#[derive(Debug)]
pub struct TokenBucket {
    rate: Arc<SharedRate>,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// The most a bucket holds: this long at the rate (at least 1 token).
    /// Long enough that a timer's granularity does not cut the rate.
    pub const BURST: Duration = Duration::from_millis(10);

    /// An empty bucket.
    pub fn new(rate: Arc<SharedRate>) -> Self {
        TokenBucket {
            rate,
            tokens: 0.0,
            refilled: Instant::now(),
        }
    }

    /// How long to wait before the next record may be taken (`None`: take
    /// it now). Looks at the clock only when the bucket is empty.
    pub fn pause(&mut self) -> Option<Duration> {
        self.pause_at(Instant::now)
    }

    fn pause_at(&mut self, now: impl FnOnce() -> Instant) -> Option<Duration> {
        let rate = self.rate.get()?;
        if self.tokens >= 1.0 {
            return None;
        }
        let now = now();
        let burst = (rate * Self::BURST.as_secs_f64()).max(1.0);
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + rate * elapsed).min(burst);
        self.refilled = now;
        (self.tokens < 1.0).then(|| Duration::from_secs_f64((1.0 - self.tokens) / rate))
    }

    /// Whether a record may be taken now without waiting.
    pub fn ready(&mut self) -> bool {
        self.pause().is_none()
    }

    /// Takes one record's token (after [`TokenBucket::pause`] said none).
    pub fn take(&mut self) {
        if self.rate.get().is_some() {
            self.tokens -= 1.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_the_rate_and_holds_little() {
        let rate = Arc::new(SharedRate::unlimited());
        let mut b = TokenBucket::new(rate.clone());
        assert_eq!(b.pause(), None, "no limit: never waits");
        rate.set(Some(1_000.0));
        let t0 = b.refilled;
        // Empty: one record is 1 ms away.
        let wait = b.pause_at(|| t0).unwrap();
        assert!((wait.as_secs_f64() - 0.001).abs() < 1e-9, "{wait:?}");
        // 5 ms later: 5 records, then a wait.
        let t1 = t0 + Duration::from_millis(5);
        let mut taken = 0;
        while b.pause_at(|| t1).is_none() {
            b.take();
            taken += 1;
        }
        assert_eq!(taken, 5);
        // A long idle spell fills the bucket only to its burst (10 ms).
        let t2 = t1 + Duration::from_secs(60);
        let mut taken = 0;
        while b.pause_at(|| t2).is_none() {
            b.take();
            taken += 1;
        }
        assert_eq!(taken, 10);
        rate.set(None);
        assert_eq!(b.pause(), None);
        assert_eq!(rate.get(), None);
    }

    #[test]
    fn the_first_batch_sets_the_rate_and_later_ones_correct_it() {
        let mut e = PidRateEstimator::new(PidConfig::default(), 1000);
        assert_eq!(e.rate(), None);
        assert_eq!(e.limit(), None);
        // 1 000 records in 500 ms: 2 000 records/s.
        assert_eq!(e.update(1_000, 1_000, 500.0, 0.0), None);
        assert_eq!(e.limit(), Some(2_000.0), "a receiver is held to it at once");
        // Again 2 000/s, no delay: the rate holds.
        let r = e.update(2_000, 1_000, 500.0, 0.0).unwrap();
        assert!((r - 2_000.0).abs() < 1e-9, "{r}");
        // 2 000 records in 2 s (1 000/s) after 1 s waiting: error 1 000,
        // backlog 1 000 · 1 000 / 1 000 → 2 000 - 1 000 - 0.2·1 000.
        let r = e.update(3_000, 2_000, 2_000.0, 1_000.0).unwrap();
        assert!((r - 800.0).abs() < 1e-9, "{r}");
        assert_eq!(e.rate(), Some(r));
    }

    #[test]
    fn the_rate_never_falls_under_the_minimum_and_empty_batches_say_nothing() {
        let mut e = PidRateEstimator::new(
            PidConfig {
                initial_rate: Some(50.0),
                ..PidConfig::default()
            },
            1000,
        );
        assert_eq!(e.rate(), Some(50.0));
        e.update(1_000, 10, 1_000.0, 0.0);
        assert_eq!(e.update(2_000, 0, 5.0, 0.0), None);
        let r = e.update(3_000, 10, 10_000.0, 50_000.0).unwrap();
        assert_eq!(r, 100.0);
        assert_eq!(e.update(3_000, 10, 10.0, 0.0), None, "time must advance");
    }
}
