//! The process-wide wasm runtime: the shared engine (see [`super::engine`])
//! and a cache of compiled modules keyed by content hash.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

use super::engine::{RuntimeConfig, SharedEngine};
use super::error::LoadError;
use super::plugin::{Compiled, Plugin};

/// The process-wide wasm runtime. Cheap to clone; clones share the engine
/// and the module cache.
#[derive(Clone)]
pub struct Runtime {
    engine: SharedEngine,
    cache: Arc<Mutex<HashMap<[u8; 32], Weak<Compiled>>>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds the engine. Fails only if wasmtime rejects the configuration
    /// (for example when the host cannot reserve the pool's address space).
    pub fn new(config: &RuntimeConfig) -> Result<Self, wasmtime::Error> {
        Ok(Runtime {
            engine: SharedEngine::new(config)?,
            cache: Arc::default(),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        self.engine.engine()
    }

    /// Loads and validates a plugin from a `.wasm` (or `.wat`) file; the
    /// plugin is named after the file stem.
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<Plugin, LoadError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let name = path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        self.load_bytes(&name, &bytes)
    }

    /// Loads and validates a plugin from module bytes (binary or WAT text).
    /// Modules are compiled once per content hash and shared.
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
        let name: Arc<str> = name.into();
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        let cached = self
            .cache
            .lock()
            .expect("module cache poisoned")
            .get(&hash)
            .and_then(Weak::upgrade);
        let compiled = match cached {
            Some(c) => c,
            None => {
                let module = Module::new(self.engine.engine(), bytes).map_err(|source| {
                    LoadError::Compile {
                        plugin: name.clone(),
                        source,
                    }
                })?;
                let compiled = Arc::new(Compiled::new(&self.engine, module, hash, bytes, &name)?);
                let mut cache = self.cache.lock().expect("module cache poisoned");
                cache.retain(|_, w| w.strong_count() > 0);
                cache.insert(hash, Arc::downgrade(&compiled));
                compiled
            }
        };
        Ok(Plugin::new(name, compiled))
    }
}
