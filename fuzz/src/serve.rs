//! Target `serve_api`: a request body as `weir serve` reads it (`serde_json`
//! into the API's types, as the server's `json_body` does), then every
//! check the server makes of a submission or an upgrade before it writes
//! a byte: path and Kafka confinement, file and module names, base64, the
//! pipeline's own checks. The client's reading of the server's answers is
//! fuzzed on the same bytes.

use std::path::Path;

use base64::Engine;
use weir::config::Pipeline;
use weir::serve::api::{
    ErrorBody, JobInfo, JobList, RollbackRequest, SubmitRequest, SwapInfo, UpgradeRequest,
};
use weir::serve::config::KafkaPolicy;
use weir::serve::confine::{self, PIPELINE_FILE};

/// The fuzz target: `data` is a request (or response) body.
pub fn serve_api(data: &[u8]) {
    if let Ok(req) = serde_json::from_slice::<SubmitRequest>(data) {
        submit_checks(&req);
    }
    if let Ok(req) = serde_json::from_slice::<UpgradeRequest>(data) {
        let _ = base64::engine::general_purpose::STANDARD.decode(&req.module);
    }
    let _ = serde_json::from_slice::<RollbackRequest>(data);
    let _ = serde_json::from_slice::<JobInfo>(data);
    let _ = serde_json::from_slice::<JobList>(data);
    let _ = serde_json::from_slice::<SwapInfo>(data);
    let _ = serde_json::from_slice::<ErrorBody>(data);
}

/// What `Registry::submit` checks before it writes anything, in its order.
fn submit_checks(req: &SubmitRequest) {
    let policy = KafkaPolicy {
        brokers: vec!["localhost:9092".into()],
        topic_prefixes: vec!["t.".into()],
        group_prefixes: vec!["t.".into()],
    };
    let problems = confine::check_pipeline(&req.pipeline, &policy);
    let b64 = base64::engine::general_purpose::STANDARD;
    for (name, data) in &req.modules {
        if confine::module_name(name).is_ok() {
            let _ = b64.decode(data);
        }
    }
    for (name, data) in &req.files {
        if confine::file_name(name).is_ok() && !req.modules.contains_key(name) {
            let _ = b64.decode(data);
        }
    }
    let path = Path::new("data/t/jobs/job-1").join(PIPELINE_FILE);
    if let Ok(pipeline) = Pipeline::parse(&path, &req.pipeline) {
        // A pipeline confinement passed names no path outside its
        // directory, whatever the parser made of it.
        if problems.is_empty() {
            for (what, p) in pipeline.paths() {
                assert!(
                    confine::relative_inside(p).is_ok(),
                    "{what} = {p:?} passed the confinement check"
                );
            }
        }
    }
}
