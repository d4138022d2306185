//! A validated plugin module and how it is called: a fresh instance per
//! call, the input copied in once, every guest pointer checked before use.

use std::sync::Arc;

use wasmtime::{
    Engine, Extern, ExternType, FuncType, Instance, InstancePre, Module, ModuleExport, Store, Trap,
    ValType,
};
use weir_abi::{
    read_reduced, write_update_entries, CallHeader, FunctionKind, GroupsWriter, RecordBatch,
    RecordIter, UpdateEntry, UpdateOutput, ABI_VERSION, EXPORT_ABI_VERSION, EXPORT_ALLOC,
    EXPORT_MEMORY, HEADER_LEN, RESULT_AREA_LEN,
};

use super::engine::{Limits, SharedEngine, EPOCH_TICK};
use super::error::{CallError, CallErrorKind, CallSite, LoadError, Problem};
use super::imports::GuestFailure;
use super::store::{CallState, MemoryLimiter};
use super::wasi::{GuestEnv, GuestExit};

/// One weir function a module exports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FunctionInfo {
    /// Its kind.
    pub kind: FunctionKind,
    /// Its name (the export without the kind prefix).
    pub name: String,
}

/// A compiled, validated module, shared by every plugin loaded from the
/// same bytes.
pub(crate) struct Compiled {
    engine: SharedEngine,
    pre: InstancePre<CallState>,
    hash: [u8; 32],
    /// The module bytes (kept so a checkpoint can store the module).
    bytes: Arc<[u8]>,
    functions: Vec<FunctionInfo>,
    /// Exports resolved once at load, so a call looks nothing up by name.
    exports: Exports,
    /// Version of the state encoding (`weir_state_version`, default 0).
    state_version: i32,
}

/// Indices of the exports a call uses.
struct Exports {
    memory: ModuleExport,
    alloc: ModuleExport,
    /// A WASI reactor's `_initialize` (or else a command's `_start`), run on
    /// every fresh instance first.
    initialize: Option<ModuleExport>,
    /// One per entry of `functions`, in the same order.
    functions: Vec<ModuleExport>,
}

/// A WASI reactor's initialisation export (constructors, a language
/// runtime's start-up), `() -> ()`.
const EXPORT_INITIALIZE: &str = "_initialize";
/// A WASI command's entry point, run instead when there is no
/// `_initialize` (Go's runtime needs it before any export works).
const EXPORT_START: &str = "_start";

impl Exports {
    fn resolve(module: &Module, export_names: &[&str]) -> Option<Self> {
        Some(Exports {
            memory: module.get_export_index(EXPORT_MEMORY)?,
            alloc: module.get_export_index(EXPORT_ALLOC)?,
            initialize: module
                .get_export_index(EXPORT_INITIALIZE)
                .or_else(|| module.get_export_index(EXPORT_START)),
            functions: export_names
                .iter()
                .map(|name| module.get_export_index(name))
                .collect::<Option<_>>()?,
        })
    }
}

fn func_sig(ty: &FuncType) -> (Vec<ValType>, Vec<ValType>) {
    (ty.params().collect(), ty.results().collect())
}

fn is_i32s(types: &[ValType], n: usize) -> bool {
    types.len() == n && types.iter().all(|t| matches!(t, ValType::I32))
}

impl Compiled {
    pub(crate) fn new(
        engine: &SharedEngine,
        module: Module,
        hash: [u8; 32],
        bytes: &[u8],
        name: &Arc<str>,
    ) -> Result<Self, LoadError> {
        let mut problems = Vec::new();

        for import in module.imports() {
            if let Err(problem) = super::imports::check(&import) {
                problems.push(problem);
            }
        }

        let mut have_memory = false;
        let mut have_version = false;
        let mut have_alloc = false;
        let mut functions = Vec::new();
        for export in module.exports() {
            let name = export.name();
            let ty = export.ty();
            if name == EXPORT_MEMORY {
                have_memory = true;
                if !matches!(ty, ExternType::Memory(ref m) if !m.is_64() && !m.is_shared()) {
                    problems.push(Problem::BadExport {
                        export: name.into(),
                        expected: "a 32-bit, unshared linear memory",
                    });
                }
            } else if name == EXPORT_ABI_VERSION {
                have_version = true;
                if !matches!(ty, ExternType::Func(ref f) if { let (p, r) = func_sig(f); p.is_empty() && is_i32s(&r, 1) })
                {
                    problems.push(Problem::BadExport {
                        export: name.into(),
                        expected: "a function () -> i32",
                    });
                }
            } else if name == EXPORT_ALLOC {
                have_alloc = true;
                if !matches!(ty, ExternType::Func(ref f) if { let (p, r) = func_sig(f); is_i32s(&p, 1) && is_i32s(&r, 1) })
                {
                    problems.push(Problem::BadExport {
                        export: name.into(),
                        expected: "a function (i32) -> i32",
                    });
                }
            } else if name == EXPORT_INITIALIZE || name == EXPORT_START {
                if !matches!(ty, ExternType::Func(ref f) if { let (p, r) = func_sig(f); p.is_empty() && r.is_empty() })
                {
                    problems.push(Problem::BadExport {
                        export: name.into(),
                        expected: "a function () -> () (a WASI reactor's or command's start)",
                    });
                }
            } else if let Some((kind, fname)) = FunctionKind::parse_export(name) {
                if matches!(ty, ExternType::Func(ref f) if { let (p, r) = func_sig(f); is_i32s(&p, 3) && is_i32s(&r, 1) })
                {
                    if let Some((_, other)) = functions
                        .iter()
                        .find(|(f, _): &&(FunctionInfo, &str)| f.kind == kind && f.name == fname)
                    {
                        problems.push(Problem::DuplicateFunction {
                            first: (*other).into(),
                            second: name.into(),
                        });
                    }
                    functions.push((
                        FunctionInfo {
                            kind,
                            name: fname.into(),
                        },
                        name,
                    ));
                } else {
                    problems.push(Problem::BadExport {
                        export: name.into(),
                        expected:
                            "a function (input_ptr: i32, input_len: i32, result_ptr: i32) -> i32",
                    });
                }
            }
        }
        if !have_memory {
            problems.push(Problem::MissingExport {
                export: EXPORT_MEMORY,
                hint: "the guest's linear memory",
            });
        }
        if !have_version {
            problems.push(Problem::MissingExport {
                export: EXPORT_ABI_VERSION,
                hint: "() -> i32 returning the ABI version, 1",
            });
        }
        if !have_alloc {
            problems.push(Problem::MissingExport {
                export: EXPORT_ALLOC,
                hint: "(size: i32) -> i32 giving the host memory for the input",
            });
        }
        if functions.is_empty() {
            problems.push(Problem::NoFunctions);
        }
        functions.sort();

        // A module whose imports are all provided can be instantiated, so
        // its ABI version is checked even when other problems were found:
        // every problem is listed at once.
        let imports_ok = !problems
            .iter()
            .any(|p| matches!(p, Problem::UnsupportedImport { .. }));
        let version_callable = have_version
            && !problems.iter().any(
                |p| matches!(p, Problem::BadExport { export, .. } if export == EXPORT_ABI_VERSION),
            );
        let mut state_version = 0;
        let pre =
            if imports_ok {
                Some(engine.linker().instantiate_pre(&module).map_err(|source| {
                    LoadError::Compile {
                        plugin: name.clone(),
                        source,
                    }
                })?)
            } else {
                None
            };
        if let (Some(pre), true) = (&pre, version_callable) {
            match check_abi_version(engine.engine(), pre, name) {
                Ok(v) => state_version = v,
                Err(problem) => problems.push(problem),
            }
        }

        match pre {
            Some(pre) if problems.is_empty() => Ok(Compiled {
                engine: engine.clone(),
                pre,
                hash,
                bytes: Arc::from(bytes),
                exports: Exports::resolve(
                    &module,
                    &functions.iter().map(|(_, e)| *e).collect::<Vec<_>>(),
                )
                .expect("every export was found above"),
                functions: functions.into_iter().map(|(f, _)| f).collect(),
                state_version,
            }),
            _ => Err(LoadError::NotAPlugin {
                plugin: name.clone(),
                problems,
            }),
        }
    }

    fn store(&self, plugin: &Arc<str>, inv: &Invocation) -> Store<CallState> {
        let env = GuestEnv::new(
            inv.job.as_deref().unwrap_or(""),
            inv.operator.as_deref().unwrap_or(""),
            inv.header.batch_time_ms,
            inv.header.partition,
            inv.sequence,
        );
        new_store(self.engine.engine(), plugin, &inv.limits, env)
    }
}

/// Instantiates the module once and calls `weir_abi_version`.
fn check_abi_version(
    engine: &Engine,
    pre: &InstancePre<CallState>,
    name: &Arc<str>,
) -> Result<i32, Problem> {
    let limits = Limits {
        fuel: 10_000_000,
        memory_bytes: 64 << 20,
        ..Limits::default()
    };
    let mut store = new_store(engine, name, &limits, GuestEnv::new("", "", 0, 0, 0));
    let version = instantiate_and_init(pre, &mut store)
        .and_then(|i| i.get_typed_func::<(), i32>(&mut store, EXPORT_ABI_VERSION))
        .and_then(|f| f.call(&mut store, ()))
        .map_err(|e| Problem::AbiVersionFailed {
            reason: format!("{e:#}"),
        })?;
    if version != ABI_VERSION {
        return Err(Problem::WrongAbiVersion { found: version });
    }
    // The optional state version, from the same instance's module.
    let mut store = new_store(engine, name, &limits, GuestEnv::new("", "", 0, 0, 0));
    let state_version = match instantiate_and_init(pre, &mut store)
        .and_then(|i| i.get_typed_func::<(), i32>(&mut store, weir_abi::EXPORT_STATE_VERSION))
    {
        Ok(f) => f
            .call(&mut store, ())
            .map_err(|e| Problem::AbiVersionFailed {
                reason: format!("weir_state_version: {e:#}"),
            })?,
        Err(_) => 0,
    };
    Ok(state_version)
}

/// Instantiates the module and, for a WASI reactor, runs `_initialize`.
fn instantiate_and_init(
    pre: &InstancePre<CallState>,
    store: &mut Store<CallState>,
) -> wasmtime::Result<Instance> {
    let instance = pre.instantiate(&mut *store)?;
    let init = instance
        .get_func(&mut *store, EXPORT_INITIALIZE)
        .or_else(|| instance.get_func(&mut *store, EXPORT_START));
    if let Some(init) = init {
        init.typed::<(), ()>(&*store)?
            .call(&mut *store, ())
            .or_else(exited_cleanly)?;
    }
    Ok(instance)
}

fn new_store(
    engine: &Engine,
    plugin: &Arc<str>,
    limits: &Limits,
    env: GuestEnv,
) -> Store<CallState> {
    let state = CallState {
        limiter: MemoryLimiter {
            limit: limits.memory_bytes,
            hit: None,
        },
        log_left: limits.log_bytes,
        log_truncated: false,
        plugin: plugin.clone(),
        env,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    store
        .set_fuel(limits.fuel)
        .expect("fuel is enabled on the engine");
    let ticks = limits.deadline.as_millis() / EPOCH_TICK.as_millis();
    store.set_epoch_deadline(ticks.max(1) as u64);
    store
}

/// Who is calling and with what limits: the engine fills in job, operator,
/// batch time and partition so errors can name them.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// Batch time and partition, handed to the guest.
    pub header: CallHeader,
    /// The job, for error messages.
    pub job: Option<Arc<str>>,
    /// The operator, for error messages.
    pub operator: Option<Arc<str>>,
    /// Limits of this call.
    pub limits: Limits,
    /// Where the call's cost is added up (calls, fuel), when someone wants
    /// it: the executor keeps one per operator and batch.
    pub meter: Option<Arc<CallMeter>>,
    /// Which call of this operator on this partition in this batch (an
    /// operator that feeds a partition in runs makes several): the first
    /// is 0. Part of the seed of the guest's virtual randomness, so each
    /// run draws its own stream, the same at every replay.
    pub sequence: u32,
}

/// Adds up what calls cost: how many, how much fuel, how many failed.
/// Shared by the calls of one operator in one batch (they run on several
/// threads at once).
#[derive(Debug, Default)]
pub struct CallMeter {
    calls: std::sync::atomic::AtomicU64,
    fuel: std::sync::atomic::AtomicU64,
    failures: std::sync::atomic::AtomicU64,
    nanos: std::sync::atomic::AtomicU64,
}

impl CallMeter {
    fn record(&self, fuel: u64, failed: bool, nanos: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.calls.fetch_add(1, Relaxed);
        self.fuel.fetch_add(fuel, Relaxed);
        self.nanos.fetch_add(nanos, Relaxed);
        if failed {
            self.failures.fetch_add(1, Relaxed);
        }
    }

    /// Calls made.
    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Fuel the calls used in all.
    pub fn fuel(&self) -> u64 {
        self.fuel.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Calls that failed.
    pub fn failures(&self) -> u64 {
        self.failures.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Time the calls took in all (summed over threads), from
    /// instantiation to the function's return: what the host does with
    /// the output afterwards is not counted.
    pub fn nanos(&self) -> u64 {
        self.nanos.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A loaded plugin: a name plus a shared compiled module.
#[derive(Clone)]
pub struct Plugin {
    name: Arc<str>,
    compiled: Arc<Compiled>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("hash", &self.hash_hex())
            .finish()
    }
}

impl Plugin {
    pub(crate) fn new(name: Arc<str>, compiled: Arc<Compiled>) -> Self {
        Plugin { name, compiled }
    }

    /// The plugin's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// SHA-256 of the module bytes.
    pub fn hash(&self) -> [u8; 32] {
        self.compiled.hash
    }

    /// SHA-256 of the module bytes, as hex.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.compiled.hash)
    }

    /// Size of the module in bytes.
    pub fn size(&self) -> usize {
        self.compiled.bytes.len()
    }

    /// The module bytes.
    pub fn bytes(&self) -> &Arc<[u8]> {
        &self.compiled.bytes
    }

    /// The version of the state encoding its update functions use
    /// (`weir_state_version`, 0 when not exported).
    pub fn state_version(&self) -> i32 {
        self.compiled.state_version
    }

    /// The ABI version (checked at load, so always [`ABI_VERSION`]).
    pub fn abi_version(&self) -> i32 {
        ABI_VERSION
    }

    /// The weir functions the module exports, sorted by kind and name.
    pub fn functions(&self) -> &[FunctionInfo] {
        &self.compiled.functions
    }

    /// The kinds under which `name` is exported.
    pub fn kinds_of(&self, name: &str) -> Vec<FunctionKind> {
        self.functions()
            .iter()
            .filter(|f| f.name == name)
            .map(|f| f.kind)
            .collect()
    }

    /// The position of `kind:name` among the module's functions.
    fn index_of(&self, kind: FunctionKind, name: &str) -> Option<usize> {
        self.compiled
            .functions
            .iter()
            .position(|f| f.kind == kind && f.name == name)
    }

    /// True if the module exports `kind:name`.
    pub fn has_function(&self, kind: FunctionKind, name: &str) -> bool {
        self.functions()
            .iter()
            .any(|f| f.kind == kind && f.name == name)
    }

    /// Runs a map function over a whole partition.
    pub fn map(
        &self,
        function: &str,
        inv: &Invocation,
        input: &RecordBatch,
    ) -> Result<RecordBatch, CallError> {
        let input = input.as_bytes();
        self.call_with(
            FunctionKind::Map,
            function,
            inv,
            input.len(),
            |buf| buf.copy_from_slice(input),
            // Checked in guest memory, then copied out once.
            |out| RecordBatch::from_slice(out).map_err(CallErrorKind::from),
        )
    }

    /// Runs a map function over `records` records whose framed bytes
    /// (`bytes`, the records after a batch's count) are written straight
    /// into guest memory; `read` gets the output records, checked, where
    /// they lie in guest memory: nothing of the output is copied unless
    /// `read` copies it.
    pub fn map_run<R>(
        &self,
        function: &str,
        inv: &Invocation,
        records: usize,
        bytes: &[u8],
        read: impl FnOnce(RecordIter<'_>) -> R,
    ) -> Result<R, CallError> {
        // A record batch never holds more (its count is a `u32`).
        let count = u32::try_from(records).expect("fewer than 2^32 records");
        self.call_with(
            FunctionKind::Map,
            function,
            inv,
            4 + bytes.len(),
            |buf| {
                buf[..4].copy_from_slice(&count.to_le_bytes());
                buf[4..].copy_from_slice(bytes);
            },
            |out| Ok(read(RecordBatch::view(out)?)),
        )
    }

    /// Runs a reduce function over groups; returns one value per group.
    pub fn reduce(
        &self,
        function: &str,
        inv: &Invocation,
        groups: GroupsWriter,
    ) -> Result<Vec<Vec<u8>>, CallError> {
        let n = groups.len();
        let body = groups.into_bytes();
        self.reduce_with(function, inv, n, body.len(), |buf| {
            buf.copy_from_slice(&body)
        })
    }

    /// Runs a reduce function over a body of `groups` groups and `body_len`
    /// bytes that `write` writes straight into guest memory (framed as a
    /// [`GroupsWriter`] would; see [`weir_abi::GroupsBody`]); returns one
    /// value per group.
    pub fn reduce_with(
        &self,
        function: &str,
        inv: &Invocation,
        groups: usize,
        body_len: usize,
        write: impl FnOnce(&mut [u8]),
    ) -> Result<Vec<Vec<u8>>, CallError> {
        self.call_with(
            FunctionKind::Reduce,
            function,
            inv,
            body_len,
            write,
            |out| {
                let values = read_reduced(out, groups)?;
                Ok(values.into_iter().map(<[u8]>::to_vec).collect())
            },
        )
    }

    /// Runs an update function over keyed entries.
    pub fn update(
        &self,
        function: &str,
        inv: &Invocation,
        entries: &[UpdateEntry<'_>],
    ) -> Result<UpdateOutput, CallError> {
        let body = write_update_entries(entries);
        self.call_with(
            FunctionKind::Update,
            function,
            inv,
            body.len(),
            |buf| buf.copy_from_slice(&body),
            |out| UpdateOutput::decode(out, entries.len()).map_err(CallErrorKind::from),
        )
    }

    fn error(
        &self,
        kind: FunctionKind,
        function: &str,
        inv: &Invocation,
        err: CallErrorKind,
    ) -> CallError {
        CallError {
            site: CallSite {
                plugin: self.name.clone(),
                kind,
                function: function.into(),
                job: inv.job.clone(),
                operator: inv.operator.clone(),
                batch_time_ms: inv.header.batch_time_ms,
                partition: inv.header.partition,
            },
            kind: err,
        }
    }

    /// Calls `kind:function` with `body` after the call header, in a fresh
    /// instance, and returns the raw output bytes of a successful call.
    pub fn call(
        &self,
        kind: FunctionKind,
        function: &str,
        inv: &Invocation,
        body: &[u8],
    ) -> Result<Vec<u8>, CallError> {
        self.call_with(
            kind,
            function,
            inv,
            body.len(),
            |buf| buf.copy_from_slice(body),
            |out| Ok(out.to_vec()),
        )
    }

    /// The general call: `write` fills the `body_len` bytes after the call
    /// header in guest memory; `read` turns the output of a successful call,
    /// still in guest memory, into the result.
    fn call_with<R>(
        &self,
        kind: FunctionKind,
        function: &str,
        inv: &Invocation,
        body_len: usize,
        write: impl FnOnce(&mut [u8]),
        read: impl FnOnce(&[u8]) -> Result<R, CallErrorKind>,
    ) -> Result<R, CallError> {
        let Some(index) = self.index_of(kind, function) else {
            return Err(self.error(kind, function, inv, CallErrorKind::NoSuchFunction));
        };
        let started = std::time::Instant::now();
        let mut returned = None;
        let mut store = self.compiled.store(&self.name, inv);
        let result = self.call_in(&mut store, index, inv, body_len, write, |out| {
            returned = Some(started.elapsed());
            read(out)
        });
        if let Some(meter) = &inv.meter {
            let left = store.get_fuel().unwrap_or(0);
            let took = returned.unwrap_or_else(|| started.elapsed());
            meter.record(
                inv.limits.fuel.saturating_sub(left),
                result.is_err(),
                u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            );
        }
        result.map_err(|e| self.error(kind, function, inv, e))
    }

    fn call_in<R>(
        &self,
        store: &mut Store<CallState>,
        function: usize,
        inv: &Invocation,
        body_len: usize,
        write: impl FnOnce(&mut [u8]),
        read: impl FnOnce(&[u8]) -> Result<R, CallErrorKind>,
    ) -> Result<R, CallErrorKind> {
        let limits = &inv.limits;
        let exports = &self.compiled.exports;
        let instance = self
            .compiled
            .pre
            .instantiate(&mut *store)
            .map_err(|e| classify(e, store, limits, true))?;
        if let Some(init) = &exports.initialize {
            let Some(Extern::Func(init)) = instance.get_module_export(&mut *store, init) else {
                unreachable!("validated at load")
            };
            init.typed::<(), ()>(&*store)
                .expect("validated at load")
                .call(&mut *store, ())
                .or_else(exited_cleanly)
                .map_err(|e| classify(e, store, limits, false))?;
        }
        let Some(Extern::Memory(memory)) = instance.get_module_export(&mut *store, &exports.memory)
        else {
            unreachable!("validated at load")
        };
        let Some(Extern::Func(alloc)) = instance.get_module_export(&mut *store, &exports.alloc)
        else {
            unreachable!("validated at load")
        };
        let alloc = alloc.typed::<u32, u32>(&*store).expect("validated at load");
        let Some(Extern::Func(func)) =
            instance.get_module_export(&mut *store, &exports.functions[function])
        else {
            unreachable!("validated at load")
        };
        let func = func
            .typed::<(u32, u32, u32), i32>(&*store)
            .expect("validated at load");

        let input_len = HEADER_LEN + body_len;
        let result_off = input_len.next_multiple_of(8);
        let total = result_off + RESULT_AREA_LEN;
        let total_u32 = u32::try_from(total).map_err(|_| CallErrorKind::OutputTooLarge {
            len: total as u64,
            limit: u32::MAX as usize,
        })?;
        let ptr = alloc
            .call(&mut *store, total_u32)
            .map_err(|e| classify(e, store, limits, false))?;
        let mem = memory.data_mut(&mut *store);
        check_range(mem.len(), "weir_alloc result", ptr as u64, total as u64)?;
        let base = ptr as usize;
        mem[base..base + HEADER_LEN].copy_from_slice(&inv.header.encode());
        write(&mut mem[base + HEADER_LEN..base + input_len]);
        mem[base + result_off..base + total].fill(0);

        let status = func
            .call(
                &mut *store,
                (ptr, input_len as u32, ptr + result_off as u32),
            )
            .map_err(|e| classify(e, store, limits, false))?;

        let mem = memory.data(&*store);
        take_output(mem, base + result_off, status, limits.output_bytes, read)
    }
}

/// The host's side of a call's result, once the function returned
/// `status` (the guest → host framing of docs/abi.md §2): the result area
/// at byte `area` of guest memory `mem` holds `out_ptr` and `out_len`;
/// the range they name is checked against the memory (without overflow)
/// and against `cap` (64 KiB at most for an error message) before a byte
/// of it is read. `read` then decodes the output of a successful call
/// where it lies; a failed call's message must be UTF-8.
pub fn take_output<R>(
    mem: &[u8],
    area: usize,
    status: i32,
    cap: usize,
    read: impl FnOnce(&[u8]) -> Result<R, CallErrorKind>,
) -> Result<R, CallErrorKind> {
    // Only statuses 0 and 1 give the result area a meaning: any other
    // is reported as such, whatever the area holds.
    let succeeded = match status {
        weir_abi::STATUS_OK => true,
        weir_abi::STATUS_ERROR => false,
        other => return Err(CallErrorKind::BadStatus(other)),
    };
    // The host put the result area inside memory, and memory never
    // shrinks; checked all the same, as every other range.
    check_range(
        mem.len(),
        "result area",
        area as u64,
        RESULT_AREA_LEN as u64,
    )?;
    let area = &mem[area..area + RESULT_AREA_LEN];
    let out_ptr = u32::from_le_bytes(area[0..4].try_into().expect("4 bytes")) as u64;
    let out_len = u32::from_le_bytes(area[4..8].try_into().expect("4 bytes")) as u64;
    check_range(mem.len(), "output", out_ptr, out_len)?;
    let cap = if succeeded { cap } else { cap.min(64 << 10) };
    if out_len > cap as u64 {
        return Err(CallErrorKind::OutputTooLarge {
            len: out_len,
            limit: cap,
        });
    }
    let bytes = &mem[out_ptr as usize..(out_ptr + out_len) as usize];
    if succeeded {
        return read(bytes);
    }
    match std::str::from_utf8(bytes) {
        Ok(msg) => Err(CallErrorKind::Guest {
            message: msg.to_owned(),
        }),
        Err(_) => Err(CallErrorKind::BadMessage),
    }
}

fn check_range(
    memory_size: usize,
    what: &'static str,
    ptr: u64,
    len: u64,
) -> Result<(), CallErrorKind> {
    match ptr.checked_add(len) {
        Some(end) if end <= memory_size as u64 => Ok(()),
        _ => Err(CallErrorKind::BadPointer {
            what,
            ptr,
            len,
            memory_size,
        }),
    }
}

/// `proc_exit(0)` during `_initialize` or `_start` ends it normally (a
/// command's `main` returning exits so).
fn exited_cleanly(err: wasmtime::Error) -> wasmtime::Result<()> {
    match err.downcast_ref::<GuestExit>() {
        Some(exit) if exit.code == 0 => Ok(()),
        _ => Err(err),
    }
}

/// Turns a wasmtime error into the reason a user can act on.
fn classify(
    err: wasmtime::Error,
    store: &Store<CallState>,
    limits: &Limits,
    instantiating: bool,
) -> CallErrorKind {
    if let Some(requested) = store.data().limiter.hit {
        return CallErrorKind::MemoryLimit {
            limit: limits.memory_bytes,
            requested,
        };
    }
    if let Some(exit) = err.downcast_ref::<GuestExit>() {
        return CallErrorKind::Exit {
            code: exit.code,
            stderr: exit.stderr.clone(),
        };
    }
    if let Some(failure) = err.downcast_ref::<GuestFailure>() {
        return CallErrorKind::Guest {
            message: failure.message.clone(),
        };
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => CallErrorKind::OutOfFuel {
            budget: limits.fuel,
        },
        Some(Trap::StackOverflow) => CallErrorKind::StackOverflow,
        Some(Trap::Interrupt) => CallErrorKind::Deadline {
            millis: limits.deadline.as_millis(),
        },
        Some(trap) => CallErrorKind::Trap {
            message: trap.to_string(),
            source: err,
        },
        None if instantiating => CallErrorKind::Instantiate { source: err },
        None => CallErrorKind::Trap {
            message: format!("{err:#}"),
            source: err,
        },
    }
}

/// What one call cost: the fuel it burnt and the wall-clock time it took
/// (instantiation included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Fuel units used: the budget minus what was left after the call (the
    /// whole budget when the call ran out of fuel).
    pub fuel: u64,
    /// Wall-clock time of the call.
    pub elapsed: std::time::Duration,
}

impl Plugin {
    /// Like [`Plugin::call`], and also reports what the call cost, whether
    /// it succeeded or not (`weir plugin call`, `weir plugin test`).
    pub fn call_measured(
        &self,
        kind: FunctionKind,
        function: &str,
        inv: &Invocation,
        body: &[u8],
    ) -> (Result<Vec<u8>, CallError>, CallStats) {
        let meter = Arc::new(CallMeter::default());
        let inv = Invocation {
            meter: Some(meter.clone()),
            ..inv.clone()
        };
        let start = std::time::Instant::now();
        let result = self.call(kind, function, &inv, body);
        let stats = CallStats {
            fuel: meter.fuel(),
            elapsed: start.elapsed(),
        };
        (result, stats)
    }
}
