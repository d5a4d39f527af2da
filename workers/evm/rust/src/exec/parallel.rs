//! The parallel block executor: optimistic execution on native threads, committed in block order.
//!
//! **Speculation.** Threads claim transactions in block order, a small chunk at a time (one atomic
//! add per chunk), execute each against the multi-version state at its position
//! (`VersionedState`: the latest write set of every transaction before it, credits folded in) and
//! record its write set there. Nothing waits: a transaction may read a value an earlier one has not
//! written yet, or will write differently.
//!
//! **Commit wave.** One thread at a time (whichever takes the commit lock: no thread is dedicated
//! to it) walks the block in order. Transaction `c` becomes final once every transaction before it
//! is, in one of three ways:
//! - no write set that reached the multi-version state after its execution started touches a
//!   location it read: it read final values. A logical clock orders the two (every write set gets
//!   a tick once it is in the state, every execution notes the clock when it starts), and the
//!   commit wave keeps the write sets it committed last, so this check costs no state lookup;
//! - else its read set is validated: every location it read still holds the value it saw;
//! - else (or if nobody has started it yet) the committing thread executes it itself, now against
//!   the final state.
//!
//! So a serial chain runs on the committing thread like sequential execution (the speculation of
//! the other threads fails cheaply at validation), and independent transactions run on every
//! thread with one validation each at commit. Credits do not conflict: paying the beneficiary
//! writes a `Credit`, which only a reader of that balance depends on.
//!
//! **Window.** Speculation runs at most a window of transactions ahead of the commit wave. The
//! window halves when a validation fails and grows by one when one passes: speculation far ahead
//! of a conflicting stretch is wasted work, and pushes stale values on others. On a serial chain it
//! closes: the committing thread then executes alone, like sequential execution, while the others
//! wait. A probe reopens it a little (a transaction per thread) after a while, so that a parallel
//! stretch later in the block is found again; the while doubles after each probe, and shrinks
//! back once a speculated transaction is right (a long chain pays for a few probes only).
//!
//! **Bursts.** While the window is closed, the committing thread executes the transactions nobody
//! started against a private overlay (`burst.rs`) instead of the multi-version state: nobody else
//! would read their writes. The burst is published as one merged write set (at its last
//! transaction's position) when speculation may need it: before a speculated transaction is
//! settled, or when a probe reopens the window. A block that ends in a burst never publishes it.
//!
//! Why the results equal sequential execution: a committed transaction read, for every location,
//! the value the final write sets of the transactions before it give, which by induction are the
//! sequential ones; the executor being deterministic, its result is the sequential result.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release, Ordering::SeqCst};
use std::sync::{Mutex, TryLockError};
use std::time::Instant;

use std::cell::RefCell;

use super::burst::Burst;
use super::versioned::VersionedState;
use super::{catch, check_writes, lock, panic_message, spawn_large, try_with_stack};
use crate::types::{AccountTriple, Address, Code, EngineError, Loc, ReadValue, TxResult, View, WriteValue, U256};

/// How a parallel execution went.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParallelStats {
    /// Transactions in the block.
    pub transactions: usize,
    /// Threads that executed it.
    pub threads: usize,
    /// Runs of the executor (speculative, and by the commit wave).
    pub executions: usize,
    /// Read sets validated by the commit wave.
    pub validations: usize,
    /// Validations that failed: the commit wave executed the transaction again.
    pub aborts: usize,
    /// Wall-clock time of the whole execution.
    pub elapsed_s: f64,
}

impl ParallelStats {
    /// Executions beyond one per transaction.
    pub fn reexecuted(&self) -> usize {
        self.executions.saturating_sub(self.transactions)
    }
}

/// Execute `count` transactions with `exec(index, view)` on `threads` threads over `pre`; the
/// results equal [`super::execute_sequential_with`]'s (including the stop after the first invalid
/// transaction, and the error of the first transaction that fails). `exec` must be deterministic:
/// a function of the transaction and of the values its view returns.
pub fn execute_parallel_with<F>(
    count: usize,
    pre: &(dyn View + Sync),
    threads: usize,
    exec: F,
) -> Result<(Vec<TxResult>, ParallelStats), EngineError>
where
    F: Fn(usize, &dyn View) -> Result<TxResult, EngineError> + Sync,
{
    execute_tuned(count, pre, threads, exec, Tuning::default())
}

/// The window's settings (tests close it from the start to exercise bursts and probes).
#[derive(Clone, Copy, Debug)]
pub(super) struct Tuning {
    /// The window at the start.
    pub(super) window: usize,
    /// Transactions committed with the window closed before a probe reopens it.
    pub(super) probe_after: usize,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning { window: MAX_WINDOW, probe_after: PROBE_AFTER }
    }
}

/// [`execute_parallel_with`] with explicit window settings.
pub(super) fn execute_tuned<F>(
    count: usize,
    pre: &(dyn View + Sync),
    threads: usize,
    exec: F,
    tuning: Tuning,
) -> Result<(Vec<TxResult>, ParallelStats), EngineError>
where
    F: Fn(usize, &dyn View) -> Result<TxResult, EngineError> + Sync,
{
    let started = Instant::now();
    let threads = threads.clamp(1, count.max(1));
    let mut stats = ParallelStats { transactions: count, threads, ..ParallelStats::default() };
    if threads == 1 {
        // One thread has nothing to overlap: the sequential executor, without the bookkeeping.
        let results = try_with_stack(|| super::execute_sequential_with(count, pre, &exec))??;
        stats.executions = results.len();
        stats.elapsed_s = started.elapsed().as_secs_f64();
        return Ok((results, stats));
    }
    let run = Run::new(count, pre, threads, &exec, tuning);
    if count > 0 {
        for counters in run.work_on(threads) {
            counters.add_to(&mut stats);
        }
    }
    let results = run.into_results()?;
    stats.elapsed_s = started.elapsed().as_secs_f64();
    Ok((results, stats))
}

/// The largest window, and where it starts (speculation is usually right).
const MAX_WINDOW: usize = 1024;
/// A closed window reopens (to a transaction per thread) after this many transactions committed
/// without speculation: a probe for the end of a conflicting stretch.
const PROBE_AFTER: usize = 128;
/// The longest wait between probes.
const MAX_PROBE_AFTER: usize = 1 << 16;

/// A log of what an execution read through its view: each location with the value it got (None:
/// the read failed).
type ReadLog = Vec<(Loc, Option<ReadValue>)>;

/// One execution of one transaction: its outcome and what it read.
struct Execution {
    outcome: Result<TxResult, EngineError>,
    /// What the execution read through its view, when the outcome does not say it. An executor
    /// that keeps the engine contract records every read it made in `TxResult::reads`, once (its
    /// journal caches them): the log is then dropped, and validation re-reads `reads`. It is kept
    /// for an error (no read set) and when the counts differ (a read not recorded, or a location
    /// read twice): validation must re-read everything the outcome depends on.
    log: Option<ReadLog>,
}

impl Execution {
    fn writes(&self) -> &[(Loc, WriteValue)] {
        match &self.outcome {
            Ok(result) => &result.writes,
            Err(_) => &[],
        }
    }
}

/// An execution whose write set is in the multi-version state.
struct Record {
    execution: Execution,
    /// The clock tick its write set got once in the state.
    tick: u64,
    /// The clock when the execution started: its reads reflect every write set with a tick up to it.
    checked_at: u64,
}

/// Where a transaction is.
enum Slot {
    /// Not started (claimed or not).
    Pending,
    /// A speculating thread runs it.
    Executing,
    /// Executed, its write set in the state: the commit wave decides.
    Executed(Record),
    /// The commit wave took it.
    Taken,
}

/// A committed write set that may be newer than what a later transaction read.
struct Recent {
    /// Its tick.
    tick: u64,
    /// The execution whose write set it is, by position in `Commit::executions` (None: a burst).
    position: Option<usize>,
    /// Locations besides that write set: those an earlier execution of the transaction wrote and
    /// the final one does not, or a published burst's.
    extra: Vec<Loc>,
}

/// How many committed write sets the commit wave keeps for the touch check.
const RECENT: usize = 64;
/// At most this many location comparisons per touch check (then validate instead).
const TOUCH_BUDGET: usize = 1024;

/// The commit wave's state (behind the commit lock).
struct Commit {
    /// The first transaction not committed.
    next: usize,
    /// The last committed transactions, oldest first.
    recent: std::collections::VecDeque<Recent>,
    /// The largest tick of the committed write sets no longer in `recent`.
    old_tick: u64,
    /// How far ahead of `next` speculation may go.
    window: usize,
    /// Transactions committed since the window closed (or since the last probe).
    closed_for: usize,
    /// How many of those make a probe (doubles with each probe, resets when speculation is right).
    probe_after: usize,
    /// The burst under way, not published yet.
    burst: Option<Burst>,
    /// The committed executions, in order.
    executions: Vec<Execution>,
    /// Set when a committed transaction ends the block (invalid, or an error).
    ended: bool,
}

/// A thread's own state: its counters and a reusable read log (most executions do not keep it).
#[derive(Default)]
struct Local {
    counters: Counters,
    log: ReadLog,
}

/// What one thread did (summed into `ParallelStats` at the end).
#[derive(Default)]
struct Counters {
    executions: usize,
    validations: usize,
    aborts: usize,
}

impl Counters {
    fn add_to(&self, stats: &mut ParallelStats) {
        stats.executions += self.executions;
        stats.validations += self.validations;
        stats.aborts += self.aborts;
    }
}

/// An atomic on its own cache lines: the shared counters change all the time, by every thread.
#[repr(align(128))]
struct Padded<T>(T);

/// The shared state of one parallel execution.
struct Run<'a, F> {
    count: usize,
    exec: &'a F,
    state: VersionedState<'a>,
    slots: Box<[Mutex<Slot>]>,
    /// Transactions claimed at a time.
    chunk: usize,
    /// The window a probe opens.
    probe_window: usize,
    probe_after: usize,
    /// The next transaction to claim for speculation.
    next_claim: Padded<AtomicUsize>,
    /// Speculation claims no transaction from here on (`commit.next + commit.window`). A soft
    /// limit: it only bounds wasted work, so release/acquire (a plain store on x86: the committing
    /// thread does not wait for its stores to drain).
    frontier: Padded<AtomicUsize>,
    /// Set while a thread holds the commit lock: the others look at it before trying the lock,
    /// instead of pulling the lock's cache line to themselves on every idle turn.
    committing: Padded<AtomicBool>,
    clock: Padded<AtomicU64>,
    halted: Padded<AtomicBool>,
    commit: Mutex<Commit>,
    /// What stopped the block besides its transactions (a bug, a thread that would not start).
    fault: Mutex<Option<EngineError>>,
}

impl<'a, F> Run<'a, F>
where
    F: Fn(usize, &dyn View) -> Result<TxResult, EngineError> + Sync,
{
    fn new(count: usize, pre: &'a (dyn View + Sync), threads: usize, exec: &'a F, tuning: Tuning) -> Run<'a, F> {
        // Chunks amortise the claim over a few transactions, but not so many that a thread holds
        // back the commit wave, nor that a small block is not shared.
        let chunk = (count / (threads * 64)).clamp(1, 8);
        let window = tuning.window.min(MAX_WINDOW);
        Run {
            count,
            exec,
            // Three locations a transaction is typical (sender, recipient, beneficiary).
            state: VersionedState::new(pre, count * 3),
            slots: (0..count).map(|_| Mutex::new(Slot::Pending)).collect(),
            chunk,
            probe_window: threads,
            probe_after: tuning.probe_after,
            next_claim: Padded(AtomicUsize::new(0)),
            frontier: Padded(AtomicUsize::new(window)),
            committing: Padded(AtomicBool::new(false)),
            clock: Padded(AtomicU64::new(0)),
            halted: Padded(AtomicBool::new(false)),
            commit: Mutex::new(Commit {
                next: 0,
                recent: std::collections::VecDeque::with_capacity(RECENT),
                old_tick: 0,
                window,
                closed_for: 0,
                probe_after: tuning.probe_after,
                burst: None,
                executions: Vec::with_capacity(count),
                ended: false,
            }),
            fault: Mutex::new(None),
        }
    }

    /// Run the work loop on `threads` large-stack threads until the block is decided.
    fn work_on(&self, threads: usize) -> Vec<Counters> {
        std::thread::scope(|scope| {
            let mut handles = Vec::with_capacity(threads);
            for number in 0..threads {
                match spawn_large(scope, format!("evm-{number}"), || self.work()) {
                    Ok(handle) => handles.push(handle),
                    Err(error) => {
                        self.fail(error);
                        break;
                    }
                }
            }
            // `work` catches every panic: a join error cannot happen, and would lose only counters.
            handles.into_iter().map(|handle| handle.join().unwrap_or_default()).collect()
        })
    }

    fn work(&self) -> Counters {
        let mut local = Local::default();
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.work_loop(&mut local))) {
            self.fail(EngineError::Internal(panic_message(&*payload)));
        }
        local.counters
    }

    /// Commit what can be committed, speculate on a chunk; again until the block is decided.
    fn work_loop(&self, local: &mut Local) {
        let mut idle_turns = 0u32;
        while !self.halted.0.load(Acquire) {
            let committed = self.try_commit(local);
            let speculated = self.speculate_chunk(local);
            idle_turns = if committed || speculated { 0 } else { idle_turns + 1 };
            self.back_off(idle_turns);
        }
    }

    /// Spin briefly when there is nothing to do (work usually appears within microseconds), then
    /// yield the core: more threads than cores must not starve the one committing. While the
    /// window is closed (a serial stretch, committed by one thread), sleep: work comes back only
    /// with a probe, and a spinning thread would steal cache lines from the committing one.
    fn back_off(&self, idle_turns: u32) {
        match idle_turns {
            0 => {}
            1..64 => std::hint::spin_loop(),
            _ if self.frontier.0.load(Acquire) <= self.next_claim.0.load(Relaxed) => {
                std::thread::sleep(std::time::Duration::from_micros(20));
            }
            _ => std::thread::yield_now(),
        }
    }

    // Speculation ------------------------------------------------------------------------------

    /// Claim the next chunk and execute it; false if there is none within the window.
    fn speculate_chunk(&self, local: &mut Local) -> bool {
        let Some(chunk) = self.claim() else { return false };
        for index in chunk {
            if self.halted.0.load(Acquire) {
                break;
            }
            self.speculate(index, local);
        }
        true
    }

    /// Claim up to a chunk of transactions, not past the frontier.
    fn claim(&self) -> Option<Range<usize>> {
        let mut start = self.next_claim.0.load(SeqCst);
        loop {
            let end = (start + self.chunk).min(self.count).min(self.frontier.0.load(Acquire));
            if start >= end {
                return None;
            }
            match self.next_claim.0.compare_exchange_weak(start, end, SeqCst, SeqCst) {
                Ok(_) => return Some(start..end),
                Err(current) => start = current,
            }
        }
    }

    /// Execute `index` speculatively, unless the commit wave took it first.
    fn speculate(&self, index: usize, local: &mut Local) {
        {
            let mut slot = lock(&self.slots[index]);
            if !matches!(*slot, Slot::Pending) {
                return;
            }
            *slot = Slot::Executing;
        }
        // Its first execution: the commit wave executes a transaction again only after this one.
        let record = self.execute(index, None, local);
        *lock(&self.slots[index]) = Slot::Executed(record);
    }

    /// Execute `index` against the state at its position and put its write set there (replacing
    /// `previous`'s): the record.
    fn execute(&self, index: usize, previous: Option<Execution>, local: &mut Local) -> Record {
        let checked_at = self.clock.0.load(SeqCst);
        let execution = self.run_exec(index, &mut local.log);
        local.counters.executions += 1;
        let previous_writes = previous.as_ref().map_or(&[][..], Execution::writes);
        self.state.set_writes(index, execution.writes(), previous_writes);
        let tick = self.clock.0.fetch_add(1, SeqCst) + 1;
        Record { execution, tick, checked_at }
    }

    /// One run of the executor on `index` against the multi-version state (`log`: a buffer to
    /// reuse).
    fn run_exec(&self, index: usize, log: &mut ReadLog) -> Execution {
        log.clear();
        let view = TxView { state: &self.state, index, reads: RefCell::new(std::mem::take(log)) };
        let outcome = catch(|| (self.exec)(index, &view)).and_then(|result| check_writes(&result.writes).map(|()| result));
        let mut reads = view.reads.into_inner();
        let keep = match &outcome {
            Ok(result) => result.reads.len() != reads.len(),
            Err(_) => true,
        };
        let kept = if keep { Some(std::mem::take(&mut reads)) } else { None };
        *log = reads;
        Execution { outcome, log: kept }
    }

    // Commit wave ------------------------------------------------------------------------------

    /// Advance the commit wave as far as it goes, if no other thread is at it. True if it moved.
    fn try_commit(&self, local: &mut Local) -> bool {
        if self.committing.0.load(Relaxed) {
            return false;
        }
        let mut commit = match self.commit.try_lock() {
            Ok(commit) => commit,
            Err(TryLockError::WouldBlock) => return false,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        };
        self.committing.0.store(true, Relaxed);
        let moved = self.advance(&mut commit, local);
        self.committing.0.store(false, Relaxed);
        moved
    }

    /// Commit transactions in order while they can be: true if any was.
    fn advance(&self, commit: &mut Commit, local: &mut Local) -> bool {
        let start = commit.next;
        while !commit.ended && commit.next < self.count {
            let index = commit.next;
            let taken = {
                let mut slot = lock(&self.slots[index]);
                match *slot {
                    Slot::Executing => None, // its thread commits it when done (or another thread)
                    _ => Some(std::mem::replace(&mut *slot, Slot::Taken)),
                }
            };
            match taken {
                None => break,
                Some(Slot::Executed(record)) => {
                    let (record, dropped) = self.settle(index, record, commit, local);
                    self.commit_one(commit, record.execution, Some((record.tick, dropped)));
                }
                // Nobody started it: executed here, it reads final values at once.
                Some(Slot::Pending) if commit.window == 0 && !self.probe(commit) => {
                    let execution = self.execute_in_burst(index, commit, local);
                    self.commit_one(commit, execution, None);
                }
                Some(Slot::Pending) => {
                    self.publish(commit);
                    let record = self.execute(index, None, local);
                    self.commit_one(commit, record.execution, Some((record.tick, Vec::new())));
                }
                Some(Slot::Executing | Slot::Taken) => {
                    self.fail(EngineError::Internal(format!("transaction {index} was committed twice")));
                    return false;
                }
            }
        }
        if commit.ended || commit.next == self.count {
            // Decided: speculation after this point cannot change the results.
            self.halted.0.store(true, SeqCst);
        }
        commit.next > start
    }

    /// Make a speculative record final: as it is, or executed again (then also the locations its
    /// speculative write set held and the final one does not).
    fn settle(&self, index: usize, record: Record, commit: &mut Commit, local: &mut Local) -> (Record, Vec<Loc>) {
        // Its checks need every write before it in the state. (A burst can precede a speculated
        // transaction: a thread claimed a chunk, the burst took its first transaction.)
        self.publish(commit);
        if untouched(commit, &record) {
            self.widen(commit);
            return (record, Vec::new());
        }
        local.counters.validations += 1;
        if self.reads_valid(index, &record.execution) {
            self.widen(commit);
            return (record, Vec::new());
        }
        local.counters.aborts += 1;
        commit.window /= 2;
        let speculative: Vec<Loc> = record.execution.writes().iter().map(|(loc, _)| *loc).collect();
        let record = self.execute(index, Some(record.execution), local);
        let kept = record.execution.writes();
        let dropped = speculative.into_iter().filter(|loc| !kept.iter().any(|(l, _)| l == loc)).collect();
        (record, dropped)
    }

    /// A speculated transaction was right: widen the window.
    fn widen(&self, commit: &mut Commit) {
        commit.window = (commit.window + 1).min(MAX_WINDOW);
        commit.probe_after = self.probe_after;
    }

    /// Count a transaction committed while the window is closed; true when it is time to reopen
    /// it a little (then it is open).
    fn probe(&self, commit: &mut Commit) -> bool {
        commit.closed_for += 1;
        if commit.closed_for < commit.probe_after {
            return false;
        }
        commit.closed_for = 0;
        commit.probe_after = commit.probe_after.saturating_mul(2).min(MAX_PROBE_AFTER.max(self.probe_after));
        commit.window = self.probe_window;
        true
    }

    /// Execute `index` as the next transaction of the burst (starting one if none is under way).
    fn execute_in_burst(&self, index: usize, commit: &mut Commit, local: &mut Local) -> Execution {
        let burst = commit.burst.get_or_insert_with(|| Burst::new(index));
        let view = burst.view(&self.state);
        let outcome = catch(|| (self.exec)(index, &view)).and_then(|result| check_writes(&result.writes).map(|()| result));
        local.counters.executions += 1;
        if let Ok(result) = &outcome {
            burst.apply(&result.writes);
        }
        // Committed at once, never validated: no read log.
        Execution { outcome, log: None }
    }

    /// Put the burst under way into the multi-version state, as its last transaction's write set.
    fn publish(&self, commit: &mut Commit) {
        let Some(burst) = commit.burst.take() else { return };
        let last = commit.next - 1; // the burst is committed: it ends just before the wave
        let merged = burst.merged();
        // The burst's transactions never ran elsewhere: nothing of theirs is in the state yet.
        self.state.set_writes(last, &merged, &[]);
        let tick = self.clock.0.fetch_add(1, SeqCst) + 1;
        let extra = merged.into_iter().map(|(loc, _)| loc).collect();
        self.remember(commit, Recent { tick, position: None, extra });
    }

    /// Whether every value `execution` read is still what `index` reads now.
    fn reads_valid(&self, index: usize, execution: &Execution) -> bool {
        match (&execution.log, &execution.outcome) {
            (Some(log), _) => log.iter().all(|(loc, seen)| self.still_reads(index, loc, seen.as_ref())),
            (None, Ok(result)) => result.reads.iter().all(|(loc, seen)| self.still_reads(index, loc, Some(seen))),
            (None, Err(_)) => false, // never built: an error keeps its log
        }
    }

    /// Whether `index` reads `seen` at `loc` now (None: a failed read).
    fn still_reads(&self, index: usize, loc: &Loc, seen: Option<&ReadValue>) -> bool {
        match self.state.read(*loc, index) {
            Ok(value) => seen == Some(&value),
            Err(_) => seen.is_none(),
        }
    }

    /// Commit the next transaction: `execution` is final. `published`: the tick its write set got
    /// in the multi-version state and the locations it dropped there (None: in the burst).
    fn commit_one(&self, commit: &mut Commit, execution: Execution, published: Option<(u64, Vec<Loc>)>) {
        if let Some((tick, dropped)) = published {
            let position = Some(commit.executions.len());
            self.remember(commit, Recent { tick, position, extra: dropped });
        }
        commit.next += 1;
        commit.ended = match &execution.outcome {
            Ok(result) => !result.valid,
            Err(_) => true,
        };
        commit.executions.push(execution);
        self.frontier.0.store(commit.next + commit.window, Release);
    }

    /// Keep a committed write set for the touch check (forgetting the oldest: see `untouched`).
    fn remember(&self, commit: &mut Commit, recent: Recent) {
        if commit.recent.len() == RECENT {
            let oldest = commit.recent.pop_front().expect("full");
            commit.old_tick = commit.old_tick.max(oldest.tick);
        }
        commit.recent.push_back(recent);
    }

    fn fail(&self, error: EngineError) {
        lock(&self.fault).get_or_insert(error);
        self.halted.0.store(true, SeqCst);
    }

    /// The committed results, or the error that ended the block.
    fn into_results(self) -> Result<Vec<TxResult>, EngineError> {
        if let Some(error) = self.fault.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(error);
        }
        let commit = self.commit.into_inner().unwrap_or_else(|e| e.into_inner());
        if !commit.ended && commit.next < self.count {
            return Err(EngineError::Internal(format!("the block stopped at transaction {} of {}", commit.next, self.count)));
        }
        commit.executions.into_iter().map(|execution| execution.outcome).collect()
    }
}

/// Whether no committed write set newer than `record`'s execution touches a location it read: then
/// it read final values. (Every committed write set with a tick up to `checked_at` was in the
/// state before the execution read anything, and write sets never change once committed.) False
/// when that cannot be told cheaply: the caller validates.
fn untouched(commit: &Commit, record: &Record) -> bool {
    if record.checked_at < commit.old_tick {
        return false;
    }
    let Some(reads) = ReadLocs::of(&record.execution) else { return false };
    let mut budget = TOUCH_BUDGET;
    for recent in commit.recent.iter().filter(|recent| recent.tick > record.checked_at) {
        let writes = recent.position.map_or(&[][..], |position| commit.executions[position].writes());
        let touched = writes.iter().map(|(loc, _)| loc).chain(&recent.extra);
        for loc in touched {
            budget = match budget.checked_sub(reads.len()) {
                Some(left) => left,
                None => return false,
            };
            if reads.touched_by(loc) {
                return false;
            }
        }
    }
    true
}

/// The locations an execution read (from its log or its result).
enum ReadLocs<'e> {
    Log(&'e ReadLog),
    Result(&'e [(Loc, ReadValue)]),
}

impl<'e> ReadLocs<'e> {
    /// None if the execution has no read set (an error keeps its log: never, in fact).
    fn of(execution: &'e Execution) -> Option<ReadLocs<'e>> {
        match (&execution.log, &execution.outcome) {
            (Some(log), _) => Some(ReadLocs::Log(log)),
            (None, Ok(result)) => Some(ReadLocs::Result(&result.reads)),
            (None, Err(_)) => None,
        }
    }

    fn len(&self) -> usize {
        match self {
            ReadLocs::Log(log) => log.len(),
            ReadLocs::Result(reads) => reads.len(),
        }
    }

    /// Whether a write to `written` may change what one of these reads gives (a wipe changes every
    /// slot of its account).
    fn touched_by(&self, written: &Loc) -> bool {
        let hit = |read: &Loc| match (written, read) {
            (Loc::Wipe(wiped), Loc::Storage(owner, _)) => wiped == owner,
            _ => written == read,
        };
        match self {
            ReadLocs::Log(log) => log.iter().any(|(loc, _)| hit(loc)),
            ReadLocs::Result(reads) => reads.iter().any(|(loc, _)| hit(loc)),
        }
    }
}

/// The view one execution of transaction `index` reads: the multi-version state at its position,
/// with every value it returns logged for validation.
///
/// The executor reads each location once (its journal keeps what it read), so the view does not
/// cache: should it read a location twice and get two values (another thread wrote in between),
/// the log holds both and validation fails on one of them.
struct TxView<'s, 'a> {
    state: &'s VersionedState<'a>,
    index: usize,
    reads: RefCell<ReadLog>,
}

impl TxView<'_, '_> {
    /// Log a read of `loc` that gave `value` (`observe`: as a read set records it).
    fn log<T>(&self, loc: Loc, value: Result<T, EngineError>, observe: impl FnOnce(&T) -> ReadValue) -> Result<T, EngineError> {
        let seen = value.as_ref().ok().map(observe);
        self.reads.borrow_mut().push((loc, seen));
        value
    }
}

impl View for TxView<'_, '_> {
    fn account(&self, address: Address) -> Result<AccountTriple, EngineError> {
        self.log(Loc::Account(address), self.state.account(address, self.index), |account| ReadValue::Account(*account))
    }

    fn code(&self, address: Address) -> Result<std::sync::Arc<Code>, EngineError> {
        self.log(Loc::Code(address), self.state.code(address, self.index), |code| ReadValue::Code(code.hash))
    }

    fn storage(&self, address: Address, slot: U256) -> Result<U256, EngineError> {
        self.log(Loc::Storage(address, slot), self.state.storage(address, slot, self.index), |value| ReadValue::Storage(*value))
    }
}
