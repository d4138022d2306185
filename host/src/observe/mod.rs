//! Watching running jobs from outside: Prometheus metrics fed by the
//! listener events ([`metrics`]).

pub mod metrics;
