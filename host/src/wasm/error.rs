//! Errors of the wasm layer: loading a plugin, and calling one.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use weir_abi::{FrameError, FunctionKind};

/// One reason a module is not a usable weir plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A required export is absent.
    MissingExport {
        export: &'static str,
        hint: &'static str,
    },
    /// An export has the wrong type or signature.
    BadExport {
        export: String,
        expected: &'static str,
    },
    /// The module imports something weir does not provide.
    UnsupportedImport {
        module: String,
        name: String,
        /// What to change in the module's toolchain.
        hint: String,
    },
    /// `weir_abi_version` returned another version.
    WrongAbiVersion { found: i32 },
    /// `weir_abi_version` could not be called.
    AbiVersionFailed { reason: String },
    /// No `map:`, `reduce:` or `update:` function is exported.
    NoFunctions,
    /// One function exported under both spellings (`map:f` and `map__f`).
    DuplicateFunction { first: String, second: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::MissingExport { export, hint } => write!(f, "missing export `{export}` ({hint})"),
            Problem::BadExport { export, expected } => write!(f, "export `{export}` must be {expected}"),
            Problem::UnsupportedImport { module, name, hint } => {
                write!(f, "imports `{module}.{name}`, which weir does not offer: {hint}")
            }
            Problem::WrongAbiVersion { found } => write!(
                f,
                "exports ABI version {found}, this host speaks version {}; rebuild it against a matching weir-sdk",
                weir_abi::ABI_VERSION
            ),
            Problem::AbiVersionFailed { reason } => write!(f, "calling `weir_abi_version` failed: {reason}"),
            Problem::DuplicateFunction { first, second } => write!(
                f,
                "exports one function twice, as `{first}` and `{second}`; keep one spelling"
            ),
            Problem::NoFunctions => write!(
                f,
                "exports no weir function: expected exports named `map:NAME`, `reduce:NAME` or `update:NAME`"
            ),
        }
    }
}

/// Loading a plugin module failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin module {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly module (or WAT text).
    #[error("plugin `{plugin}` is not a valid WebAssembly module: {source:#}")]
    Compile {
        plugin: Arc<str>,
        #[source]
        source: wasmtime::Error,
    },
    /// A valid module that breaks the weir ABI; every problem is listed.
    #[error("plugin `{plugin}` is not a weir plugin:{}", problems.iter().map(|p| format!("\n  - {p}")).collect::<String>())]
    NotAPlugin {
        plugin: Arc<str>,
        problems: Vec<Problem>,
    },
}

/// Where a failing call happened: the plugin and function always, and the
/// engine's coordinates when the engine made the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSite {
    /// Plugin name (usually the module's file name).
    pub plugin: Arc<str>,
    /// Function kind.
    pub kind: FunctionKind,
    /// Function name, without the kind prefix.
    pub function: Arc<str>,
    /// Job name, when called by a running job.
    pub job: Option<Arc<str>>,
    /// Operator name, when called by a running job.
    pub operator: Option<Arc<str>>,
    /// Batch time in ms.
    pub batch_time_ms: i64,
    /// Partition.
    pub partition: u32,
}

impl fmt::Display for CallSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "plugin `{}` function `{}:{}`",
            self.plugin, self.kind, self.function
        )?;
        if let Some(job) = &self.job {
            write!(f, " (job `{job}`")?;
            if let Some(op) = &self.operator {
                write!(f, ", operator `{op}`")?;
            }
            write!(
                f,
                ", batch {} ms, partition {})",
                self.batch_time_ms, self.partition
            )?;
        }
        Ok(())
    }
}

/// What went wrong in a call.
#[derive(Debug, thiserror::Error)]
pub enum CallErrorKind {
    /// The module does not export this function.
    #[error("no such function in the module")]
    NoSuchFunction,
    /// The per-call fuel budget ran out (an endless or too long loop).
    #[error("ran out of fuel: used the whole budget of {budget} units (endless loop, or raise the fuel limit)")]
    OutOfFuel { budget: u64 },
    /// The guest tried to grow its memory past the per-instance cap.
    #[error("hit the memory limit of {limit} bytes (tried to grow to {requested} bytes)")]
    MemoryLimit { limit: usize, requested: usize },
    /// The guest overflowed its stack (deep or unbounded recursion).
    #[error("overflowed the wasm stack")]
    StackOverflow,
    /// The wall-clock safety net fired.
    #[error("exceeded the wall-clock deadline of {millis} ms")]
    Deadline { millis: u128 },
    /// Any other trap (unreachable, out-of-bounds access, division by zero, a
    /// panic in a Rust guest, ...).
    #[error("trapped: {message}")]
    Trap {
        message: String,
        #[source]
        source: wasmtime::Error,
    },
    /// Instantiation failed (for example, the instance pool is exhausted).
    #[error("could not instantiate: {source:#}")]
    Instantiate {
        #[source]
        source: wasmtime::Error,
    },
    /// The user function reported an error (status 1, `weir.fail`, a Rust
    /// panic through the SDK's hook, an AssemblyScript `abort`).
    #[error("failed: {message}")]
    Guest { message: String },
    /// The guest called WASI's `proc_exit` (with a non-zero code, or with
    /// 0 before returning a result).
    #[error("exited with code {code} (proc_exit) before returning a result{}", if stderr.is_empty() { String::new() } else { format!("; its stderr ended with: {stderr}") })]
    Exit { code: i32, stderr: String },
    /// A pointer/length pair from the guest does not lie inside its memory.
    #[error("returned an out-of-range {what}: pointer {ptr}, length {len}, but memory is {memory_size} bytes")]
    BadPointer {
        what: &'static str,
        ptr: u64,
        len: u64,
        memory_size: usize,
    },
    /// The guest's output is larger than allowed.
    #[error("returned {len} bytes of output, more than the limit of {limit} bytes")]
    OutputTooLarge { len: u64, limit: usize },
    /// The output does not follow the framing of the function's kind.
    #[error("returned malformed output: {0}")]
    Malformed(#[from] FrameError),
    /// The function returned a status the ABI does not define.
    #[error("returned unknown status {0} (0 = ok, 1 = error)")]
    BadStatus(i32),
    /// The error message is not UTF-8.
    #[error("returned an error message that is not UTF-8")]
    BadMessage,
}

/// A plugin call failed; says where and why.
#[derive(Debug)]
pub struct CallError {
    /// Where.
    pub site: CallSite,
    /// Why.
    pub kind: CallErrorKind,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.site, self.kind)
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

impl CallErrorKind {
    /// A stable, machine-readable name of the failure (the `kind` of a
    /// failed job in the serve API).
    pub fn code(&self) -> &'static str {
        match self {
            CallErrorKind::NoSuchFunction => "no_such_function",
            CallErrorKind::OutOfFuel { .. } => "out_of_fuel",
            CallErrorKind::MemoryLimit { .. } => "memory_limit",
            CallErrorKind::StackOverflow => "stack_overflow",
            CallErrorKind::Deadline { .. } => "deadline",
            CallErrorKind::Trap { .. } => "trap",
            CallErrorKind::Instantiate { .. } => "instantiate",
            CallErrorKind::Guest { .. } => "guest_error",
            CallErrorKind::Exit { .. } => "exit",
            CallErrorKind::BadPointer { .. } => "bad_pointer",
            CallErrorKind::OutputTooLarge { .. } => "output_too_large",
            CallErrorKind::Malformed(_) => "malformed_output",
            CallErrorKind::BadStatus(_) => "bad_status",
            CallErrorKind::BadMessage => "bad_message",
        }
    }
}
