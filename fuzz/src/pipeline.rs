//! Target `pipeline`: a pipeline file's text through the parser and every
//! check made before a job runs.
//!
//! The text (UTF-8, lossily) is parsed and shape-checked
//! ([`Pipeline::parse`], [`Pipeline::parse_unchecked`]), its paths listed,
//! command-line overrides applied; a pipeline that parses is then built —
//! plugins loaded, every operator and output checked and wired on a
//! context, nothing started — when building touches nothing outside the
//! process: generator and queue sources, print outputs, no checkpoint, no
//! state file, no scale-out. Every plugin of such a pipeline is one small
//! module ([`PLUGIN_WAT`]) kept loaded, so a build compiles nothing.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use weir::config::{OutputKind, Overrides, Pipeline, StreamArg};
use weir::host::Host;
use weir::job::SourceSpec;
use weir::wasm::Plugin;

/// The module every plugin of a built pipeline is: functions of every
/// kind under the names the example pipelines use.
pub const PLUGIN_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 1024))
  (func (export "weir_abi_version") (result i32) (i32.const 1))
  (func (export "weir_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func $f (param i32 i32 i32) (result i32) (i32.const 0))
  (export "map:split" (func $f))
  (export "map:f" (func $f))
  (export "map:format" (func $f))
  (export "reduce:sum" (func $f))
  (export "reduce:f" (func $f))
  (export "update:running_count" (func $f))
  (export "update:f" (func $f)))
"#;

struct Shared {
    host: Host,
    module: PathBuf,
    /// Kept loaded: the runtime caches a compiled module while a plugin
    /// of it lives.
    _plugin: Plugin,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let host = Host::shared().expect("the shared host starts");
        // One file for every run (written whole, then renamed into place:
        // runs may start side by side).
        let dir = std::env::temp_dir().join("weir-fuzz");
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let module = dir.join("plugin.wat");
        let tmp = dir.join(format!(".plugin.wat.{}", std::process::id()));
        std::fs::write(&tmp, PLUGIN_WAT).expect("the plugin module is written");
        std::fs::rename(&tmp, &module).expect("the plugin module is renamed");
        let plugin = host
            .wasm()
            .load_file(&module)
            .expect("the fuzz plugin loads");
        Shared {
            host,
            module,
            _plugin: plugin,
        }
    })
}

pub(crate) fn setup() {
    shared();
}

/// The fuzz target: `data` is a pipeline file.
pub fn pipeline(data: &[u8]) {
    let src = String::from_utf8_lossy(data);
    let path = Path::new("fuzz/pipeline.toml");
    let unchecked = Pipeline::parse_unchecked(path, &src);
    let parsed = Pipeline::parse(path, &src);
    if let Some(p) = &unchecked {
        let _ = p.paths();
    }
    let Ok(mut pipeline) = parsed else {
        return;
    };
    assert!(
        unchecked.is_some(),
        "a pipeline that parses parses leniently"
    );
    let mut copy = pipeline.clone();
    copy.apply(&Overrides {
        batch_interval: Some(Duration::from_millis(data.len() as u64)),
        partitions: Some(data.len() % 5),
        workers: Some(data.len() % 3),
        simulated_clock: true,
        checkpoint: Some(PathBuf::from("ck")),
        ..Overrides::default()
    });
    let _ = build(&mut pipeline);
}

/// Builds `pipeline` with every plugin the fuzz module, if building
/// touches nothing outside the process.
fn build(pipeline: &mut Pipeline) -> Option<Result<(), weir::config::PipelineError>> {
    if !builds_in_process(pipeline) {
        return None;
    }
    let shared = shared();
    for def in pipeline.plugins.values_mut() {
        def.path = shared.module.clone();
    }
    Some(pipeline.build_on_host(shared.host.clone()).map(drop))
}

/// True when building `p` reads and writes no file and reaches no network.
fn builds_in_process(p: &Pipeline) -> bool {
    let sources = p
        .sources
        .iter()
        .all(|s| matches!(s.spec, SourceSpec::Generator { .. } | SourceSpec::Queue(_)));
    let streams = p.streams.iter().all(|s| {
        s.args
            .values()
            .all(|a| !matches!(a, StreamArg::StateFile { .. }))
    });
    let outputs = p
        .outputs
        .iter()
        .all(|o| matches!(o.kind, OutputKind::Print { .. }));
    sources
        && streams
        && outputs
        && p.config.checkpoint.is_none()
        && p.config.scale_out.is_none()
        && p.config.stats_file.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_seed_builds() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus/pipeline/builds.toml");
        let src = std::fs::read_to_string(path).unwrap();
        let mut p = Pipeline::parse(Path::new("p.toml"), &src).unwrap();
        build(&mut p).expect("built in process").unwrap();
    }
}
