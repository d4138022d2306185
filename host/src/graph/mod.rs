//! The dataflow graph: streams (nodes) and the operators that make them,
//! and the [`executor::Executor`] that runs one batch through it.

pub(crate) mod executor;

use std::sync::Arc;

use weir_abi::FunctionKind;

use crate::ops::{FunctionRef, Operator, ValueKind};
use crate::wasm::Plugin;

/// Index of a stream in its graph.
pub type NodeId = usize;

/// What a node computes.
#[derive(Debug)]
pub(crate) enum NodeKind {
    /// An input stream; the index is into the job's sources.
    Source(usize),
    /// An operator over its inputs.
    Op(Box<dyn Operator>),
}

/// One stream of the graph.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// The stream's name (the operator name in errors).
    pub name: Arc<str>,
    /// What it computes.
    pub kind: NodeKind,
    /// The streams it reads, in order (left before right for joins).
    pub inputs: Vec<NodeId>,
    /// How its values render.
    pub value_kind: ValueKind,
    /// The node has a batch at times `zero + k·slide_ms` only (the batch
    /// interval, or a window's slide).
    pub slide_ms: i64,
    /// Its partitions.
    pub partitions: usize,
}

impl Clone for NodeKind {
    fn clone(&self) -> Self {
        match self {
            NodeKind::Source(i) => NodeKind::Source(*i),
            NodeKind::Op(op) => NodeKind::Op(op.clone_box()),
        }
    }
}

impl Node {
    /// The operator name as the pipeline describes it.
    pub(crate) fn op_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Source(_) => "source",
            NodeKind::Op(op) => op.desc().name,
        }
    }

    /// The operator, unless the node is a source.
    pub(crate) fn op(&self) -> Option<&dyn Operator> {
        match &self.kind {
            NodeKind::Source(_) => None,
            NodeKind::Op(op) => Some(&**op),
        }
    }
}

/// Nodes in creation order, which is a topological order: a node can only
/// read nodes created before it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Graph {
    /// The nodes.
    pub nodes: Vec<Node>,
}

impl Graph {
    /// Every plugin function the graph calls, with the kind it is called as.
    pub(crate) fn function_refs_mut(&mut self) -> Vec<(&mut FunctionRef, FunctionKind)> {
        self.nodes
            .iter_mut()
            .filter_map(|n| match &mut n.kind {
                NodeKind::Op(op) => Some(op.functions_mut()),
                NodeKind::Source(_) => None,
            })
            .flatten()
            .collect()
    }

    /// The plugins the graph runs now, by name.
    pub(crate) fn plugins(&mut self) -> std::collections::BTreeMap<String, Plugin> {
        self.function_refs_mut()
            .into_iter()
            .map(|(f, _)| (f.plugin.name().to_string(), f.plugin.clone()))
            .collect()
    }

    /// One line per stream, `name = op(inputs; parameters)`: what a
    /// checkpoint records to recognise its pipeline. `sources` describes
    /// each source by index.
    pub(crate) fn describe(&self, sources: &[String]) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| {
                let inputs: Vec<&str> = n.inputs.iter().map(|&i| &*self.nodes[i].name).collect();
                let params = match &n.kind {
                    NodeKind::Source(i) => sources.get(*i).cloned().unwrap_or_default(),
                    NodeKind::Op(op) => op.describe(),
                };
                format!(
                    "{} = {}({}; {params})",
                    n.name,
                    n.op_name(),
                    inputs.join(", ")
                )
            })
            .collect()
    }

    /// Adds a node and returns its id.
    pub(crate) fn add(
        &mut self,
        name: Arc<str>,
        kind: NodeKind,
        inputs: Vec<NodeId>,
        slide_ms: i64,
        partitions: usize,
    ) -> NodeId {
        let kinds: Vec<ValueKind> = inputs.iter().map(|&i| self.nodes[i].value_kind).collect();
        let value_kind = match &kind {
            NodeKind::Source(_) => ValueKind::Opaque,
            NodeKind::Op(op) => op.value_kind(&kinds),
        };
        self.nodes.push(Node {
            name,
            kind,
            inputs,
            value_kind,
            slide_ms,
            partitions,
        });
        self.nodes.len() - 1
    }
}
