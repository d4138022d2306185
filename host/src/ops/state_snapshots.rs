//! `state_snapshots`: the state of an `update_state_by_key` or
//! `map_with_state` stream after every batch, as `(key, state)` (Spark's
//! `stateSnapshots`).

use super::spec::{Arity, OpDesc, Stage};
use super::state::KeyedState;
use super::{Inputs, OpContext, OpState, Operator, Step};
use crate::error::{BuildError, EngineError};

pub(crate) static STATE_SNAPSHOTS: OpDesc = OpDesc {
    name: "state_snapshots",
    spark: "stateSnapshots",
    arity: Arity::One,
    params: &[],
    shuffles: false,
    windowed: false,
    stateful: false,
    in_pipelines: true,
    result: "`(key, state)` of a state stream after every batch",
    build: |args| {
        let input = args.input(0);
        let Some(partitions) = input.state_partitions else {
            return Err(BuildError::WrongInput {
                op: "state_snapshots",
                input: input.name.clone(),
                requirement: "is not an update_state_by_key or map_with_state stream",
            });
        };
        Ok(vec![Stage::new(StateSnapshots, partitions)])
    },
};

/// `state_snapshots`: reads its input's state once the input has run.
#[derive(Debug, Clone)]
pub(crate) struct StateSnapshots;

impl Operator for StateSnapshots {
    fn desc(&self) -> &'static OpDesc {
        &STATE_SNAPSHOTS
    }

    fn describe(&self) -> String {
        String::new()
    }

    fn run(
        &self,
        _: &OpContext<'_>,
        inputs: &Inputs<'_>,
        _: Option<&dyn OpState>,
    ) -> Result<Step, EngineError> {
        let keyed = inputs.states[0]
            .and_then(|s| s.as_any().downcast_ref::<KeyedState>())
            .expect("state_snapshots reads a state stream");
        Ok(Step::output(keyed.records_after(inputs.staged[0])))
    }
}
