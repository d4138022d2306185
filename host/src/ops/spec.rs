//! Operator descriptions: what each operator file declares about itself,
//! and the validated arguments it is built from.
//!
//! An [`OpDesc`] is the single description of an operator. The pipeline
//! parser reads its [`Param`]s to know which keys a `[[stream]]` of that
//! operator takes and how to parse them; the library API and the pipeline
//! both build operators through [`Args`], which checks the parameters
//! against the description (function kinds, partition counts, window
//! lengths against the input's slide) the same way for both; the README's
//! operator table is generated from the descriptions and a test keeps it in
//! step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use weir_abi::FunctionKind;

use super::{FunctionRef, Operator, ValueKind};
use crate::error::BuildError;

/// How many input streams an operator reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// Exactly one.
    One,
    /// Exactly two: left, right.
    Two,
    /// One or more.
    AtLeastOne,
}

impl Arity {
    /// Whether `n` inputs fit.
    pub fn accepts(self, n: usize) -> bool {
        match self {
            Arity::One => n == 1,
            Arity::Two => n == 2,
            Arity::AtLeastOne => n >= 1,
        }
    }

    /// For messages: "exactly one", ...
    pub fn describe(self) -> &'static str {
        match self {
            Arity::One => "exactly one",
            Arity::Two => "exactly two (left, right)",
            Arity::AtLeastOne => "one or more",
        }
    }
}

/// The type of a parameter, which says how the pipeline file writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A plugin function of this kind, `"PLUGIN:FUNCTION"`.
    Function(FunctionKind),
    /// A function of the same plugin as `function`, `"PLUGIN:NAME"`.
    SameFunction(FunctionKind),
    /// A partition count, at least 1.
    Partitions,
    /// A duration such as `"30s"`, above zero.
    Duration,
    /// A non-negative whole number.
    Count,
    /// A file of `key<TAB>value` lines (relative to the pipeline file),
    /// read with the format named by the `initial_state_format` key.
    StateFile,
    /// One of these words.
    Choice(&'static [&'static str]),
}

impl ParamKind {
    /// How the README writes the type.
    pub fn describe(self) -> String {
        match self {
            ParamKind::Function(k) => format!("{k} function"),
            ParamKind::SameFunction(k) => format!("{k} function of the same plugin"),
            ParamKind::Partitions => "partitions".into(),
            ParamKind::Duration => "duration".into(),
            ParamKind::Count => "number".into(),
            ParamKind::StateFile => "file".into(),
            ParamKind::Choice(words) => format!("one of {}", words.join(", ")),
        }
    }
}

/// One typed parameter of an operator.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Its key in a `[[stream]]` table.
    pub key: &'static str,
    /// Its type.
    pub kind: ParamKind,
    /// Whether it must be given.
    pub required: bool,
    /// What it means and its default, for the documentation.
    pub doc: &'static str,
}

impl Param {
    /// A required parameter.
    pub const fn required(key: &'static str, kind: ParamKind, doc: &'static str) -> Param {
        Param {
            key,
            kind,
            required: true,
            doc,
        }
    }

    /// An optional parameter.
    pub const fn optional(key: &'static str, kind: ParamKind, doc: &'static str) -> Param {
        Param {
            key,
            kind,
            required: false,
            doc,
        }
    }
}

/// The `function` parameter of an operator that calls a plugin function of
/// `kind`.
pub const fn function(kind: FunctionKind) -> Param {
    Param::required(
        "function",
        ParamKind::Function(kind),
        "the plugin function, \"PLUGIN:FUNCTION\"",
    )
}

/// The `partitions` parameter of an operator that shuffles.
pub const PARTITIONS: Param = Param::optional(
    "partitions",
    ParamKind::Partitions,
    "output partitions [default: the input's]",
);

/// The `length` parameter of a window.
pub const LENGTH: Param = Param::required(
    "length",
    ParamKind::Duration,
    "window length, a multiple of the input's batch interval",
);

/// The `slide` parameter of a window.
pub const SLIDE: Param = Param::optional(
    "slide",
    ParamKind::Duration,
    "how often the window is emitted [default: the batch interval]",
);

/// What an operator is made of, once its parameters are checked: one or
/// more stages, each reading the one before (the first reads the
/// operator's inputs). Composite operators such as `count_by_window` are
/// two stages, as in Spark.
pub(crate) struct Stage {
    /// The operator.
    pub op: Box<dyn Operator>,
    /// Its output partitions.
    pub partitions: usize,
    /// Its slide when it differs from its input's (windows).
    pub slide_ms: Option<i64>,
}

impl Stage {
    /// A stage with its input's slide.
    pub(crate) fn new(op: impl Operator + 'static, partitions: usize) -> Stage {
        Stage {
            op: Box::new(op),
            partitions,
            slide_ms: None,
        }
    }

    /// A window stage emitting every `slide_ms`.
    pub(crate) fn sliding(op: impl Operator + 'static, partitions: usize, slide_ms: i64) -> Stage {
        Stage {
            op: Box::new(op),
            partitions,
            slide_ms: Some(slide_ms),
        }
    }
}

/// The single description of an operator, declared by its file.
pub struct OpDesc {
    /// Name in pipeline files and in errors (`reduce_by_key`).
    pub name: &'static str,
    /// Spark's name (`reduceByKey`).
    pub spark: &'static str,
    /// Input streams it reads.
    pub arity: Arity,
    /// Its parameters.
    pub params: &'static [Param],
    /// It regroups records by key across partitions.
    pub shuffles: bool,
    /// It emits windows at slide times.
    pub windowed: bool,
    /// It keeps keyed state between batches (`update_state_by_key`,
    /// `map_with_state`; windows keep their contents too, see `windowed`).
    pub stateful: bool,
    /// It can be written in pipeline files (some are library API only).
    pub in_pipelines: bool,
    /// Its result per batch, for the documentation.
    pub result: &'static str,
    /// Builds it from checked arguments.
    pub(crate) build: fn(&Args) -> Result<Vec<Stage>, BuildError>,
}

impl std::fmt::Debug for OpDesc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpDesc").field("name", &self.name).finish()
    }
}

impl OpDesc {
    /// Its parameter with `key`.
    pub fn param(&self, key: &str) -> Option<&'static Param> {
        self.params.iter().find(|p| p.key == key)
    }
}

/// A parameter's value, typed.
#[derive(Debug, Clone)]
pub(crate) enum ArgValue {
    /// A plugin function (its kind not yet checked).
    Function(FunctionRef),
    /// A partition count or a number.
    Number(usize),
    /// A duration.
    Duration(Duration),
    /// `(key, value)` pairs read from a state file.
    Pairs(Vec<(Vec<u8>, Vec<u8>)>),
}

/// What an operator's build sees of one input stream.
#[derive(Debug, Clone)]
pub(crate) struct InputInfo {
    /// Its name.
    pub name: Arc<str>,
    /// Its partitions.
    pub partitions: usize,
    /// It has a batch every `slide_ms`.
    pub slide_ms: i64,
    /// Its values.
    pub value_kind: ValueKind,
    /// The state partitions, when it is a state operator's stream.
    pub state_partitions: Option<usize>,
}

/// The checked arguments an operator is built from.
#[derive(Debug)]
pub struct Args {
    pub(crate) desc: &'static OpDesc,
    pub(crate) values: BTreeMap<&'static str, ArgValue>,
    pub(crate) inputs: Vec<InputInfo>,
}

impl Args {
    /// Checks `values` against `desc` for these `inputs`: every key is a
    /// parameter, required ones are given, functions exist with the kind
    /// the parameter names, counts are positive, window lengths and slides
    /// are multiples of the input's slide.
    pub(crate) fn check(
        desc: &'static OpDesc,
        values: BTreeMap<&'static str, ArgValue>,
        inputs: Vec<InputInfo>,
    ) -> Result<Args, BuildError> {
        if !desc.arity.accepts(inputs.len()) {
            return Err(BuildError::Arity {
                op: desc.name,
                want: desc.arity.describe(),
                given: inputs.len(),
            });
        }
        let input = inputs[0].name.clone();
        for (key, value) in &values {
            let Some(param) = desc.param(key) else {
                // The caller, which sees the registry, names the
                // operators that take it.
                return Err(BuildError::UnknownParam {
                    op: desc.name,
                    key,
                    takers: Vec::new(),
                });
            };
            match (param.kind, value) {
                (
                    ParamKind::Function(kind) | ParamKind::SameFunction(kind),
                    ArgValue::Function(f),
                ) => check_function(desc.name, &input, f, kind)?,
                (ParamKind::Partitions, ArgValue::Number(0)) => {
                    return Err(BuildError::ZeroPartitions { op: desc.name })
                }
                (ParamKind::Duration, ArgValue::Duration(d)) if d.is_zero() => {
                    return Err(BuildError::ZeroDuration { op: desc.name, key })
                }
                (ParamKind::Duration, ArgValue::Duration(d))
                    if d.subsec_nanos() % 1_000_000 != 0 =>
                {
                    return Err(BuildError::SubMillisecond { op: desc.name, key })
                }
                _ => {}
            }
        }
        if let Some(p) = desc
            .params
            .iter()
            .find(|p| p.required && !values.contains_key(p.key))
        {
            return Err(BuildError::MissingParam {
                op: desc.name,
                key: p.key,
            });
        }
        let args = Args {
            desc,
            values,
            inputs,
        };
        if desc.windowed {
            args.window()?;
        }
        Ok(args)
    }

    /// The input streams.
    pub(crate) fn input(&self, i: usize) -> &InputInfo {
        &self.inputs[i]
    }

    /// A function parameter.
    pub(crate) fn function(&self, key: &str) -> Option<FunctionRef> {
        match self.values.get(key) {
            Some(ArgValue::Function(f)) => Some(f.clone()),
            _ => None,
        }
    }

    /// The required `function` parameter.
    pub(crate) fn the_function(&self) -> FunctionRef {
        self.function("function")
            .expect("checked: the operator's function is given")
    }

    /// A number parameter.
    pub(crate) fn number(&self, key: &str) -> Option<usize> {
        match self.values.get(key) {
            Some(ArgValue::Number(n)) => Some(*n),
            _ => None,
        }
    }

    /// A duration parameter in ms.
    pub(crate) fn duration_ms(&self, key: &str) -> Option<i64> {
        match self.values.get(key) {
            Some(ArgValue::Duration(d)) => Some(d.as_millis() as i64),
            _ => None,
        }
    }

    /// A state file's pairs.
    pub(crate) fn pairs(&self, key: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        match self.values.get(key) {
            Some(ArgValue::Pairs(p)) => p.clone(),
            _ => Vec::new(),
        }
    }

    /// Output partitions of a shuffle: `partitions`, else the input's
    /// (the largest input's, for two inputs).
    pub(crate) fn shuffle_partitions(&self) -> usize {
        self.number("partitions").unwrap_or_else(|| {
            self.inputs
                .iter()
                .map(|i| i.partitions)
                .max()
                .expect("at least one input")
        })
    }

    /// Window length and slide in ms, checked against the input's slide.
    pub(crate) fn window(&self) -> Result<(i64, i64), BuildError> {
        let base = self.inputs[0].slide_ms;
        let length_ms = self.duration_ms("length").unwrap_or(base);
        let slide_ms = self.duration_ms("slide").unwrap_or(base);
        if length_ms <= 0 || slide_ms <= 0 || length_ms % base != 0 || slide_ms % base != 0 {
            return Err(BuildError::WindowNotMultiple {
                op: self.desc.name,
                input: self.inputs[0].name.clone(),
                length_ms,
                slide_ms,
                base_ms: base,
            });
        }
        Ok((length_ms, slide_ms))
    }
}

/// Checks that `f` exists in its plugin as a function of `kind`, with a
/// message that lists what the plugin does have.
pub(crate) fn check_function(
    op: &'static str,
    input: &Arc<str>,
    f: &FunctionRef,
    kind: FunctionKind,
) -> Result<(), BuildError> {
    let (plugin, function) = (&f.plugin, &*f.function);
    if plugin.has_function(kind, function) {
        return Ok(());
    }
    let have = plugin.kinds_of(function);
    let message = if have.is_empty() {
        let available: Vec<String> = plugin
            .functions()
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.name.clone())
            .collect();
        format!(
            "plugin `{}` has no function `{function}`; its {kind} functions are: {}",
            plugin.name(),
            if available.is_empty() {
                "(none)".into()
            } else {
                available.join(", ")
            }
        )
    } else {
        format!(
            "`{}:{function}` is a {} function, but {op} needs a {kind} function",
            plugin.name(),
            have.iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join("/")
        )
    };
    Err(BuildError::Function {
        input: input.clone(),
        op,
        message,
    })
}
