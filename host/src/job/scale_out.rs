//! Scaling out: several `weir run` processes share one job through a
//! Kafka consumer group.
//!
//! Each partition of the input topic is a *task* with a timeline of its
//! own: its own copy of the graph and its state, its own batch numbers,
//! its history in the changelog topic (see [`crate::kafka::changelog`]).
//! The group coordinator decides which instance runs which tasks; an
//! instance follows its assignments between batches. Every batch of an
//! instance runs its tasks side by side, each a pure function of its state
//! and its logged offset range, so a task computes the same whichever
//! instance runs it, and a batch replayed by a new owner writes what the
//! old one wrote.
//!
//! Per batch: the ranges of the owned partitions are logged to the
//! changelog (and acknowledged) before any output of the batch is written;
//! once the outputs are written, each task's state follows. A task taken over is restored from
//! its newest state, and the ranges logged after it are run again first
//! (their outputs were perhaps written already: the idempotent Kafka
//! output writes only what is missing).
//!
//! Nothing regroups across tasks: [`check_graph`] refuses pipelines whose
//! results would be per-instance partial ones.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_abi::RecordBatch;

use super::scheduler::{BatchLoop, Completion, Run};
use crate::checkpoint::Snapshot;
use crate::error::EngineError;
use crate::graph::executor::{Executor, OperatorStats, StateSize};
use crate::graph::Graph;
use crate::kafka::changelog::{Changelog, Entry, Fingerprint, RangeEntry, StateEntry};
use crate::kafka::group::{Change, Membership};
use crate::kafka::{key_hash, KafkaEndpoint};
use crate::ops::{total_records, Partitions};
use crate::output::stats::BatchStats;
use crate::output::TaskPart;
use crate::receiver::kafka::{KafkaSource, OffsetRange};
use crate::receiver::{blocks_to_partitions, Source, SourceInput};

/// How a job scales out, as `[scale_out]` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleOutConfig {
    /// The compacted changelog topic (one partition per input partition).
    pub changelog: String,
    /// This instance's name (in logs, the changelog and the group).
    pub instance: String,
    /// The partitioner the input topic is keyed with (`murmur2`,
    /// `consistent` or `fnv1a`), checked on every record when the job
    /// keeps keyed state.
    pub partitioner: String,
}

/// The default instance name: host and process id.
pub fn default_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "weir".into());
    format!("{host}-{}", std::process::id())
}

/// Operators whose output keeps its input's keys (and partitioning).
const KEEP_KEYS: &[&str] = &[
    "filter",
    "window",
    "union",
    "repartition",
    "state_snapshots",
];
/// Operators that group by key: their input must still be keyed as the
/// topic is; their output keeps the keys.
const BY_KEY: &[&str] = &[
    "reduce_by_key",
    "group_by_key",
    "join",
    "left_outer_join",
    "right_outer_join",
    "full_outer_join",
    "cogroup",
    "update_state_by_key",
    "reduce_by_key_and_window",
];
/// Operators that group by key but emit other keys.
const BY_KEY_NEW_KEYS: &[&str] = &["map_with_state"];
/// Operators over every record of the batch.
const GLOBAL: &[&str] = &[
    "count",
    "reduce",
    "count_by_value",
    "count_by_window",
    "reduce_by_window",
    "count_by_value_and_window",
    "top",
];

/// Refuses a graph that, run as one task per input partition, would give
/// per-instance partial results where the pipeline asks for global ones.
/// Returns whether it groups by key (then every record's key must hash to
/// the partition it is in).
pub(crate) fn check_graph(graph: &Graph) -> Result<bool, String> {
    let mut keyed = vec![false; graph.nodes.len()];
    let mut groups = false;
    for (id, node) in graph.nodes.iter().enumerate() {
        let op = node.op_name();
        let inputs_keyed = node.inputs.iter().all(|&i| keyed[i]);
        let changed_by = || {
            node.inputs
                .iter()
                .find(|&&i| !keyed[i])
                .map(|&i| {
                    let n = &graph.nodes[i];
                    format!("stream `{}` ({})", n.name, n.op_name())
                })
                .unwrap_or_default()
        };
        keyed[id] = match op {
            "source" => true,
            _ if GLOBAL.contains(&op) => {
                return Err(format!(
                    "stream `{}` ({op}) aggregates every record of the batch: scaled out, each instance \
                     would compute it over its own partitions only. Compute it in a job that is not \
                     scaled out, reading this job's output topic",
                    node.name
                ))
            }
            _ if BY_KEY.contains(&op) || BY_KEY_NEW_KEYS.contains(&op) => {
                if !inputs_keyed {
                    return Err(format!(
                        "stream `{}` ({op}) groups by a key that {} may have changed: scaled out, each \
                         instance would group only the records of its own partitions. Regroup through \
                         Kafka: write that stream to a topic keyed by the new key and read it in a \
                         second pipeline (README: Scaling out)",
                        node.name,
                        changed_by()
                    ));
                }
                groups = true;
                BY_KEY.contains(&op)
            }
            _ if KEEP_KEYS.contains(&op) => inputs_keyed,
            _ => false,
        };
    }
    Ok(groups)
}

/// One input partition's task, as this instance runs it.
struct Task {
    executor: Executor,
    /// Its last batch number (0: none yet).
    seq: u64,
    /// Its next input offset.
    next: i64,
    /// Where this instance's next changelog write must land; anywhere
    /// else means another instance wrote there.
    expected: i64,
    /// Its state as last written to the changelog.
    last_nodes: Vec<(String, Snapshot)>,
    /// The time of its last logged batch: its next batch must be later,
    /// whichever instance runs it.
    last_t: Option<i64>,
}

/// Every node's batch of one task.
type TaskValues = Vec<Option<Arc<Partitions>>>;

/// One task's part of a batch.
struct TaskBatch<'a> {
    partition: i32,
    task: &'a mut Task,
    block: RecordBatch,
    /// Replayed: the logged batch.
    logged: Option<RangeEntry>,
    /// Live: the offsets read, `[from, until)`.
    range: Option<(i64, i64)>,
}

/// The scaled-out part of a job.
pub(crate) struct ScaleOut {
    config: ScaleOutConfig,
    endpoint: KafkaEndpoint,
    group: String,
    topic: String,
    fingerprint: Fingerprint,
    /// Whether records' keys must hash to their partition.
    keyed: bool,
    /// Partitions of the input topic, once known.
    partitions: i32,
    membership: Option<Membership>,
    changelog: Option<Changelog>,
    tasks: BTreeMap<i32, Task>,
    /// Tasks revoked, kept in case the next assignment gives them back
    /// (the eager protocol revokes everything on every rebalance).
    parked: BTreeMap<i32, Task>,
    /// This process's claims: the instance name, the process id and the
    /// time it started.
    token: String,
}

impl std::fmt::Debug for ScaleOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScaleOut")
            .field("instance", &self.config.instance)
            .field("tasks", &self.tasks.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ScaleOut {
    /// The scaled-out part of a job reading `topic` of `endpoint` in
    /// `group`.
    pub(crate) fn new(
        config: ScaleOutConfig,
        endpoint: KafkaEndpoint,
        group: String,
        topic: String,
        fingerprint: Fingerprint,
        keyed: bool,
    ) -> ScaleOut {
        let token = format!(
            "{}/{}/{}",
            config.instance,
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        ScaleOut {
            config,
            endpoint,
            group,
            topic,
            fingerprint,
            keyed,
            partitions: 0,
            membership: None,
            changelog: None,
            tasks: BTreeMap::new(),
            parked: BTreeMap::new(),
            token,
        }
    }

    fn error(&self, message: String) -> EngineError {
        EngineError::Kafka {
            what: format!(
                "scaled-out job `{}` (instance `{}`)",
                self.fingerprint.job, self.config.instance
            ),
            message,
        }
    }

    fn changelog(&self) -> &Changelog {
        self.changelog.as_ref().expect("begun")
    }

    /// After a write of partition `p` landed where this instance did not
    /// expect (another instance wrote there too): whether the newest claim
    /// is still this process's, in which case it keeps the partition (the
    /// other write was a late one of an earlier owner).
    fn still_mine(&self, p: i32) -> Result<bool, EngineError> {
        let (claim, _) = self
            .changelog()
            .newest_claim(p)
            .map_err(|e| self.error(format!("changelog `{}`: {e}", self.config.changelog)))?;
        let mine = claim.as_deref() == Some(self.token.as_str());
        if !mine {
            tracing::warn!(instance = %self.config.instance, partition = p, "another instance claimed this partition after this one: it owns it now; this instance gives it up");
        }
        Ok(mine)
    }

    /// Refuses to join a group whose job differs from this one.
    fn check_fingerprint(
        &self,
        partition: i32,
        owner: &(String, Fingerprint),
    ) -> Result<(), EngineError> {
        let differences = self.fingerprint.differences(&owner.1);
        if differences.is_empty() {
            return Ok(());
        }
        Err(self.error(format!(
            "this instance's job differs from the group's (changelog `{}` partition {partition}, written by \
             instance `{}`):\n{}\nrun every instance with the same pipeline and modules",
            self.config.changelog,
            owner.0,
            differences
                .iter()
                .map(|d| format!("  - {d}"))
                .collect::<Vec<_>>()
                .join("\n")
        )))
    }
}

/// What the batch loop's source is, scaled out.
fn kafka_source(lp: &mut BatchLoop) -> &mut KafkaSource {
    lp.sources[0]
        .as_kafka()
        .expect("a scaled-out job reads one Kafka source")
}

impl BatchLoop {
    /// Scaled out: checks the changelog and the group's job, and joins the
    /// group.
    pub(crate) fn begin_scaled(&mut self) -> Result<(), EngineError> {
        let mut so = self.scale_out.take().expect("scaled out");
        let result = (|| {
            let source = kafka_source(self);
            source.own_none();
            so.partitions = source.partition_count()?;
            let changelog =
                Changelog::open(&so.endpoint, &so.config.changelog, &so.topic, so.partitions)
                    .map_err(|e| so.error(format!("changelog `{}`: {e}", so.config.changelog)))?;
            // Every partition's newest writer must run this job.
            for p in 0..so.partitions {
                let history = changelog
                    .history(p)
                    .map_err(|e| so.error(format!("changelog `{}`: {e}", so.config.changelog)))?;
                if let Some(owner) = &history.owner {
                    so.check_fingerprint(p, owner)?;
                }
            }
            so.changelog = Some(changelog);
            so.membership = Some(
                Membership::join(&so.endpoint, &so.group, &so.topic, &so.config.instance)
                    .map_err(|e| so.error(e))?,
            );
            tracing::info!(instance = %so.config.instance, group = %so.group, topic = %so.topic, partitions = so.partitions, "joined the group");
            Ok(())
        })();
        self.scale_out = Some(so);
        self.report_owned();
        result
    }

    /// Scaled out: leaves the group (every batch's state is in the
    /// changelog already).
    pub(crate) fn end_scaled(&mut self) {
        if let Some(so) = &mut self.scale_out {
            if let Some(m) = so.membership.take() {
                m.leave();
                tracing::info!(instance = %so.config.instance, "left the group");
            }
        }
    }

    /// Scaled out: follows the group's changes, then runs batch `t` of
    /// every task this instance owns.
    /// Returns the earliest time the next batch may have: after the last
    /// logged batch of every task (a partition taken over from an instance
    /// whose clock ran ahead never runs a batch at an earlier time).
    pub(crate) fn scaled_batch(&mut self, t: i64, run: &mut Run) -> Result<i64, EngineError> {
        let mut so = self.scale_out.take().expect("scaled out");
        let result = self.follow_group(&mut so, run).and_then(|()| {
            let latest = so.tasks.values().filter_map(|task| task.last_t).max();
            if let Some(latest) = latest.filter(|l| *l >= t) {
                tracing::debug!(
                    batch_time_ms = t,
                    latest,
                    "a task ran later already; this batch waits"
                );
                return Ok(latest + self.interval_ms);
            }
            if !so.tasks.is_empty() {
                self.run_tasks(&mut so, t, run)?;
            }
            Ok(t + self.interval_ms)
        });
        self.scale_out = Some(so);
        result
    }

    fn follow_group(&mut self, so: &mut ScaleOut, run: &mut Run) -> Result<(), EngineError> {
        let membership = so.membership.as_ref().expect("begun");
        let mut changes = membership.poll(Duration::ZERO);
        // After a revocation the new assignment follows within moments:
        // wait for it rather than run a batch of nothing.
        if matches!(changes.last(), Some(Change::Revoked(_))) {
            changes.extend(membership.poll(Duration::from_secs(3)));
        }
        if changes.is_empty() {
            return Ok(());
        }
        for change in changes {
            match change {
                Change::Revoked(ps) => {
                    for p in ps {
                        if let Some(task) = so.tasks.remove(&p) {
                            kafka_source(self).release(p);
                            so.parked.insert(p, task);
                        }
                    }
                }
                Change::Assigned(ps) => {
                    let new: Vec<i32> = ps
                        .into_iter()
                        .filter(|p| !so.tasks.contains_key(p))
                        .collect();
                    self.adopt(so, &new, run, 0)?;
                    // Parked tasks not given back belong to others now.
                    so.parked.clear();
                }
            }
        }
        self.report_owned_of(so);
        Ok(())
    }

    /// Takes partitions `ps` on: a parked task if nobody wrote to its
    /// changelog since, else the partition's newest state and the batches
    /// logged after it, run again. Every new owner claims its partitions
    /// in the changelog first.
    fn adopt(
        &mut self,
        so: &mut ScaleOut,
        ps: &[i32],
        run: &mut Run,
        attempt: u32,
    ) -> Result<(), EngineError> {
        if ps.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let changelog_error = |so: &ScaleOut, e: String| {
            so.error(format!("changelog `{}`: {e}", so.config.changelog))
        };
        let mut restored = Vec::new();
        for &p in ps {
            if let Some(task) = so.parked.remove(&p) {
                let end = so.changelog().end(p).map_err(|e| changelog_error(so, e))?;
                if end == task.expected {
                    kafka_source(self).own(p, task.next);
                    so.tasks.insert(p, task);
                    continue;
                }
            }
            let history = so
                .changelog()
                .history(p)
                .map_err(|e| changelog_error(so, e))?;
            if let Some(owner) = &history.owner {
                so.check_fingerprint(p, owner)?;
            }
            let mut task = Task {
                executor: self.executor.fresh(),
                seq: 0,
                next: 0,
                expected: history.end,
                last_nodes: Vec::new(),
                last_t: None,
            };
            match &history.state {
                Some(state) => {
                    task.executor
                        .restore(state.zero_ms, &state.nodes, false)
                        .map_err(|e| {
                            so.error(format!("partition {p}: cannot restore its state: {e}"))
                        })?;
                    task.seq = state.seq;
                    task.next = state.next;
                    task.last_nodes = state.nodes.clone();
                    task.last_t = Some(state.batch_time_ms);
                }
                None => {
                    task.next = match history.claimed_next {
                        Some(next) => next,
                        None => kafka_source(self).start_offset(p)?,
                    };
                    task.last_nodes = task.executor.snapshots();
                }
            }
            restored.push((p, task, history));
        }
        if restored.is_empty() {
            return Ok(());
        }
        let claims: Vec<(i32, Entry)> = restored
            .iter()
            .map(|(p, task, history)| {
                // Where it continues once the logged batches are run again.
                let next = history.ranges.last().map_or(task.next, |r| r.until);
                (
                    *p,
                    Entry::Claim {
                        instance: so.config.instance.clone(),
                        fingerprint: so.fingerprint.clone(),
                        next,
                        token: so.token.clone(),
                    },
                )
            })
            .collect();
        let offsets = so
            .changelog()
            .append(&claims)
            .map_err(|e| changelog_error(so, e))?;
        let mut states = Vec::new();
        let mut again = Vec::new();
        for ((p, mut task, history), at) in restored.into_iter().zip(offsets) {
            if at != task.expected {
                // Another instance wrote after the history was read: read
                // it again (and claim again) if the partition is still ours.
                if attempt < 3 && so.still_mine(p)? {
                    again.push(p);
                }
                continue;
            }
            task.expected = at + 1;
            for range in &history.ranges {
                self.replay_range(so, p, &mut task, range, run)?;
            }
            tracing::info!(
                instance = %so.config.instance,
                partition = p,
                from_batch = task.seq,
                next_offset = task.next,
                replayed_batches = history.ranges.len(),
                previous_owner = history.owner.as_ref().map(|o| o.0.as_str()).unwrap_or("none"),
                state_from = history.state.as_ref().map_or("none", |s| s.instance.as_str()),
                ms = started.elapsed().as_millis() as u64,
                "partition taken over"
            );
            if let Some(last) = history.ranges.last() {
                states.push((p, state_entry(so, &task, last.batch_time_ms)));
            }
            kafka_source(self).own(p, task.next);
            so.tasks.insert(p, task);
        }
        self.append_states(so, states)?;
        self.adopt(so, &again, run, attempt + 1)
    }

    /// Runs a logged batch of partition `p` again (its outputs may be
    /// written in part).
    fn replay_range(
        &mut self,
        so: &ScaleOut,
        p: i32,
        task: &mut Task,
        range: &RangeEntry,
        run: &mut Run,
    ) -> Result<(), EngineError> {
        let started = (self.clock.now_ms(), Instant::now());
        let input = SourceInput::Kafka(vec![OffsetRange {
            topic: so.topic.clone(),
            partition: p,
            from: range.from,
            until: range.until,
        }]);
        let blocks = kafka_source(self)
            .replay(&input, &Default::default())
            .map_err(|e| {
                so.error(format!(
                    "partition {p}, batch {} ms: {e}",
                    range.batch_time_ms
                ))
            })?;
        task.executor.set_zero(range.zero_ms);
        let t = range.batch_time_ms;
        let block = blocks.into_iter().next().unwrap_or_default();
        let records = block.len() as u64;
        self.emit_started(t, true);
        self.run_task_batch(
            so,
            t,
            vec![TaskBatch {
                partition: p,
                task,
                block,
                logged: Some(range.clone()),
                range: None,
            }],
        )?;
        task.seq = range.seq;
        task.next = range.until;
        task.last_t = Some(t);
        let done = Completion {
            stats: task_stats(t, records, started),
            replayed: true,
            source_records: vec![records],
            operators: task.executor.operator_stats().to_vec(),
            state: task.executor.state_sizes(),
        };
        self.completed(done, run);
        Ok(())
    }

    /// Runs batch `t` of every owned task.
    fn run_tasks(&mut self, so: &mut ScaleOut, t: i64, run: &mut Run) -> Result<(), EngineError> {
        let started = (self.clock.now_ms(), Instant::now());
        self.emit_started(t, false);
        let (input, blocks) = self.sources[0].next_batch(t)?;
        let SourceInput::Kafka(ranges) = input else {
            unreachable!("a Kafka source cuts offset ranges")
        };
        let records: u64 = blocks.iter().map(|b| b.len() as u64).sum();
        let mut owned = std::mem::take(&mut so.tasks);
        let ran = {
            let mut by_partition: BTreeMap<i32, (OffsetRange, RecordBatch)> = ranges
                .into_iter()
                .zip(blocks)
                .map(|(r, b)| (r.partition, (r, b)))
                .collect();
            let batch = owned
                .iter_mut()
                .filter_map(|(p, task)| {
                    let (range, block) = by_partition.remove(p)?;
                    Some(TaskBatch {
                        partition: *p,
                        task,
                        block,
                        logged: None,
                        range: Some((range.from, range.until)),
                    })
                })
                .collect();
            self.run_task_batch(so, t, batch)
        };
        so.tasks = owned;
        let (logged, lost) = ran?;
        for p in &lost {
            so.tasks.remove(p);
            kafka_source(self).release(*p);
        }
        // The state of every task whose batch was logged.
        let states: Vec<(i32, Entry)> = logged
            .iter()
            .filter_map(|p| Some((*p, state_entry(so, so.tasks.get(p)?, t))))
            .collect();
        self.append_states(so, states)?;
        // Partitions lost to another instance are no longer reported.
        self.report_owned_of(so);
        let positions: Vec<(i32, i64)> = so.tasks.iter().map(|(p, t)| (*p, t.next)).collect();
        if let Some(m) = &so.membership {
            m.commit(&positions);
        }
        let ran_now = so
            .tasks
            .values()
            .map(|task| &task.executor)
            .filter(|executor| executor.operator_stats_at() == Some(t));
        let (operators, state) = merged_detail(ran_now);
        let done = Completion {
            stats: task_stats(t, records, started),
            replayed: false,
            source_records: vec![records],
            operators,
            state,
        };
        self.completed(done, run);
        Ok(())
    }

    /// Writes tasks' states and notes where their next writes land; a
    /// task another instance claimed since is given up.
    fn append_states(
        &mut self,
        so: &mut ScaleOut,
        states: Vec<(i32, Entry)>,
    ) -> Result<(), EngineError> {
        if states.is_empty() {
            return Ok(());
        }
        let offsets = so
            .changelog()
            .append(&states)
            .map_err(|e| so.error(format!("changelog `{}`: {e}", so.config.changelog)))?;
        for ((p, entry), at) in states.into_iter().zip(offsets) {
            let Some(expected) = so.tasks.get(&p).map(|t| t.expected) else {
                continue;
            };
            if at != expected && !so.still_mine(p)? {
                so.tasks.remove(&p);
                kafka_source(self).release(p);
                continue;
            }
            let Some(task) = so.tasks.get_mut(&p) else {
                continue;
            };
            task.expected = at + 1;
            if let Entry::State(state) = entry {
                task.last_nodes = state.nodes;
            }
        }
        Ok(())
    }

    /// Runs batch `t` of `tasks` side by side and commits their state;
    /// logs the range of every live task whose batch did something (read
    /// records, wrote output or changed its state: a batch that did
    /// nothing need not be replayed, so it is not logged), then writes the
    /// outputs of the logged and replayed ones together. Returns the live
    /// tasks logged and those lost to another instance.
    fn run_task_batch(
        &mut self,
        so: &ScaleOut,
        t: i64,
        mut tasks: Vec<TaskBatch<'_>>,
    ) -> Result<(Vec<i32>, Vec<i32>), EngineError> {
        let values = self.compute_tasks(so, t, &mut tasks)?;
        let (write, logged, lost) = self.log_ranges(so, t, &mut tasks, &values)?;
        for (node, output) in &mut self.outputs {
            let parts: Vec<TaskPart<'_>> = tasks
                .iter()
                .zip(&values)
                .zip(&write)
                .filter(|(_, w)| **w)
                .filter_map(|((tb, v), _)| {
                    Some(TaskPart {
                        task: tb.partition,
                        parts: v[*node].as_deref()?,
                        replayed: tb.logged.is_some(),
                    })
                })
                .collect();
            if !parts.is_empty() {
                output.write_tasks(t, &parts)?;
            }
        }
        Ok((logged, lost))
    }

    /// Computes batch `t` of every task, on a thread each (their plugin
    /// calls share the worker pool), and commits their state.
    fn compute_tasks(
        &self,
        so: &ScaleOut,
        t: i64,
        tasks: &mut [TaskBatch<'_>],
    ) -> Result<Vec<TaskValues>, EngineError> {
        if so.keyed {
            for tb in tasks.iter() {
                check_keys(so, tb.partition, &tb.block)?;
            }
        }
        let partitions = self.partitions;
        let values: Vec<Result<TaskValues, EngineError>> = std::thread::scope(|s| {
            let handles: Vec<_> = tasks
                .iter_mut()
                .map(|tb| {
                    let input = Some(Arc::new(blocks_to_partitions(
                        vec![tb.block.clone()],
                        partitions,
                    )));
                    let executor = &mut tb.task.executor;
                    s.spawn(move || executor.run_batch(t, &[input]))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(so.error("a task's batch panicked".into())))
                })
                .collect()
        });
        let values: Vec<TaskValues> = values.into_iter().collect::<Result<_, _>>()?;
        if let Some(limit) = self.max_state_bytes {
            let bytes: u64 = tasks
                .iter()
                .map(|tb| tb.task.executor.state_bytes_after())
                .sum();
            if bytes > limit {
                return Err(EngineError::StateLimit {
                    job: self.executor.job().clone(),
                    batch_time_ms: t,
                    bytes,
                    limit,
                });
            }
        }
        for tb in tasks.iter_mut() {
            tb.task.executor.commit();
        }
        weir_abi::recycle::trim();
        Ok(values)
    }

    /// Logs the range of every live task whose batch did something,
    /// before any output is written. Returns which tasks' outputs to
    /// write, the live tasks logged, and those lost to another instance.
    fn log_ranges(
        &self,
        so: &ScaleOut,
        t: i64,
        tasks: &mut [TaskBatch<'_>],
        values: &[TaskValues],
    ) -> Result<(Vec<bool>, Vec<i32>, Vec<i32>), EngineError> {
        let mut entries = Vec::new();
        let mut write = vec![false; tasks.len()];
        for (i, (tb, v)) in tasks.iter_mut().zip(values).enumerate() {
            if tb.logged.is_some() {
                write[i] = true;
                continue;
            }
            let output = self
                .outputs
                .iter()
                .any(|(node, _)| v[*node].as_deref().is_some_and(|p| total_records(p) > 0));
            let acted = !tb.block.is_empty()
                || output
                || tb.task.executor.snapshots() != tb.task.last_nodes;
            let (from, until) = tb.range.expect("a live batch has a range");
            tb.task.next = until;
            if acted {
                write[i] = true;
                let range = RangeEntry {
                    seq: tb.task.seq + 1,
                    batch_time_ms: t,
                    zero_ms: tb.task.executor.zero_ms().unwrap_or(t - self.interval_ms),
                    from,
                    until,
                    instance: so.config.instance.clone(),
                };
                entries.push((i, (tb.partition, Entry::Range(range))));
            }
        }
        let (mut logged, mut lost) = (Vec::new(), Vec::new());
        if entries.is_empty() {
            return Ok((write, logged, lost));
        }
        let to_write: Vec<(i32, Entry)> = entries.iter().map(|(_, e)| e.clone()).collect();
        let offsets = so
            .changelog()
            .append(&to_write)
            .map_err(|e| so.error(format!("changelog `{}`: {e}", so.config.changelog)))?;
        for ((i, _), at) in entries.iter().zip(offsets) {
            let tb = &mut tasks[*i];
            if at != tb.task.expected && !so.still_mine(tb.partition)? {
                write[*i] = false;
                lost.push(tb.partition);
                continue;
            }
            tb.task.expected = at + 1;
            tb.task.seq += 1;
            tb.task.last_t = Some(t);
            logged.push(tb.partition);
        }
        Ok((write, logged, lost))
    }

    fn report_owned(&self) {
        if let Some(so) = &self.scale_out {
            self.report_owned_of(so);
        }
    }

    /// Says which partitions this instance owns: in the status, the log
    /// and on stderr.
    fn report_owned_of(&self, so: &ScaleOut) {
        let owned: Vec<i32> = so.tasks.keys().copied().collect();
        let mut status = self.status.lock().expect("status poisoned");
        if status.partitions.as_ref() == Some(&owned) {
            return;
        }
        status.partitions = Some(owned.clone());
        drop(status);
        let list = owned
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        tracing::info!(instance = %so.config.instance, topic = %so.topic, partitions = %list, "owned partitions");
        eprintln!(
            "[weir] instance {} owns partitions [{list}] of {} ({} in all)",
            so.config.instance, so.topic, so.partitions
        );
    }
}

/// Refuses records whose key the topic's partitioner puts elsewhere: the
/// keyed state of a scaled-out job is per partition, so a key must always
/// be in the same one.
fn check_keys(so: &ScaleOut, p: i32, block: &RecordBatch) -> Result<(), EngineError> {
    for (key, _) in block.iter() {
        let home = (!key.is_empty()).then(|| key_hash(&so.config.partitioner, key, so.partitions));
        if home != Some(p) {
            let shown = String::from_utf8_lossy(&key[..key.len().min(40)]).into_owned();
            return Err(so.error(format!(
                "partition {p} of `{}` holds a record {}: a scaled-out job that groups by key needs its \
                 input keyed by that key with the `{}` partitioner (weir's Kafka output and the Java \
                 client do this by default)",
                so.topic,
                match home {
                    None => "without a key".to_string(),
                    Some(h) => format!("keyed `{shown}`, which {} puts in partition {h}", so.config.partitioner),
                },
                so.config.partitioner
            )));
        }
    }
    Ok(())
}

/// A task's state entry after its batch at `t`.
fn state_entry(so: &ScaleOut, task: &Task, t: i64) -> Entry {
    Entry::State(Box::new(StateEntry {
        seq: task.seq,
        batch_time_ms: t,
        zero_ms: task.executor.zero_ms().unwrap_or(0),
        next: task.next,
        nodes: task.executor.snapshots(),
        instance: so.config.instance.clone(),
        fingerprint: so.fingerprint.clone(),
    }))
}

/// The operators' work and state of every task, added up per operator.
fn merged_detail<'a>(
    executors: impl Iterator<Item = &'a Executor>,
) -> (Vec<OperatorStats>, Vec<StateSize>) {
    let mut operators: Vec<OperatorStats> = Vec::new();
    let mut state: Vec<StateSize> = Vec::new();
    for executor in executors {
        for op in executor.operator_stats() {
            match operators.iter_mut().find(|o| o.name == op.name) {
                Some(o) => {
                    o.records_in += op.records_in;
                    o.records_out += op.records_out;
                    o.millis = o.millis.max(op.millis);
                    o.calls += op.calls;
                    o.fuel += op.fuel;
                    o.failed_calls += op.failed_calls;
                }
                None => operators.push(op.clone()),
            }
        }
        for s in executor.state_sizes() {
            match state.iter_mut().find(|o| o.name == s.name) {
                Some(o) => {
                    o.bytes += s.bytes;
                    o.keys = o.keys.zip(s.keys).map(|(a, b)| a + b);
                }
                None => state.push(s),
            }
        }
    }
    (operators, state)
}

fn task_stats(t: i64, records: u64, (start_ms, started): (i64, Instant)) -> BatchStats {
    let processing_ms = started.elapsed().as_secs_f64() * 1e3;
    let scheduling_delay_ms = (start_ms - t).max(0) as f64;
    BatchStats {
        batch_time_ms: t,
        input_records: records,
        processing_ms,
        scheduling_delay_ms,
        total_delay_ms: scheduling_delay_ms + processing_ms,
    }
}
