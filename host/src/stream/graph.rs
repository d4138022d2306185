//! The dataflow graph: streams (nodes) and the operators that make them.

use std::sync::Arc;

use crate::wasm::Plugin;
use weir_abi::FunctionKind;

/// Index of a stream in its graph.
pub type NodeId = usize;

/// A plugin function an operator calls: the loaded plugin, the alias the
/// pipeline knows it by, and the function name.
#[derive(Debug, Clone)]
pub struct FunctionRef {
    /// The plugin.
    pub plugin: Plugin,
    /// Function name (without kind prefix).
    pub function: Arc<str>,
}

impl FunctionRef {
    /// `plugin:function`, for messages.
    pub fn label(&self) -> String {
        format!("{}:{}", self.plugin.name(), self.function)
    }
}

/// The flavours of map-kind operators. They call the same kind of plugin
/// function; they differ in what the host checks and in empty partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapFlavor {
    /// Exactly one output record per input record.
    Map,
    /// Zero or more output records per input record.
    FlatMap,
    /// At most one output record per input record.
    Filter,
    /// Whole partition in, anything out; called even on empty partitions.
    MapPartitions,
}

/// The four joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Keys on both sides.
    Inner,
    /// Every left key.
    LeftOuter,
    /// Every right key.
    RightOuter,
    /// Every key of either side.
    FullOuter,
}

/// How the host renders a stream's values (keys are always opaque bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// Bytes from a source or a plugin.
    Opaque,
    /// A canonical `i64` count.
    Count,
    /// A canonical list (`group_by_key`).
    List,
    /// A canonical join pair.
    Pair,
    /// Two canonical lists (`cogroup`).
    CoGroup,
}

/// What a node computes.
#[derive(Debug, Clone)]
pub enum Op {
    /// An input stream; the index is into the context's sources.
    Source(usize),
    /// map, flat_map, filter, map_partitions/transform.
    Map {
        flavor: MapFlavor,
        func: FunctionRef,
    },
    /// Redistributes records evenly over `n` partitions.
    Repartition { partitions: usize },
    /// All records of all inputs.
    Union,
    /// Number of records, one record with an empty key.
    Count,
    /// All values combined with a reduce function, one record.
    Reduce { func: FunctionRef },
    /// Number of occurrences of each distinct element.
    CountByValue { partitions: usize },
    /// Values of each key combined (map-side combine, shuffle, combine).
    ReduceByKey {
        func: FunctionRef,
        partitions: usize,
    },
    /// Values of each key collected into a list.
    GroupByKey { partitions: usize },
    /// Join of two keyed streams.
    Join { kind: JoinKind, partitions: usize },
    /// Per key, the values of both sides.
    CoGroup { partitions: usize },
    /// The union of the input's batches in `(t - length, t]`, at slide times.
    Window { length_ms: i64, slide_ms: i64 },
    /// Per-key values combined over a sliding window, incrementally when an
    /// inverse is given (`reduce_by_key_and_window`, and the host-native
    /// `count_by_window`, `reduce_by_window`, `count_by_value_and_window`).
    ReduceByKeyAndWindow(Box<WindowedReduce>),
    /// Keyed state updated every batch (`update_state_by_key`,
    /// `map_with_state`).
    State(Box<StateSpec>),
    /// The state of a `State` node after each batch, as `(key, state)`.
    StateSnapshots { of: NodeId },
    /// The `n` records with the largest counts, largest first (ties by key).
    Top { n: usize },
}

/// How values of a key are combined.
#[derive(Debug, Clone)]
pub enum Combiner {
    /// A plugin reduce function.
    Plugin(FunctionRef),
    /// Host-native `i64` addition of canonical counts.
    SumI64,
    /// Host-native `i64` subtraction (the inverse of [`Combiner::SumI64`]).
    SubI64,
}

/// Which window entries survive (`reduce_by_key_and_window`'s filter).
#[derive(Debug, Clone)]
pub enum WindowFilter {
    /// A plugin map function used as a filter.
    Plugin(FunctionRef),
    /// Drop canonical counts equal to zero.
    NonZeroCount,
}

/// Parameters of a windowed reduction.
#[derive(Debug, Clone)]
pub struct WindowedReduce {
    /// Combines values.
    pub combine: Combiner,
    /// Removes values that leave the window; `None` recomputes each window.
    pub inverse: Option<Combiner>,
    /// Drops entries from the window state (inverse form only).
    pub filter: Option<WindowFilter>,
    /// Window length.
    pub length_ms: i64,
    /// Slide.
    pub slide_ms: i64,
    /// Output partitions.
    pub partitions: usize,
    /// Values are host-made counts.
    pub counts: bool,
}

/// Which state operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateMode {
    /// Spark's `updateStateByKey`: every key with state or new values is
    /// updated every batch; the stream is the state.
    UpdateStateByKey,
    /// Spark's `mapWithState`: only keys with new values (or whose idle
    /// timeout expired) are called; the stream is what the function emits.
    MapWithState,
}

/// Parameters of a state operator.
#[derive(Debug, Clone)]
pub struct StateSpec {
    /// The plugin update function.
    pub func: FunctionRef,
    /// Which semantics.
    pub mode: StateMode,
    /// Idle timeout (map_with_state).
    pub timeout_ms: Option<i64>,
    /// State partitions.
    pub partitions: usize,
    /// Initial `(key, state)` pairs.
    pub initial: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Op {
    /// The operator's name as in the pipeline file.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Source(_) => "source",
            Op::Map {
                flavor: MapFlavor::Map,
                ..
            } => "map",
            Op::Map {
                flavor: MapFlavor::FlatMap,
                ..
            } => "flat_map",
            Op::Map {
                flavor: MapFlavor::Filter,
                ..
            } => "filter",
            Op::Map {
                flavor: MapFlavor::MapPartitions,
                ..
            } => "map_partitions",
            Op::Repartition { .. } => "repartition",
            Op::Union => "union",
            Op::Count => "count",
            Op::Reduce { .. } => "reduce",
            Op::CountByValue { .. } => "count_by_value",
            Op::ReduceByKey { .. } => "reduce_by_key",
            Op::GroupByKey { .. } => "group_by_key",
            Op::Join {
                kind: JoinKind::Inner,
                ..
            } => "join",
            Op::Join {
                kind: JoinKind::LeftOuter,
                ..
            } => "left_outer_join",
            Op::Join {
                kind: JoinKind::RightOuter,
                ..
            } => "right_outer_join",
            Op::Join {
                kind: JoinKind::FullOuter,
                ..
            } => "full_outer_join",
            Op::CoGroup { .. } => "cogroup",
            Op::Window { .. } => "window",
            Op::ReduceByKeyAndWindow(_) => "reduce_by_key_and_window",
            Op::State(s) if s.mode == StateMode::UpdateStateByKey => "update_state_by_key",
            Op::State(_) => "map_with_state",
            Op::StateSnapshots { .. } => "state_snapshots",
            Op::Top { .. } => "top",
        }
    }

    /// What the node's values are.
    pub fn value_kind(&self, inputs: &[ValueKind]) -> ValueKind {
        match self {
            Op::Count | Op::CountByValue { .. } => ValueKind::Count,
            Op::GroupByKey { .. } => ValueKind::List,
            Op::Join { .. } => ValueKind::Pair,
            Op::CoGroup { .. } => ValueKind::CoGroup,
            Op::ReduceByKeyAndWindow(w) if w.counts => ValueKind::Count,
            Op::Repartition { .. } | Op::Window { .. } | Op::Top { .. } => inputs[0],
            Op::Union if inputs.iter().all(|k| *k == inputs[0]) => inputs[0],
            _ => ValueKind::Opaque,
        }
    }
}

/// One stream of the graph.
#[derive(Debug, Clone)]
pub struct Node {
    /// The stream's name (the operator name in errors).
    pub name: Arc<str>,
    /// What it computes.
    pub op: Op,
    /// The streams it reads, in order (left before right for joins).
    pub inputs: Vec<NodeId>,
    /// How its values render.
    pub value_kind: ValueKind,
    /// The node has a batch at times `zero + k·slide_ms` only (the batch
    /// interval, or a window's slide).
    pub slide_ms: i64,
}

/// Nodes in creation order, which is a topological order: a node can only
/// read nodes created before it.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// The nodes.
    pub nodes: Vec<Node>,
}

impl Graph {
    /// Every plugin function the graph calls, with the kind it is called as.
    pub fn function_refs_mut(&mut self) -> Vec<(&mut FunctionRef, FunctionKind)> {
        let mut out = Vec::new();
        for node in &mut self.nodes {
            match &mut node.op {
                Op::Map { func, .. } => out.push((func, FunctionKind::Map)),
                Op::Reduce { func } | Op::ReduceByKey { func, .. } => {
                    out.push((func, FunctionKind::Reduce))
                }
                Op::ReduceByKeyAndWindow(w) => {
                    let w = &mut **w;
                    if let Combiner::Plugin(f) = &mut w.combine {
                        out.push((f, FunctionKind::Reduce));
                    }
                    if let Some(Combiner::Plugin(f)) = &mut w.inverse {
                        out.push((f, FunctionKind::Reduce));
                    }
                    if let Some(WindowFilter::Plugin(f)) = &mut w.filter {
                        out.push((f, FunctionKind::Map));
                    }
                }
                Op::State(s) => out.push((&mut s.func, FunctionKind::Update)),
                _ => {}
            }
        }
        out
    }

    /// The plugins the graph runs now, by name.
    pub fn plugins(&mut self) -> std::collections::BTreeMap<String, Plugin> {
        self.function_refs_mut()
            .into_iter()
            .map(|(f, _)| (f.plugin.name().to_string(), f.plugin.clone()))
            .collect()
    }

    /// One line per stream, `name = op(inputs; parameters)`: what a
    /// checkpoint records to recognise its pipeline. `sources` describes
    /// each source by index.
    pub fn describe(&self, sources: &[String]) -> Vec<String> {
        let combiner = |c: &Combiner| match c {
            Combiner::Plugin(f) => f.label(),
            Combiner::SumI64 => "native sum".into(),
            Combiner::SubI64 => "native subtract".into(),
        };
        self.nodes
            .iter()
            .map(|n| {
                let inputs: Vec<&str> = n.inputs.iter().map(|&i| &*self.nodes[i].name).collect();
                let params = match &n.op {
                    Op::Source(i) => sources.get(*i).cloned().unwrap_or_default(),
                    Op::Map { func, .. } | Op::Reduce { func } => func.label(),
                    Op::Repartition { partitions }
                    | Op::CountByValue { partitions }
                    | Op::GroupByKey { partitions }
                    | Op::Join { partitions, .. }
                    | Op::CoGroup { partitions } => format!("partitions {partitions}"),
                    Op::ReduceByKey { func, partitions } => {
                        format!("{}, partitions {partitions}", func.label())
                    }
                    Op::Union | Op::Count | Op::StateSnapshots { .. } => String::new(),
                    Op::Top { n } => format!("n {n}"),
                    Op::Window {
                        length_ms,
                        slide_ms,
                    } => format!("length {length_ms} ms, slide {slide_ms} ms"),
                    Op::ReduceByKeyAndWindow(w) => format!(
                        "{}, inverse {}, filter {}, length {} ms, slide {} ms, partitions {}",
                        combiner(&w.combine),
                        w.inverse.as_ref().map_or("none".into(), combiner),
                        match &w.filter {
                            None => "none".into(),
                            Some(WindowFilter::NonZeroCount) => "non-zero".into(),
                            Some(WindowFilter::Plugin(f)) => f.label(),
                        },
                        w.length_ms,
                        w.slide_ms,
                        w.partitions
                    ),
                    Op::State(s) => format!(
                        "{}, timeout {:?} ms, partitions {}",
                        s.func.label(),
                        s.timeout_ms,
                        s.partitions
                    ),
                };
                format!(
                    "{} = {}({}; {params})",
                    n.name,
                    n.op.name(),
                    inputs.join(", ")
                )
            })
            .collect()
    }

    /// Adds a node and returns its id. `slide_ms` is the node's slide:
    /// the batch interval for sources, the window slide for windows, and
    /// the inputs' slide otherwise.
    pub fn add(&mut self, name: Arc<str>, op: Op, inputs: Vec<NodeId>, slide_ms: i64) -> NodeId {
        let kinds: Vec<ValueKind> = inputs.iter().map(|&i| self.nodes[i].value_kind).collect();
        let value_kind = op.value_kind(&kinds);
        self.nodes.push(Node {
            name,
            op,
            inputs,
            value_kind,
            slide_ms,
        });
        self.nodes.len() - 1
    }
}
