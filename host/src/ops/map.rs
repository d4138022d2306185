//! `map`, `flat_map`, `filter` and `map_partitions`: one plugin call per
//! partition, with what the host checks of the result.

use weir_abi::{FunctionKind, RecordBatch};

use super::spec::{function, Arity, OpDesc, Stage};
use super::{FunctionRef, Inputs, OpContext, OpState, Operator, Partitions, Step};
use crate::error::EngineError;

/// The flavours of map-kind operators. They call the same kind of plugin
/// function; they differ in what the host checks and in empty partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MapFlavor {
    /// Exactly one output record per input record.
    Map,
    /// Zero or more output records per input record.
    FlatMap,
    /// At most one output record per input record.
    Filter,
    /// Whole partition in, anything out; called even on empty partitions.
    MapPartitions,
}

const PARAMS: &[super::Param] = &[function(FunctionKind::Map)];

macro_rules! map_desc {
    ($name:ident, $op:literal, $spark:literal, $flavor:expr, $result:literal) => {
        pub(crate) static $name: OpDesc = OpDesc {
            name: $op,
            spark: $spark,
            arity: Arity::One,
            params: PARAMS,
            shuffles: false,
            windowed: false,
            stateful: false,
            in_pipelines: true,
            result: $result,
            build: |args| {
                let op = MapOp {
                    flavor: $flavor,
                    func: args.the_function(),
                };
                Ok(vec![Stage::new(op, args.input(0).partitions)])
            },
        };
    };
}

map_desc!(
    MAP,
    "map",
    "map",
    MapFlavor::Map,
    "exactly one record per record"
);
map_desc!(
    FLAT_MAP,
    "flat_map",
    "flatMap",
    MapFlavor::FlatMap,
    "zero or more records per record"
);
map_desc!(
    FILTER,
    "filter",
    "filter",
    MapFlavor::Filter,
    "the records the function returns (at most one per record)"
);
map_desc!(
    MAP_PARTITIONS,
    "map_partitions",
    "mapPartitions",
    MapFlavor::MapPartitions,
    "function over whole partitions, called even for empty ones"
);

/// A map-kind operator.
#[derive(Debug, Clone)]
pub(crate) struct MapOp {
    pub flavor: MapFlavor,
    pub func: FunctionRef,
}

impl Operator for MapOp {
    fn desc(&self) -> &'static OpDesc {
        match self.flavor {
            MapFlavor::Map => &MAP,
            MapFlavor::FlatMap => &FLAT_MAP,
            MapFlavor::Filter => &FILTER,
            MapFlavor::MapPartitions => &MAP_PARTITIONS,
        }
    }

    fn describe(&self) -> String {
        self.func.label()
    }

    fn functions_mut(&mut self) -> Vec<(&mut FunctionRef, FunctionKind)> {
        vec![(&mut self.func, FunctionKind::Map)]
    }

    fn as_map(&self) -> Option<&MapOp> {
        // `map_partitions` sees whole partitions: it cannot run in pieces.
        (self.flavor != MapFlavor::MapPartitions).then_some(self)
    }

    fn run(
        &self,
        cx: &OpContext<'_>,
        inputs: &Inputs<'_>,
        _: Option<&dyn OpState>,
    ) -> Result<Step, EngineError> {
        apply(cx, self.flavor, &self.func, inputs.batches[0]).map(Step::output)
    }
}

/// Runs the map function over every partition.
pub(crate) fn apply(
    ctx: &OpContext<'_>,
    flavor: MapFlavor,
    func: &FunctionRef,
    input: &[RecordBatch],
) -> Result<Partitions, EngineError> {
    let n = input.len();
    ctx.par_map_batches(input, |p, batch| {
        if batch.is_empty() && flavor != MapFlavor::MapPartitions {
            return Ok(RecordBatch::new());
        }
        let out = func
            .plugin
            .map(&func.function, &ctx.invocation(p, n), batch)?;
        check_output(ctx, flavor, func, out.len(), batch.len(), p)?;
        Ok(out)
    })
}

/// What a map flavour promises about its output: `got` records for
/// `records` input records of partition `p` (or of a run of it: a record
/// maps alone, so a run obeys what its partition would).
pub(crate) fn check_output(
    ctx: &OpContext<'_>,
    flavor: MapFlavor,
    func: &FunctionRef,
    got: usize,
    records: usize,
    p: usize,
) -> Result<(), EngineError> {
    match flavor {
        MapFlavor::Map if got != records => Err(ctx.contract(format!(
            "`{}` returned {got} records for {records} input records in partition {p}; map must return exactly one per record (use flat_map for zero or more)",
            func.label(),
        ))),
        MapFlavor::Filter if got > records => Err(ctx.contract(format!(
            "`{}` returned {got} records for {records} input records in partition {p}; filter returns at most one per record",
            func.label(),
        ))),
        _ => Ok(()),
    }
}
