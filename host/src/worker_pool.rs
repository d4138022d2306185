//! The process-wide elastic worker pool that every job's partition work runs on.
//!
//! One [`WorkerPool`] serves all jobs of a process, so a thousand idle jobs hold no
//! thread at all, yet no job's batch ever waits for another job's tasks: the pool is
//! *elastic*, like Java's cached thread pool. A job calls [`WorkerPool::run`] with its
//! `share` (its `workers` limit); the calling thread (the job's batch thread) works on
//! the tasks itself and borrows up to `share - 1` pool threads for the duration of the
//! call, taking idle ones first and spawning new ones when none is idle. A borrowed
//! thread belongs to that call alone until it runs out of tasks, so a tenant whose
//! plugin spins for seconds only ever occupies its own threads; everyone else gets
//! theirs from the idle list or from a fresh spawn, and competes for CPU only through
//! the OS scheduler. With `share == 1` everything runs inline on the caller.
//!
//! Threads that have finished park on an idle list (most recently parked reused first,
//! at most `max_idle` of them; any beyond exit right away) and exit after `idle_timeout`
//! without work, or when the last [`WorkerPool`] handle is dropped. Tasks may borrow from
//! the caller's stack: the borrowing job is handed to a long-lived thread with its
//! lifetime erased, which is sound because `run` cannot return or unwind before a latch
//! counts every handed-out job as finished or dropped (see the one `unsafe` block, in
//! `run`). A borrowed thread re-parks itself *before* it releases that latch, so when
//! `run` returns its helpers are idle again and the job's next batch reuses them.

use std::any::Any;
use std::fmt;
use std::io;
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// A snapshot of the threads of a [`WorkerPool`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Pool threads alive: idle ones plus those lent to a [`WorkerPool::run`] call.
    /// Callers' own threads are not counted.
    pub live: usize,
    /// Pool threads parked on the idle list, ready to be lent.
    pub idle: usize,
    /// Threads spawned since the pool was created.
    pub spawned_total: u64,
}

/// The process-wide elastic worker pool (see the module documentation).
///
/// Cheap to clone: clones share one pool. When the last clone is dropped, idle threads
/// exit.
#[derive(Clone)]
pub struct WorkerPool {
    handle: Arc<Handle>,
}

impl WorkerPool {
    /// A pool without threads yet. Parked threads exit after `idle_timeout` without
    /// work, and at most `max_idle` are kept parked (`0`: a thread exits as soon as
    /// the call it was lent to no longer needs it).
    pub fn new(idle_timeout: Duration, max_idle: usize) -> Self {
        let shared = Shared {
            state: Mutex::new(State {
                idle: Vec::new(),
                handoff: Vec::new(),
                live: 0,
                spawned_total: 0,
                next_id: 1,
                shutdown: false,
            }),
            idle_timeout,
            max_idle,
            #[cfg(test)]
            fail_spawns: AtomicBool::new(false),
        };
        WorkerPool {
            handle: Arc::new(Handle {
                shared: Arc::new(shared),
            }),
        }
    }

    /// Runs `f(i)` for every index in `order`, with at most `share` tasks at once, and
    /// returns the results in index order.
    ///
    /// `order` is a permutation of `0..n` giving the order in which tasks *start*
    /// (callers pass the largest first). The calling thread runs tasks itself and
    /// borrows up to `share - 1` pool threads (spawning new ones if none is idle; if
    /// spawning fails, it goes on with fewer); each of them takes the next index as
    /// soon as it is free. A `share` of `0` counts as `1`: everything runs inline on
    /// the calling thread, and no pool thread is involved.
    ///
    /// After a task fails, no new task starts, and the error of the lowest failed
    /// index is returned. If a task panics, no new task starts either, and the panic
    /// is resumed on the calling thread once every started task has finished; the pool
    /// threads survive. `run` returns (or unwinds) only after every started task has
    /// finished, which is what lets `f` borrow from the caller. Tasks may call `run`
    /// themselves.
    pub fn run<R: Send, E: Send>(
        &self,
        share: usize,
        order: &[usize],
        f: impl Fn(usize) -> Result<R, E> + Sync,
    ) -> Result<Vec<R>, E> {
        debug_assert!(
            {
                let mut seen = vec![false; order.len()];
                order
                    .iter()
                    .all(|&i| i < seen.len() && !mem::replace(&mut seen[i], true))
            },
            "`order` must be a permutation of 0..n"
        );
        let batch = Batch::new(order, &f);
        // No point lending more threads than there are tasks besides the caller's first.
        let helpers = share.saturating_sub(1).min(order.len().saturating_sub(1));
        if helpers == 0 {
            let own = batch.work();
            return batch.finish(own);
        }
        let latch = Arc::new(Latch::default());
        let own = {
            // Declared after `batch`, so dropped before it on every path, unwinding
            // included; its drop blocks until every job handed out below has finished
            // or been dropped.
            let wait = LatchWait(&latch);
            let batch_ref = &batch;
            let make_job = || -> Job {
                let job: Box<dyn FnOnce() + Send + '_> = Box::new(move || batch_ref.help());
                // SAFETY: the job borrows `batch` (and through it `order` and `f`),
                // which outlive `wait`. Every job goes into an `Assignment` together
                // with a token of `latch` (`lend`), and the token is released only
                // after the job has returned or been dropped: `Assignment` drops its
                // job field first, and `Shared::serve` drops the token after calling
                // the job. `wait` does not let this block end before all tokens are
                // released, so no job touches `batch` after it is gone; the `'static`
                // is never relied on beyond that.
                unsafe { mem::transmute::<Box<dyn FnOnce() + Send + '_>, Job>(job) }
            };
            let lent = self.lend(helpers, &latch, make_job);
            let own = batch.work();
            // The tasks are all taken now: helpers that have not woken up yet have
            // nothing left to do, so take their jobs back instead of waiting for them.
            self.reclaim(&lent);
            drop(wait);
            own
        };
        batch.finish(own)
    }

    /// The pool's threads right now.
    pub fn threads(&self) -> PoolStats {
        self.handle.shared.stats()
    }

    /// Hands a job from `make_job` to each of `helpers` threads, idle ones first, then
    /// new ones, and returns the threads that got one.
    fn lend(&self, helpers: usize, latch: &Arc<Latch>, make_job: impl Fn() -> Job) -> Vec<Worker> {
        let shared = &self.handle.shared;
        let mut lent = Vec::with_capacity(helpers);
        let mut fresh = Vec::new();
        {
            let mut state = shared.lock();
            for _ in 0..helpers {
                let worker = match state.idle.pop() {
                    Some(worker) => worker,
                    None => {
                        let worker = state.reserve_thread();
                        fresh.push(worker.clone());
                        worker
                    }
                };
                let assignment = Assignment {
                    job: make_job(),
                    done: Some(latch.token()),
                };
                state.handoff.push((worker.id, assignment));
                lent.push(worker);
            }
        }
        for worker in &lent {
            if !fresh.iter().any(|f| f.id == worker.id) {
                worker.wakeup.notify_one();
            }
        }
        let mut failed = false;
        for worker in fresh {
            if !failed {
                match shared.spawn(&worker) {
                    Ok(()) => continue,
                    // Go on with the threads we have; the caller alone at worst.
                    Err(_) => failed = true,
                }
            }
            shared.unreserve_thread(worker.id);
            lent.retain(|w| w.id != worker.id);
        }
        lent
    }

    /// Takes back the jobs that threads in `lent` have not picked up yet and parks
    /// those threads again.
    fn reclaim(&self, lent: &[Worker]) {
        let shared = &self.handle.shared;
        let mut unused = Vec::new();
        {
            let mut state = shared.lock();
            for worker in lent {
                let Some(assignment) = state.take_handoff(worker.id) else {
                    continue; // Picked up: `run` waits for it.
                };
                unused.push(assignment);
                if state.idle.len() < shared.max_idle && !state.shutdown {
                    state.idle.push(worker.clone());
                } else {
                    // It must not park (too many idle); a no-op lets it retire.
                    state.handoff.push((worker.id, Assignment::noop()));
                }
            }
        }
        // Outside the lock: dropping the jobs releases their latch tokens.
        drop(unused);
    }
}

impl fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.handle.shared;
        f.debug_struct("WorkerPool")
            .field("idle_timeout", &shared.idle_timeout)
            .field("max_idle", &shared.max_idle)
            .field("threads", &shared.stats())
            .finish()
    }
}

/// A job handed to a pool thread, its lifetime erased (see `run`).
type Job = Box<dyn FnOnce() + Send + 'static>;

/// Owned only by [`WorkerPool`] clones (pool threads hold [`Shared`]), so its drop
/// means that the last handle is gone.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.shut_down();
    }
}

/// What the pool threads and the handles share.
struct Shared {
    state: Mutex<State>,
    idle_timeout: Duration,
    max_idle: usize,
    /// Makes every spawn fail, to test that `run` copes.
    #[cfg(test)]
    fail_spawns: AtomicBool,
}

/// The pool's bookkeeping, under one lock.
struct State {
    /// Parked threads, the most recently parked last (reused first, so that the
    /// others can time out).
    idle: Vec<Worker>,
    /// Work handed to a thread that has not picked it up yet, by thread id. A live
    /// thread without an entry here is on `idle`, running a job, or exiting.
    handoff: Vec<(u64, Assignment)>,
    /// Threads alive (or about to be spawned).
    live: usize,
    spawned_total: u64,
    /// Id of the next thread; ids are never reused.
    next_id: u64,
    /// Set when the last handle is dropped.
    shutdown: bool,
}

/// A pool thread, as known to whoever wakes it up.
#[derive(Clone)]
struct Worker {
    id: u64,
    /// Only ever waited on by this thread, with the pool lock.
    wakeup: Arc<Condvar>,
}

/// Work for one pool thread.
struct Assignment {
    /// Dropped before `done` (fields drop in declaration order), which the safety of
    /// the lifetime erasure in `run` depends on.
    job: Job,
    /// Released once the thread is done with `job`; `None` for a no-op.
    done: Option<LatchToken>,
}

impl Assignment {
    fn noop() -> Self {
        Assignment {
            job: Box::new(|| {}),
            done: None,
        }
    }
}

impl State {
    /// Accounts for a thread about to be spawned.
    fn reserve_thread(&mut self) -> Worker {
        let id = self.next_id;
        self.next_id += 1;
        self.live += 1;
        self.spawned_total += 1;
        Worker {
            id,
            wakeup: Arc::new(Condvar::new()),
        }
    }

    fn take_handoff(&mut self, id: u64) -> Option<Assignment> {
        let pos = self.handoff.iter().position(|(w, _)| *w == id)?;
        Some(self.handoff.swap_remove(pos).1)
    }

    fn remove_idle(&mut self, id: u64) {
        if let Some(pos) = self.idle.iter().position(|w| w.id == id) {
            self.idle.remove(pos);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("worker pool state poisoned")
    }

    fn stats(&self) -> PoolStats {
        let state = self.lock();
        PoolStats {
            live: state.live,
            idle: state.idle.len(),
            spawned_total: state.spawned_total,
        }
    }

    /// Starts the thread reserved as `worker`; its job is already in `handoff`.
    fn spawn(self: &Arc<Self>, worker: &Worker) -> io::Result<()> {
        #[cfg(test)]
        if self.fail_spawns.load(Ordering::Relaxed) {
            return Err(io::Error::other("spawn failure injected by a test"));
        }
        let shared = Arc::clone(self);
        let worker = worker.clone();
        thread::Builder::new()
            .name(format!("weir-worker-{}", worker.id))
            .spawn(move || shared.serve(worker))
            .map(drop)
    }

    /// Undoes `reserve_thread` for a thread that could not be spawned, dropping the
    /// job handed to it (which releases its latch token).
    fn unreserve_thread(&self, id: u64) {
        let unused = {
            let mut state = self.lock();
            state.live -= 1;
            state.spawned_total -= 1;
            state.take_handoff(id)
        };
        drop(unused);
    }

    /// The life of a pool thread: run what is handed over, park in between, exit
    /// after `idle_timeout` parked, on shutdown, or when enough threads are parked.
    fn serve(&self, me: Worker) {
        let mut state = self.lock();
        let mut idle_since = Instant::now();
        loop {
            if let Some(Assignment { job, done }) = state.take_handoff(me.id) {
                drop(state);
                // Jobs catch the panics of tasks themselves; this only keeps the
                // thread (and its bookkeeping) alive should the pool's own code panic.
                let _ = panic::catch_unwind(AssertUnwindSafe(job));
                state = self.lock();
                let retire = state.shutdown || state.idle.len() >= self.max_idle;
                if retire {
                    state.live -= 1;
                } else {
                    state.idle.push(me.clone());
                    idle_since = Instant::now();
                }
                // Released only now, so that the `run` this thread helped finds it
                // parked (or gone) once it returns.
                drop(done);
                if retire {
                    return;
                }
                continue;
            }
            // No handoff: this thread is on the idle list.
            let now = Instant::now();
            let deadline = idle_since.checked_add(self.idle_timeout);
            if state.shutdown || deadline.is_some_and(|d| now >= d) {
                state.remove_idle(me.id);
                state.live -= 1;
                return;
            }
            state = match deadline {
                Some(deadline) => {
                    let (state, timeout) = me
                        .wakeup
                        .wait_timeout(state, deadline - now)
                        .expect("worker pool state poisoned");
                    if !timeout.timed_out() {
                        // Woken to work (then reclaimed, or the job is waiting in
                        // `handoff`): that counts as activity.
                        idle_since = Instant::now();
                    }
                    state
                }
                None => me.wakeup.wait(state).expect("worker pool state poisoned"),
            };
        }
    }

    /// Lets parked threads exit, and lent ones exit once they are done.
    fn shut_down(&self) {
        // Called from `Drop`: never panic here.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.shutdown = true;
        for worker in &state.idle {
            worker.wakeup.notify_one();
        }
    }
}

/// Counts the jobs a `run` has handed out and not yet seen finished or dropped.
#[derive(Default)]
struct Latch {
    pending: Mutex<usize>,
    all_done: Condvar,
}

impl Latch {
    fn token(self: &Arc<Self>) -> LatchToken {
        *self.pending.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        LatchToken(Arc::clone(self))
    }
}

/// One outstanding job of a [`Latch`]; dropping it counts the job as done. It holds
/// the latch by `Arc`, so it stays valid even after the `run` it releases returned.
struct LatchToken(Arc<Latch>);

impl Drop for LatchToken {
    fn drop(&mut self) {
        let mut pending = self
            .0
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *pending -= 1;
        if *pending == 0 {
            self.0.all_done.notify_all();
        }
    }
}

/// Blocks, when dropped, until every token of the latch has been dropped.
struct LatchWait<'a>(&'a Latch);

impl Drop for LatchWait<'_> {
    fn drop(&mut self) {
        // Soundness depends on this wait: never panic, even on a poisoned lock.
        let mut pending = self
            .0
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while *pending > 0 {
            pending = self
                .0
                .all_done
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The state of one `run` call, shared by the caller and its helpers.
struct Batch<'a, R, E, F> {
    order: &'a [usize],
    task: &'a F,
    /// Position in `order` of the next task to start.
    next: AtomicUsize,
    /// Set after a failure or panic: start no more tasks.
    stop: AtomicBool,
    /// Results of the helpers (the caller keeps its own until the end).
    results: Mutex<Vec<(usize, R)>>,
    /// The failure with the lowest index so far.
    failure: Mutex<Option<(usize, E)>>,
    /// The first panic.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

impl<'a, R, E, F> Batch<'a, R, E, F>
where
    F: Fn(usize) -> Result<R, E>,
{
    fn new(order: &'a [usize], task: &'a F) -> Self {
        Batch {
            order,
            task,
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            results: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
            panic: Mutex::new(None),
        }
    }

    /// Runs tasks until none is left or one failed; returns the successes.
    fn work(&self) -> Vec<(usize, R)> {
        let mut done = Vec::new();
        while !self.stop.load(Ordering::Relaxed) {
            let Some(&index) = self.order.get(self.next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            match panic::catch_unwind(AssertUnwindSafe(|| (self.task)(index))) {
                Ok(Ok(result)) => done.push((index, result)),
                Ok(Err(error)) => {
                    self.stop.store(true, Ordering::Relaxed);
                    let mut failure = self.failure.lock().expect("batch failure poisoned");
                    let lower = failure.as_ref().is_none_or(|(i, _)| index < *i);
                    // The error not kept is dropped after the lock is released.
                    let _discarded = if lower {
                        failure.replace((index, error))
                    } else {
                        Some((index, error))
                    };
                    drop(failure);
                }
                Err(payload) => {
                    self.stop.store(true, Ordering::Relaxed);
                    let mut first = self.panic.lock().expect("batch panic poisoned");
                    let _discarded = if first.is_none() {
                        first.replace(payload)
                    } else {
                        Some(payload)
                    };
                    drop(first);
                }
            }
        }
        done
    }

    /// What a helper thread does for this batch.
    fn help(&self) {
        let done = self.work();
        if !done.is_empty() {
            self.results
                .lock()
                .expect("batch results poisoned")
                .extend(done);
        }
    }

    /// The outcome, once every started task has finished; `own` are the caller's
    /// results.
    fn finish(self, own: Vec<(usize, R)>) -> Result<Vec<R>, E> {
        if let Some(payload) = self.panic.into_inner().expect("batch panic poisoned") {
            panic::resume_unwind(payload);
        }
        if let Some((_, error)) = self.failure.into_inner().expect("batch failure poisoned") {
            return Err(error);
        }
        let mut all = self.results.into_inner().expect("batch results poisoned");
        if all.is_empty() {
            all = own;
        } else {
            all.extend(own);
        }
        all.sort_unstable_by_key(|&(index, _)| index);
        Ok(all.into_iter().map(|(_, result)| result).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::thread::ThreadId;

    const LONG: Duration = Duration::from_secs(60);

    /// Polls `cond` until it holds or `within` has passed; whether it held.
    fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if cond() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// A barrier that gives up after a timeout instead of hanging the test.
    struct Rendezvous {
        arrived: Mutex<usize>,
        all_here: Condvar,
        parties: usize,
    }

    impl Rendezvous {
        fn new(parties: usize) -> Self {
            Rendezvous {
                arrived: Mutex::new(0),
                all_here: Condvar::new(),
                parties,
            }
        }

        /// Whether all parties arrived within five seconds.
        fn arrive_and_wait(&self) -> bool {
            let mut arrived = self.arrived.lock().unwrap();
            *arrived += 1;
            self.all_here.notify_all();
            let (arrived, _) = self
                .all_here
                .wait_timeout_while(arrived, Duration::from_secs(5), |a| *a < self.parties)
                .unwrap();
            *arrived >= self.parties
        }
    }

    /// A task that waits for the others at `rendezvous`, failing if they do not come.
    fn meet(rendezvous: &Rendezvous) -> Result<(), ()> {
        assert!(
            rendezvous.arrive_and_wait(),
            "the tasks did not run at once"
        );
        Ok(())
    }

    fn is_pool_thread() -> bool {
        thread::current()
            .name()
            .is_some_and(|n| n.starts_with("weir-worker-"))
    }

    #[test]
    fn results_come_back_in_index_order() {
        for share in [1, 2, 4] {
            for n in [0, 1, 2, 100] {
                let pool = WorkerPool::new(LONG, 16);
                // A permutation that is neither ascending nor descending.
                let order: Vec<usize> = (0..n).map(|k| (k * 37 + 11) % n.max(1)).collect();
                let ran_on: Mutex<Vec<ThreadId>> = Mutex::new(Vec::new());
                let out = pool
                    .run(share, &order, |i| {
                        ran_on.lock().unwrap().push(thread::current().id());
                        Ok::<_, ()>(i * 3)
                    })
                    .unwrap();
                assert_eq!(
                    out,
                    (0..n).map(|i| i * 3).collect::<Vec<_>>(),
                    "share {share}, n {n}"
                );
                let ran_on = ran_on.into_inner().unwrap();
                assert_eq!(ran_on.len(), n);
                if share == 1 {
                    assert_eq!(pool.threads().spawned_total, 0);
                    assert!(ran_on.iter().all(|&t| t == thread::current().id()));
                }
            }
        }
    }

    #[test]
    fn at_most_share_tasks_run_at_once() {
        for share in [1, 2, 3] {
            let pool = WorkerPool::new(LONG, 16);
            let running = AtomicUsize::new(0);
            let most = AtomicUsize::new(0);
            let order: Vec<usize> = (0..40).collect();
            pool.run(share, &order, |_| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(2));
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, ()>(())
            })
            .unwrap();
            let most = most.load(Ordering::SeqCst);
            assert!(most <= share, "share {share}: {most} tasks ran at once");
            assert!(pool.threads().spawned_total < share as u64);
        }
    }

    #[test]
    fn the_pool_grows_to_the_share_and_reuses_its_threads() {
        let pool = WorkerPool::new(LONG, 16);
        let caller = thread::current().id();
        let order: Vec<usize> = (0..4).rev().collect();
        for round in 0..2 {
            let rendezvous = Rendezvous::new(4);
            let ran_on = Mutex::new(Vec::new());
            let all_met = pool
                .run(4, &order, |_| {
                    assert!(thread::current().id() == caller || is_pool_thread());
                    ran_on.lock().unwrap().push(thread::current().id());
                    Ok::<_, ()>(rendezvous.arrive_and_wait())
                })
                .unwrap();
            assert_eq!(
                all_met, [true; 4],
                "round {round}: the 4 tasks did not run at once"
            );
            let mut ran_on = ran_on.into_inner().unwrap();
            ran_on.sort_by_key(|t| format!("{t:?}"));
            ran_on.dedup();
            assert_eq!(ran_on.len(), 4);
            // The helpers are parked again when `run` returns: the second round
            // reuses them.
            let stats = pool.threads();
            assert_eq!(
                stats,
                PoolStats {
                    live: 3,
                    idle: 3,
                    spawned_total: 3
                },
                "round {round}"
            );
        }
    }

    #[test]
    fn tasks_borrow_from_the_caller() {
        let pool = WorkerPool::new(LONG, 16);
        let input: Vec<String> = (0..50).map(|i| "x".repeat(i)).collect();
        let slots: Vec<Mutex<Option<usize>>> = (0..input.len()).map(|_| Mutex::new(None)).collect();
        let order: Vec<usize> = (0..input.len()).rev().collect();
        let out = pool
            .run(3, &order, |i| {
                *slots[i].lock().unwrap() = Some(input[i].len());
                Ok::<_, ()>(&input[i][..])
            })
            .unwrap();
        for (i, slot) in slots.iter().enumerate() {
            assert_eq!(*slot.lock().unwrap(), Some(i));
            assert_eq!(out[i], input[i]);
        }
    }

    #[test]
    fn the_error_of_the_lowest_failed_index_wins() {
        let pool = WorkerPool::new(LONG, 16);
        // 5 and 12 both fail; 12 fails first, while 5 is still running.
        let mut order = vec![5, 12];
        order.extend((0..20).filter(|i| ![5, 12].contains(i)));
        let twelve_failed = AtomicBool::new(false);
        let five_saw_it = AtomicBool::new(false);
        let result = pool.run(2, &order, |i| match i {
            12 => {
                twelve_failed.store(true, Ordering::SeqCst);
                Err(12)
            }
            5 => {
                if eventually(Duration::from_secs(5), || {
                    twelve_failed.load(Ordering::SeqCst)
                }) {
                    five_saw_it.store(true, Ordering::SeqCst);
                }
                thread::sleep(Duration::from_millis(20));
                Err(5)
            }
            _ => Ok(i),
        });
        assert_eq!(result, Err(5));
        assert!(
            five_saw_it.load(Ordering::SeqCst),
            "5 and 12 did not run at once"
        );
    }

    #[test]
    fn no_task_starts_after_a_failure() {
        for share in [1, 2] {
            let pool = WorkerPool::new(LONG, 16);
            let mut order = vec![3];
            order.extend((0..10).filter(|&i| i != 3));
            let started = AtomicUsize::new(0);
            let result = pool.run(share, &order, |i| {
                started.fetch_add(1, Ordering::SeqCst);
                if i == 3 {
                    return Err(format!("task {i} failed"));
                }
                thread::sleep(Duration::from_millis(5));
                Ok(i)
            });
            assert_eq!(result, Err("task 3 failed".to_string()));
            // With share 2 the helper may have started one task before the failure.
            let started = started.load(Ordering::SeqCst);
            assert!(started <= share, "share {share}: {started} tasks started");
        }
    }

    fn panic_message(payload: &(dyn Any + Send)) -> String {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default()
    }

    #[test]
    fn a_panic_is_resumed_on_the_caller_and_the_pool_survives() {
        let pool = WorkerPool::new(LONG, 16);
        // A panic on the pool thread: both tasks meet, then the pool thread's panics.
        let rendezvous = Rendezvous::new(2);
        let finished = AtomicUsize::new(0);
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            pool.run(2, &[1, 0], |i| {
                assert!(rendezvous.arrive_and_wait());
                if is_pool_thread() {
                    panic!("task {i} exploded");
                }
                thread::sleep(Duration::from_millis(20));
                finished.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(i)
            })
        }));
        let payload = outcome.expect_err("the panic was not resumed");
        assert!(panic_message(&*payload).contains("exploded"));
        // The caller's task had finished before `run` unwound.
        assert_eq!(finished.load(Ordering::SeqCst), 1);
        assert_eq!(pool.threads().live, 1);

        // A panic on the caller's thread.
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            pool.run(1, &[0], |_| -> Result<(), ()> { panic!("inline") })
        }));
        assert_eq!(panic_message(&*outcome.expect_err("not resumed")), "inline");

        // The pool still works, with the same thread.
        let order: Vec<usize> = (0..10).collect();
        assert_eq!(pool.run(2, &order, Ok::<_, ()>), Ok(order.clone()));
        assert_eq!(pool.threads().spawned_total, 1);
    }

    #[test]
    fn a_spinning_job_does_not_delay_another_job() {
        let pool = WorkerPool::new(LONG, 16);
        let spinning = Arc::new(AtomicUsize::new(0));
        let a_done = Arc::new(AtomicBool::new(false));
        let job_a = {
            let (pool, spinning, a_done) = (pool.clone(), spinning.clone(), a_done.clone());
            thread::spawn(move || {
                pool.run(2, &[1, 0], |_| {
                    spinning.fetch_add(1, Ordering::SeqCst);
                    let start = Instant::now();
                    let mut x = 0u64;
                    while start.elapsed() < Duration::from_millis(500) {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                    Ok::<_, ()>(x)
                })
                .unwrap();
                a_done.store(true, Ordering::SeqCst);
            })
        };
        assert!(eventually(Duration::from_secs(5), || spinning
            .load(Ordering::SeqCst)
            == 2));

        // Job B's first two tasks need both of its threads at once, so B cannot
        // make do with its caller alone: it needs a thread from the pool right away.
        let start = Instant::now();
        let rendezvous = Rendezvous::new(2);
        let order: Vec<usize> = (0..8).collect();
        let out = pool
            .run(2, &order, |i| {
                if i < 2 {
                    meet(&rendezvous)?;
                }
                thread::sleep(Duration::from_millis(1));
                Ok::<_, ()>(i)
            })
            .unwrap();
        let b_took = start.elapsed();
        let a_was_done = a_done.load(Ordering::SeqCst);
        job_a.join().unwrap();

        assert_eq!(out, (0..8).collect::<Vec<_>>());
        assert!(!a_was_done, "job A finished before job B");
        assert!(b_took < Duration::from_millis(200), "job B took {b_took:?}");
    }

    #[test]
    fn idle_threads_retire_after_the_timeout() {
        let pool = WorkerPool::new(Duration::from_millis(50), 16);
        let rendezvous = Rendezvous::new(4);
        let order: Vec<usize> = (0..4).collect();
        pool.run(4, &order, |_| meet(&rendezvous)).unwrap();
        assert_eq!(pool.threads().live, 3);
        assert!(eventually(Duration::from_secs(5), || pool.threads()
            == PoolStats {
                live: 0,
                idle: 0,
                spawned_total: 3
            }));
        // And it grows again.
        let rendezvous = Rendezvous::new(2);
        pool.run(2, &[0, 1], |_| meet(&rendezvous)).unwrap();
        assert_eq!(pool.threads().spawned_total, 4);
    }

    #[test]
    fn at_most_max_idle_threads_stay_parked() {
        let pool = WorkerPool::new(LONG, 2);
        let rendezvous = Rendezvous::new(4);
        let order: Vec<usize> = (0..4).collect();
        pool.run(4, &order, |_| meet(&rendezvous)).unwrap();
        assert_eq!(pool.threads().spawned_total, 3);
        assert!(eventually(Duration::from_secs(5), || {
            let stats = pool.threads();
            stats.live == 2 && stats.idle == 2
        }));
    }

    #[test]
    fn a_thousand_jobs_with_share_one_spawn_nothing() {
        let pool = WorkerPool::new(LONG, 16);
        let order: Vec<usize> = (0..4).rev().collect();
        for job in 0..1000 {
            let out = pool.run(1, &order, |i| Ok::<_, ()>(job + i)).unwrap();
            assert_eq!(out, (0..4).map(|i| job + i).collect::<Vec<_>>());
        }
        assert_eq!(pool.threads(), PoolStats::default());
    }

    #[test]
    fn many_concurrent_jobs_leave_at_most_max_idle_threads() {
        let max_idle = 4;
        let pool = WorkerPool::new(LONG, max_idle);
        let calls = Arc::new(AtomicU64::new(0));
        let jobs: Vec<_> = (0..100)
            .map(|job| {
                let (pool, calls) = (pool.clone(), calls.clone());
                thread::spawn(move || {
                    let order: Vec<usize> = (0..4).rev().collect();
                    for _ in 0..20 {
                        let out = pool
                            .run(2, &order, |i| {
                                // Long enough for the 100 jobs to overlap.
                                thread::sleep(Duration::from_micros(200));
                                Ok::<_, ()>(job * i)
                            })
                            .unwrap();
                        assert_eq!(out, (0..4).map(|i| job * i).collect::<Vec<_>>());
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for job in jobs {
            job.join().unwrap();
        }
        assert_eq!(calls.load(Ordering::Relaxed), 2000);
        // Far more threads than `max_idle` were needed at once...
        let spawned = pool.threads().spawned_total;
        assert!(
            spawned > 4 * max_idle as u64,
            "only {spawned} threads spawned"
        );
        // ... but no more than `max_idle` of them remain.
        assert!(
            eventually(Duration::from_secs(5), || {
                let stats = pool.threads();
                stats.live <= max_idle && stats.idle == stats.live
            }),
            "{:?}",
            pool.threads()
        );
    }

    #[test]
    fn dropping_the_last_handle_stops_the_threads() {
        let pool = WorkerPool::new(LONG, 16);
        let clone = pool.clone();
        let rendezvous = Rendezvous::new(4);
        let order: Vec<usize> = (0..4).collect();
        pool.run(4, &order, |_| meet(&rendezvous)).unwrap();
        let shared = Arc::clone(&pool.handle.shared);
        drop(pool);
        assert_eq!(shared.stats().live, 3, "a clone is still alive");
        drop(clone);
        assert!(eventually(Duration::from_secs(5), || shared.stats().live == 0));
        // Only `shared` is left: the threads have dropped theirs.
        assert!(eventually(Duration::from_secs(5), || Arc::strong_count(
            &shared
        ) == 1));
    }

    #[test]
    fn a_failed_spawn_means_fewer_helpers() {
        let pool = WorkerPool::new(LONG, 16);
        pool.handle
            .shared
            .fail_spawns
            .store(true, Ordering::Relaxed);
        let order: Vec<usize> = (0..20).rev().collect();
        let ran_on = Mutex::new(Vec::new());
        let out = pool
            .run(4, &order, |i| {
                ran_on.lock().unwrap().push(thread::current().id());
                Ok::<_, ()>(i)
            })
            .unwrap();
        assert_eq!(out, (0..20).collect::<Vec<_>>());
        assert!(ran_on
            .into_inner()
            .unwrap()
            .iter()
            .all(|&t| t == thread::current().id()));
        assert_eq!(pool.threads(), PoolStats::default());

        // One thread parked, spawns failing: share 4 gets that one helper.
        pool.handle
            .shared
            .fail_spawns
            .store(false, Ordering::Relaxed);
        let rendezvous = Rendezvous::new(2);
        pool.run(2, &[0, 1], |_| meet(&rendezvous)).unwrap();
        pool.handle
            .shared
            .fail_spawns
            .store(true, Ordering::Relaxed);
        let rendezvous = Rendezvous::new(2);
        let met = pool
            .run(4, &[0, 1, 2, 3], |i| {
                Ok::<_, ()>(i >= 2 || rendezvous.arrive_and_wait())
            })
            .unwrap();
        assert_eq!(met, [true; 4]);
        assert_eq!(
            pool.threads(),
            PoolStats {
                live: 1,
                idle: 1,
                spawned_total: 1
            }
        );
    }

    #[test]
    fn tasks_can_run_nested_batches() {
        let pool = WorkerPool::new(LONG, 16);
        let outer: Vec<usize> = (0..4).collect();
        let out = pool
            .run(2, &outer, |i| {
                let inner: Vec<usize> = (0..3).collect();
                let sums = pool.run(2, &inner, |j| Ok::<_, ()>(i * 10 + j))?;
                Ok::<_, ()>(sums.iter().sum::<usize>())
            })
            .unwrap();
        assert_eq!(out, (0..4).map(|i| 30 * i + 3).collect::<Vec<_>>());
    }
}
