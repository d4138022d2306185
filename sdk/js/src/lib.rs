//! Write weir plugin functions in JavaScript.
//!
//! A weir plugin is a core WebAssembly module that follows `docs/abi.md`.
//! This crate embeds the QuickJS engine (through `rquickjs`, QuickJS-ng's C
//! compiled for `wasm32-wasip1`) in such a module: a small Rust `cdylib`
//! names a JavaScript source and the functions to export, and every call
//! runs the JavaScript function over the partition's records.
//!
//! **Declaring exports.** [`plugin!`] takes the code — the module's source
//! (`source = include_str!(...)`) or, better, its QuickJS bytecode made by
//! [`build::compile_file`] in the plugin's build script (`bytecode =
//! include_bytes!(...)`: calls skip parsing, syntax errors fail the build)
//! — and one line per export with the Rust types the function's arguments
//! and results are encoded as (the same encodings as the Rust SDK,
//! `docs/abi.md` §5):
//!
//! ```ignore
//! weir_js::plugin! {
//!     bytecode = include_bytes!(concat!(env!("OUT_DIR"), "/wordcount.js.qjsbc"));
//!     map split(String) -> (String, i64);
//!     reduce sum(i64);
//!     update running_count(String, i64, i64) -> (String, i64);
//! }
//! ```
//!
//! generates the exports `map:split`, `reduce:sum` and
//! `update:running_count` (the SDK supplies `weir_abi_version` and
//! `weir_alloc`). `map NAME(V)` passes only the value, `map NAME(K, V)` the
//! key and the value; `reduce NAME(V)` folds each group with `NAME(a, b)`;
//! `update NAME(K, V, S)` is called per key with its values and state.
//!
//! **JavaScript calling convention.** The source is an ES module; each
//! exported name must be an `export function` (or any exported callable).
//! Per record, group or key the host's bytes are decoded by the declared
//! Rust type and handed to JavaScript as:
//!
//! | declared type | JavaScript argument | accepted as a result |
//! |---------------|--------------------|----------------------|
//! | `String` | string (the bytes must be UTF-8, else the call fails as the Rust SDK's does) | a string |
//! | `Vec<u8>` | `Uint8Array` | `Uint8Array`, `ArrayBuffer`, or a string (its UTF-8) |
//! | `i64` | BigInt | BigInt in the `i64` range, or an integer Number (a safe integer) |
//! | `f64` | Number | Number |
//! | `bool` | boolean | boolean |
//! | `()` | `undefined` | `undefined` or `null` |
//!
//! - `map`: `f(value)` or `f(key, value)` returns an array of `[key, value]`
//!   pairs, in output order (or `null`/`undefined` for none).
//! - `reduce`: `f(a, b)` returns the combination of two values; the host
//!   folds each group left to right, so `f` must be associative.
//! - `update`: `f(key, values, state)` with `values` an array and `state` an
//!   object with `exists`, `timingOut`, `get()` (the value or `undefined`),
//!   `set(v)` and `remove()`; it returns the pairs to emit, as `map` does.
//!   A state left untouched is kept.
//!
//! A thrown exception fails the call (status 1) with the exception's
//! `message` (or the thrown value as a string); a result of the wrong type
//! fails it with a message naming the function and what was expected.
//! `console.log/info/warn/error/debug` write to the host's log, and
//! `weir.batchTimeMs()`, `weir.partition()`, `weir.numPartitions()` read
//! the call header.
//!
//! **Per call.** The ABI gives every call a fresh instance, so every call
//! that has at least one record, group or entry creates a QuickJS runtime,
//! loads and evaluates the module (from bytecode: about 0.35 ms in all on
//! the development machine; parsing the source adds about 0.15 ms) and then
//! calls the function per item; a call with an empty body does not start
//! QuickJS at all. Nothing is torn down at the end: the host discards the
//! whole instance.
//!
//! **Build.** `RQUICKJS_SYS_NO_WASI_SDK=1 CC_wasm32_wasip1=clang
//! CFLAGS_wasm32_wasip1=--target=wasm32-wasi cargo build --release --target
//! wasm32-wasip1` with Debian's `clang lld wasi-libc` (see
//! `plugins/wordcount-js/README.md`). The same crate also builds for
//! `wasm32-unknown-unknown` (`CC_wasm32_unknown_unknown=clang`, with the
//! libc `rquickjs-sys` vendors): that module imports no WASI at all.

use rquickjs::function::{Rest, This};
use rquickjs::{
    qjs, ArrayBuffer, BigInt, CatchResultExt, CaughtError, Coerced, Context, Ctx, Function, Module,
    Object, Runtime, TypedArray, Value,
};
use weir_sdk::{Decode, Encode, State};

pub use rquickjs;
pub use weir_sdk;

/// Where the call failed, as the message the host reports.
pub type Error = String;

/// A plugin's JavaScript: the source of an ES module, or the QuickJS
/// bytecode [`build::compile`] made of it in the plugin's build script
/// (which saves parsing it on every call, about a quarter of a call's fixed
/// cost, and reports syntax errors when the plugin is built).
#[derive(Debug, Clone, Copy)]
pub enum Code {
    /// ES module source, parsed on every call.
    Source(&'static str),
    /// Bytecode written by [`build::compile`] with this version of the
    /// crate (QuickJS reads no other; garbage here is undefined behaviour
    /// inside the instance, which at worst traps).
    Bytecode(&'static [u8]),
}

/// A Rust type that keys, values and states are declared as, with its
/// JavaScript form (see the table in the crate docs).
pub trait JsType: Decode + Encode + Sized {
    /// What a JavaScript result must be, for error messages.
    const EXPECTED: &'static str;

    /// The JavaScript value handed to the function.
    fn into_js<'js>(self, ctx: &Ctx<'js>) -> rquickjs::Result<Value<'js>>;

    /// The Rust value of a JavaScript result; `None` if it has the wrong
    /// type or range.
    fn from_js(value: &Value<'_>) -> Option<Self>;
}

impl JsType for String {
    const EXPECTED: &'static str = "a string";

    fn into_js<'js>(self, ctx: &Ctx<'js>) -> rquickjs::Result<Value<'js>> {
        Ok(rquickjs::String::from_str(ctx.clone(), &self)?.into_value())
    }

    fn from_js(value: &Value<'_>) -> Option<Self> {
        value.as_string()?.to_string().ok()
    }
}

impl JsType for Vec<u8> {
    const EXPECTED: &'static str = "a Uint8Array, an ArrayBuffer or a string";

    fn into_js<'js>(self, ctx: &Ctx<'js>) -> rquickjs::Result<Value<'js>> {
        Ok(TypedArray::<u8>::new(ctx.clone(), self)?.into_value())
    }

    fn from_js(value: &Value<'_>) -> Option<Self> {
        if let Some(s) = value.as_string() {
            return s.to_string().ok().map(String::into_bytes);
        }
        let object = value.as_object()?;
        // SAFETY (both): the bytes are copied at once, before any JavaScript
        // runs that could detach or resize the buffer.
        if let Some(array) = object.as_typed_array::<u8>() {
            return unsafe { array.as_bytes() }.map(<[u8]>::to_vec);
        }
        let buffer = ArrayBuffer::from_object(object.clone())?;
        unsafe { buffer.as_bytes() }.map(<[u8]>::to_vec)
    }
}

impl JsType for i64 {
    const EXPECTED: &'static str = "a BigInt in the i64 range or a safe integer";

    fn into_js<'js>(self, ctx: &Ctx<'js>) -> rquickjs::Result<Value<'js>> {
        Ok(BigInt::from_i64(ctx.clone(), self)?.into_value())
    }

    fn from_js(value: &Value<'_>) -> Option<Self> {
        if let Some(i) = value.as_int() {
            return Some(i.into());
        }
        if let Some(f) = value.as_float() {
            const SAFE: f64 = 9_007_199_254_740_991.0;
            return (f.fract() == 0.0 && f.abs() <= SAFE).then_some(f as i64);
        }
        if !value.is_big_int() {
            return None;
        }
        let ctx = value.ctx();
        let mut n = 0i64;
        // SAFETY: `value` and `ctx` are live; JS_ToBigInt64 only reads the
        // value (it wraps modulo 2^64, so the result is checked below).
        if unsafe { qjs::JS_ToBigInt64(ctx.as_raw().as_ptr(), &mut n, value.as_raw()) } != 0 {
            return None;
        }
        let back = BigInt::from_i64(ctx.clone(), n).ok()?;
        // SAFETY: both values are live; JS_IsStrictEqual does not consume them.
        let exact =
            unsafe { qjs::JS_IsStrictEqual(ctx.as_raw().as_ptr(), value.as_raw(), back.as_raw()) };
        exact.then_some(n)
    }
}

impl JsType for f64 {
    const EXPECTED: &'static str = "a number";

    fn into_js<'js>(self, ctx: &Ctx<'js>) -> rquickjs::Result<Value<'js>> {
        Ok(Value::new_float(ctx.clone(), self))
    }

    fn from_js(value: &Value<'_>) -> Option<Self> {
        value.as_number()
    }
}

impl JsType for bool {
    const EXPECTED: &'static str = "a boolean";

    fn into_js<'js>(self, ctx: &Ctx<'js>) -> rquickjs::Result<Value<'js>> {
        Ok(Value::new_bool(ctx.clone(), self))
    }

    fn from_js(value: &Value<'_>) -> Option<Self> {
        value.as_bool()
    }
}

impl JsType for () {
    const EXPECTED: &'static str = "undefined or null";

    fn into_js<'js>(self, ctx: &Ctx<'js>) -> rquickjs::Result<Value<'js>> {
        Ok(Value::new_undefined(ctx.clone()))
    }

    fn from_js(value: &Value<'_>) -> Option<Self> {
        (value.is_undefined() || value.is_null()).then_some(())
    }
}

/// A QuickJS runtime with the plugin's module evaluated. Made once per call
/// and never torn down (the instance is discarded after the call).
struct Engine {
    context: std::mem::ManuallyDrop<Context>,
    _runtime: std::mem::ManuallyDrop<Runtime>,
}

impl Engine {
    fn new() -> Result<Self, Error> {
        let runtime = Runtime::new().map_err(|e| format!("cannot start QuickJS: {e}"))?;
        // The instance lives for one call: collect cycles only under real
        // memory pressure (the host's memory cap still applies).
        runtime.set_gc_threshold(256 << 20);
        // QuickJS checks its C stack against this much below where the
        // runtime was made; the module's whole shadow stack is 1 MiB (the
        // Rust default), so deep recursion fails as a RangeError ("Maximum
        // call stack size exceeded") instead of running off the stack.
        runtime.set_max_stack_size(512 << 10);
        let context = Context::full(&runtime).map_err(|e| format!("cannot start QuickJS: {e}"))?;
        Ok(Engine {
            context: std::mem::ManuallyDrop::new(context),
            _runtime: std::mem::ManuallyDrop::new(runtime),
        })
    }

    /// Evaluates the plugin's module and runs `body` with its export `name`.
    fn with_function<R>(
        &self,
        code: Code,
        name: &str,
        body: impl for<'js> FnOnce(&Ctx<'js>, Function<'js>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        self.context.with(|ctx| {
            install_globals(&ctx)
                .map_err(|e| format!("cannot set up the JavaScript globals: {e}"))?;
            let declared = match code {
                Code::Source(source) => Module::declare(ctx.clone(), "plugin.js", source),
                // SAFETY: `Code::Bytecode` is documented to hold what
                // `build::compile` wrote with this crate's QuickJS.
                Code::Bytecode(bytes) => unsafe { Module::load(ctx.clone(), bytes) },
            };
            let (module, promise) = declared
                .and_then(|m| m.eval())
                .catch(&ctx)
                .map_err(|e| format!("the JavaScript module failed to load: {}", message(e)))?;
            promise
                .finish::<()>()
                .catch(&ctx)
                .map_err(|e| format!("the JavaScript module failed to load: {}", message(e)))?;
            let function: Value = module
                .get(name)
                .map_err(|e| format!("cannot read the module's export `{name}`: {e}"))?;
            let Some(function) = function.into_function() else {
                return Err(format!(
                    "the JavaScript module does not export a function named `{name}`"
                ));
            };
            body(&ctx, function)
        })
    }
}

/// `console.*` and `weir.*`. All native: parsing a JavaScript prelude
/// would cost more, on every call.
fn install_globals(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
    use weir_sdk::Level;
    let globals = ctx.globals();
    let console = Object::new(ctx.clone())?;
    for (name, level) in [
        ("debug", Level::Debug),
        ("log", Level::Info),
        ("info", Level::Info),
        ("warn", Level::Warn),
        ("error", Level::Error),
    ] {
        let log = move |args: Rest<Coerced<String>>| {
            let text: Vec<String> = args.0.into_iter().map(|a| a.0).collect();
            weir_sdk::log(level, &text.join(" "));
        };
        console.set(name, Function::new(ctx.clone(), log)?)?;
    }
    globals.set("console", console)?;
    // The header is read when called: the driver sets it before the first
    // record, after the module's top level ran.
    let weir = Object::new(ctx.clone())?;
    weir.set(
        "batchTimeMs",
        Function::new(ctx.clone(), || weir_sdk::batch_time_ms() as f64)?,
    )?;
    weir.set(
        "partition",
        Function::new(ctx.clone(), weir_sdk::partition)?,
    )?;
    weir.set(
        "numPartitions",
        Function::new(ctx.clone(), weir_sdk::num_partitions)?,
    )?;
    globals.set("weir", weir)
}

/// The prototype of the state objects `update` functions get: `get()`,
/// `set(v)`, `remove()` over the own properties `exists` and `value`.
fn state_prototype<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Object<'js>> {
    let proto = Object::new(ctx.clone())?;
    proto.set(
        "get",
        Function::new(ctx.clone(), |this: This<Object<'js>>| {
            this.0.get::<_, Value<'js>>("value")
        })?,
    )?;
    proto.set(
        "set",
        Function::new(ctx.clone(), |this: This<Object<'js>>, v: Value<'js>| {
            this.0.set("value", v)?;
            this.0.set("exists", true)
        })?,
    )?;
    proto.set(
        "remove",
        Function::new(ctx.clone(), |this: This<Object<'js>>| {
            this.0
                .set("value", Value::new_undefined(this.0.ctx().clone()))?;
            this.0.set("exists", false)
        })?,
    )?;
    Ok(proto)
}

/// The message of a caught JavaScript error: an `Error`'s `message`, or the
/// thrown value as a string.
fn message(e: CaughtError<'_>) -> String {
    match e {
        CaughtError::Exception(e) => e.message().unwrap_or_default(),
        CaughtError::Value(v) => {
            let ctx = v.ctx().clone();
            v.get::<Coerced<String>>()
                .map(|s| s.0)
                .unwrap_or_else(|_| format!("{:?}", ctx.catch()))
        }
        CaughtError::Error(e) => e.to_string(),
    }
}

/// Calls `f` and turns an exception into the call's error.
fn call<'js>(
    ctx: &Ctx<'js>,
    f: &Function<'js>,
    args: Vec<Value<'js>>,
) -> Result<Value<'js>, Error> {
    let mut a = rquickjs::function::Args::new(ctx.clone(), args.len());
    a.push_args(args).map_err(|e| e.to_string())?;
    f.call_arg::<Value>(a).catch(ctx).map_err(message)
}

fn to_js<'js, T: JsType>(ctx: &Ctx<'js>, v: T) -> Result<Value<'js>, Error> {
    v.into_js(ctx).catch(ctx).map_err(message)
}

/// `value` as a `T`, or an error that says what `what()` must be (the
/// message is only built on failure: this runs per output element).
fn from_js<T: JsType>(what: impl FnOnce() -> String, value: &Value<'_>) -> Result<T, Error> {
    T::from_js(value).ok_or_else(|| {
        format!(
            "{} must be {}, got {}",
            what(),
            T::EXPECTED,
            describe(value)
        )
    })
}

fn describe(value: &Value<'_>) -> String {
    match value.get::<Coerced<String>>() {
        Ok(s) if value.is_string() => format!("the string {:?}", s.0),
        Ok(s) => format!("{} {}", value.type_name(), s.0),
        Err(_) => value.type_name().to_owned(),
    }
}

/// A function's result as `(key, value)` records: an array of pairs, or
/// `null`/`undefined`.
fn pairs<K: JsType, V: JsType>(
    function: &str,
    result: Value<'_>,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, Error> {
    if result.is_undefined() || result.is_null() {
        return Ok(Vec::new());
    }
    let Some(array) = result.as_array() else {
        return Err(format!(
            "{function} must return an array of [key, value] pairs, got {}",
            describe(&result)
        ));
    };
    let mut out = Vec::with_capacity(array.len());
    for (i, pair) in array.iter::<Value>().enumerate() {
        let pair = pair.map_err(|e| e.to_string())?;
        let pair = match pair.as_array() {
            Some(p) if p.len() == 2 => p.clone(),
            _ => {
                return Err(format!(
                    "{function}: element {i} of the result must be a [key, value] pair, got {}",
                    describe(&pair)
                ))
            }
        };
        let k: Value = pair.get(0).map_err(|e| e.to_string())?;
        let v: Value = pair.get(1).map_err(|e| e.to_string())?;
        let (mut kb, mut vb) = (Vec::new(), Vec::new());
        from_js::<K>(|| format!("{function}: the key of pair {i}"), &k)?.encode(&mut kb);
        from_js::<V>(|| format!("{function}: the value of pair {i}"), &v)?.encode(&mut vb);
        out.push((kb, vb));
    }
    Ok(out)
}

/// True when the body of `input` (after the 16-byte header) starts with a
/// zero count: the call has nothing to give JavaScript, so QuickJS is not
/// started (the SDK's driver still checks the framing).
fn empty_body(input: &[u8]) -> bool {
    input.get(16..20) == Some(&[0, 0, 0, 0])
}

/// A map call of `f(value)`.
pub fn map_values<V: JsType, K2: JsType, V2: JsType>(
    code: Code,
    name: &str,
    input: &[u8],
) -> Result<Vec<u8>, Error> {
    let export = format!("map:{name}");
    if empty_body(input) {
        return weir_sdk::invoke::map_values(input, |_: V| -> Result<(), Error> {
            unreachable!("no records")
        });
    }
    Engine::new()?.with_function(code, name, |ctx, f| {
        weir_sdk::invoke::map_values(input, |v: V| {
            let result = call(ctx, &f, vec![to_js(ctx, v)?])?;
            pairs::<K2, V2>(&export, result)
        })
    })
}

/// A map call of `f(key, value)`.
pub fn map<K: JsType, V: JsType, K2: JsType, V2: JsType>(
    code: Code,
    name: &str,
    input: &[u8],
) -> Result<Vec<u8>, Error> {
    let export = format!("map:{name}");
    if empty_body(input) {
        return weir_sdk::invoke::map(input, |_: K, _: V| -> Result<(), Error> {
            unreachable!("no records")
        });
    }
    Engine::new()?.with_function(code, name, |ctx, f| {
        weir_sdk::invoke::map(input, |k: K, v: V| {
            let result = call(ctx, &f, vec![to_js(ctx, k)?, to_js(ctx, v)?])?;
            pairs::<K2, V2>(&export, result)
        })
    })
}

/// A reduce call folding each group with `f(a, b)`.
pub fn reduce<V: JsType>(code: Code, name: &str, input: &[u8]) -> Result<Vec<u8>, Error> {
    let export = format!("reduce:{name}");
    if empty_body(input) {
        return weir_sdk::invoke::reduce(input, |_: V, _: V| -> Result<V, Error> {
            unreachable!("no groups")
        });
    }
    Engine::new()?.with_function(code, name, |ctx, f| {
        weir_sdk::invoke::reduce(input, |a: V, b: V| -> Result<V, Error> {
            let result = call(ctx, &f, vec![to_js(ctx, a)?, to_js(ctx, b)?])?;
            from_js(|| format!("the result of {export}"), &result)
        })
    })
}

/// An update call of `f(key, values, state)`.
pub fn update<K: JsType, V: JsType, S: JsType, K2: JsType, V2: JsType>(
    code: Code,
    name: &str,
    input: &[u8],
) -> Result<Vec<u8>, Error> {
    let export = format!("update:{name}");
    if empty_body(input) {
        return weir_sdk::invoke::update(
            input,
            |_: K, _: Vec<V>, _: &mut State<S>| -> Result<(), Error> { unreachable!("no entries") },
        );
    }
    Engine::new()?.with_function(code, name, |ctx, f| {
        let proto = state_prototype(ctx).map_err(|e| e.to_string())?;
        weir_sdk::invoke::update(input, |k: K, values: Vec<V>, state: &mut State<S>| {
            let key = to_js(ctx, k)?;
            let array = rquickjs::Array::new(ctx.clone()).map_err(|e| e.to_string())?;
            for (i, v) in values.into_iter().enumerate() {
                array.set(i, to_js(ctx, v)?).map_err(|e| e.to_string())?;
            }
            let timing_out = state.is_timing_out();
            let exists = state.exists();
            let old = match std::mem::replace(state, State::new(None, timing_out)).into_inner() {
                Some(s) => to_js(ctx, s)?,
                None => Value::new_undefined(ctx.clone()),
            };
            let js_state = Object::new(ctx.clone())
                .and_then(|o| {
                    o.set_prototype(Some(&proto))?;
                    o.set("exists", exists)?;
                    o.set("timingOut", timing_out)?;
                    o.set("value", old)?;
                    Ok(o)
                })
                .map_err(|e| e.to_string())?;
            let result = call(
                ctx,
                &f,
                vec![key, array.into_value(), js_state.clone().into_value()],
            )?;
            let exists: bool = js_state.get("exists").map_err(|e| e.to_string())?;
            if exists {
                let v: Value = js_state.get("value").map_err(|e| e.to_string())?;
                state.set(from_js(|| format!("{export}: the state"), &v)?);
            }
            pairs::<K2, V2>(&export, result)
        })
    })
}

/// Runs a driver on the call's input and writes the result area: the
/// SDK's own glue ([`weir_sdk::invoke::run`]).
///
/// # Safety
/// `input..input+len` must be readable memory and `result` must point to 8
/// writable bytes: the host guarantees both by the ABI.
#[doc(hidden)]
pub unsafe fn run(
    input: u32,
    len: u32,
    result: u32,
    driver: impl FnOnce(&[u8]) -> Result<Vec<u8>, Error>,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe { weir_sdk::invoke::run(input, len, result, driver) }
}

/// Declares a JavaScript plugin: its code — `source = <&'static str>;`, or
/// `bytecode = <&'static [u8]>;` from [`build::compile`] — and the
/// functions to export (see the crate docs for the calling convention).
///
/// ```ignore
/// weir_js::plugin! {
///     source = include_str!("../wordcount.js");
///     map split(String) -> (String, i64);
///     map pairs(String, Vec<u8>) -> (String, Vec<u8>);
///     reduce sum(i64);
///     update running_count(String, i64, i64) -> (String, i64);
/// }
/// ```
#[macro_export]
macro_rules! plugin {
    (source = $source:expr; $($rest:tt)+) => {
        #[doc(hidden)]
        const __WEIR_JS_CODE: $crate::Code = $crate::Code::Source($source);
        $crate::__exports!($($rest)+);
    };
    (bytecode = $bytecode:expr; $($rest:tt)+) => {
        #[doc(hidden)]
        const __WEIR_JS_CODE: $crate::Code = $crate::Code::Bytecode($bytecode);
        $crate::__exports!($($rest)+);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __exports {
    ($($kind:ident $name:ident ( $($t:ty),* ) $(-> ($k2:ty, $v2:ty))? ;)+) => {
        $( $crate::__export!($kind $name ( $($t),* ) $(-> ($k2, $v2))?); )+
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export {
    (map $name:ident ($v:ty) -> ($k2:ty, $v2:ty)) => {
        $crate::__export!(@glue "map:", $name, |i| $crate::map_values::<$v, $k2, $v2>(__WEIR_JS_CODE, stringify!($name), i));
    };
    (map $name:ident ($k:ty, $v:ty) -> ($k2:ty, $v2:ty)) => {
        $crate::__export!(@glue "map:", $name, |i| $crate::map::<$k, $v, $k2, $v2>(__WEIR_JS_CODE, stringify!($name), i));
    };
    (reduce $name:ident ($v:ty)) => {
        $crate::__export!(@glue "reduce:", $name, |i| $crate::reduce::<$v>(__WEIR_JS_CODE, stringify!($name), i));
    };
    (update $name:ident ($k:ty, $v:ty, $s:ty) -> ($k2:ty, $v2:ty)) => {
        $crate::__export!(@glue "update:", $name, |i| $crate::update::<$k, $v, $s, $k2, $v2>(__WEIR_JS_CODE, stringify!($name), i));
    };
    (@glue $prefix:literal, $name:ident, $driver:expr) => {
        const _: () = {
            #[cfg(target_arch = "wasm32")]
            #[export_name = concat!($prefix, stringify!($name))]
            extern "C" fn glue(input: u32, len: u32, result: u32) -> i32 {
                // SAFETY: the host passes a valid input range and result area (ABI v1).
                unsafe { $crate::run(input, len, result, $driver) }
            }
        };
    };
    ($($other:tt)*) => {
        compile_error!(concat!(
            "weir_js::plugin!: expected `map NAME(V) -> (K2, V2);`, `map NAME(K, V) -> (K2, V2);`, ",
            "`reduce NAME(V);` or `update NAME(K, V, S) -> (K2, V2);`, got: ",
            stringify!($($other)*)
        ));
    };
}

/// On `wasm32-unknown-unknown`, `rquickjs-sys` links a vendored libc whose
/// clock asks the host for `env.__rquickjs_host_now_us`; defined here, the
/// module needs no import for it: QuickJS's clock (`Date.now()`, the seed of
/// `Math.random()`) reads the batch time, so replays compute the same.
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
#[no_mangle]
pub extern "C" fn __rquickjs_host_now_us() -> f64 {
    weir_sdk::batch_time_ms() as f64 * 1000.0
}

/// Compiling a plugin's JavaScript ahead of time, in its build script
/// (natively: this runs QuickJS on the build machine).
///
/// ```ignore
/// // build.rs
/// fn main() {
///     weir_js::build::compile_file("wordcount.js");
/// }
/// // src/lib.rs
/// weir_js::plugin! {
///     bytecode = include_bytes!(concat!(env!("OUT_DIR"), "/wordcount.js.qjsbc"));
///     map split(String) -> (String, i64);
/// }
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub mod build {
    use rquickjs::{CatchResultExt, CaughtError, Context, Module, Runtime, WriteOptions};

    /// The bytecode of the ES module `source`, named `name` in stack
    /// traces; a syntax error is the error, with its position.
    pub fn compile(name: &str, source: &str) -> Result<Vec<u8>, String> {
        let runtime = Runtime::new().map_err(|e| e.to_string())?;
        let context = Context::full(&runtime).map_err(|e| e.to_string())?;
        context.with(|ctx| {
            let module = Module::declare(ctx.clone(), name, source)
                .catch(&ctx)
                .map_err(|e| match e {
                    CaughtError::Exception(e) => format!(
                        "{}\n{}",
                        e.message().unwrap_or_default(),
                        e.stack().unwrap_or_default()
                    ),
                    other => other.to_string(),
                })?;
            module
                .write(WriteOptions::default())
                .map_err(|e| e.to_string())
        })
    }

    /// For a build script: compiles the file `path` (relative to the
    /// package) into `$OUT_DIR/<file name>.qjsbc`, tells cargo to rerun when
    /// it changes, and fails the build with the syntax error if any.
    pub fn compile_file(path: &str) {
        println!("cargo:rerun-if-changed={path}");
        let source = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        let file = std::path::Path::new(path)
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        let bytecode = compile(&file, &source).unwrap_or_else(|e| {
            eprintln!("{path}: {e}");
            std::process::exit(1)
        });
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("run from a build script"))
            .join(format!("{file}.qjsbc"));
        std::fs::write(&out, bytecode).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
    }
}
