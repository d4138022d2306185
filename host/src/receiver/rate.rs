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
//! The rate only decides where the next batch is cut; the cut is logged,
//! so replay never depends on it.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_batch_sets_the_rate_and_later_ones_correct_it() {
        let mut e = PidRateEstimator::new(PidConfig::default(), 1000);
        assert_eq!(e.rate(), None);
        // 1 000 records in 500 ms: 2 000 records/s.
        assert_eq!(e.update(1_000, 1_000, 500.0, 0.0), None);
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
