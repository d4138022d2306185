//! The dataflow graph: streams (nodes) and the operators that make them.

use std::sync::Arc;

use crate::wasm::Plugin;

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
        }
    }

    /// What the node's values are.
    pub fn value_kind(&self, inputs: &[ValueKind]) -> ValueKind {
        match self {
            Op::Count | Op::CountByValue { .. } => ValueKind::Count,
            Op::GroupByKey { .. } => ValueKind::List,
            Op::Join { .. } => ValueKind::Pair,
            Op::CoGroup { .. } => ValueKind::CoGroup,
            Op::Repartition { .. } => inputs[0],
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
}

/// Nodes in creation order, which is a topological order: a node can only
/// read nodes created before it.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// The nodes.
    pub nodes: Vec<Node>,
}

impl Graph {
    /// Adds a node and returns its id.
    pub fn add(&mut self, name: Arc<str>, op: Op, inputs: Vec<NodeId>) -> NodeId {
        let kinds: Vec<ValueKind> = inputs.iter().map(|&i| self.nodes[i].value_kind).collect();
        let value_kind = op.value_kind(&kinds);
        self.nodes.push(Node {
            name,
            op,
            inputs,
            value_kind,
        });
        self.nodes.len() - 1
    }
}
