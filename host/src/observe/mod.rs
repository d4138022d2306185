//! Watching a running job: a bounded in-memory record of its recent
//! batches fed by its events ([`store`]), the JSON API over it shaped
//! after Spark's streaming REST API ([`api`]), the server-sent event
//! stream and the HTTP routes ([`http`]), and a self-contained web page
//! ([`ui`]) with Spark Streaming's four plots; Prometheus metrics fed by
//! the same events ([`metrics`]).
//!
//! It sits above [`job`](crate::job) (it is a
//! [`StreamingListener`](crate::job::events::StreamingListener) and reads
//! [`JobControl`](crate::job::JobControl)) and below
//! the command line (`weir run --http`) and `weir serve`
//! (`/jobs/{id}/ui`, `/jobs/{id}/api/v1/...`).

pub mod api;
pub mod http;
pub mod metrics;
pub mod store;
pub mod ui;

use std::net::SocketAddr;

pub use api::Watched;
pub use http::{MetricsRender, PageContext};
pub use store::JobStore;

/// The job's HTTP server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// `--http`'s address does not parse.
    #[error("--http {addr}: not an address; write HOST:PORT (e.g. 127.0.0.1:4040), or :PORT for loopback")]
    Address {
        /// What was given.
        addr: String,
    },
    /// The address cannot be bound (in use, not local, no permission).
    #[error("--http {addr}: cannot listen there: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
