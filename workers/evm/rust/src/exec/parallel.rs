//! The parallel block executor: optimistic execution on native threads, committed in block order.
//!
//! **Speculation.** Threads claim transactions in block order, a small chunk at a time (one atomic
//! compare-and-swap per chunk), execute each against the multi-version state at its position
//! (`VersionedState`: the latest write set of every transaction before it, credits folded in) and
//! record its write set there. Nothing waits: a transaction may read a value an earlier one has not
//! written yet, or will write differently.
//!
//! **Commit wave** (`commit.rs`). One thread at a time (whichever takes the commit lock: no thread
//! is dedicated to it) walks the block in order. Transaction `c` becomes final once every
//! transaction before it is, in one of three ways:
//! - no write set that reached the multi-version state after its execution started touches a
//!   location it read: it read final values. A logical clock orders the two (every write set gets
//!   a tick once it is in the state, every execution notes the clock when it starts), and the
//!   commit wave keeps the write sets it committed last, so this check costs no state lookup;
//! - else its read set is validated: every location it read still holds the value it saw;
//! - else (or if nobody has started it yet) the committing thread executes it itself, now against
//!   the final state.
//!
//! So independent transactions run on every thread and commit after a check of a few location
//! comparisons each, and a conflicting one costs a validation and one more execution. Credits do
//! not conflict: paying the beneficiary writes a `Credit`, which only a reader of that balance
//! depends on.
//!
//! **Window.** Speculation runs at most a window of transactions ahead of the commit wave. The
//! window halves when a validation fails and grows by one when one passes: speculation far ahead
//! of a conflicting stretch is wasted work, and pushes stale values on others. On a serial chain it
//! closes: the committing thread then executes alone, like sequential execution, while the others
//! wait.
//!
//! **Bursts.** While the window is closed, the committing thread executes the transactions nobody
//! started against a private overlay (`burst.rs`) instead of the multi-version state: nobody else
//! would read their writes. It also watches their read sets: once nearly all of the last ones read
//! nothing their close predecessors wrote, speculation would work again, and the window reopens.
//! The burst is published as one merged write set (at its last transaction's position) when
//! speculation may need it: when the window reopens, or before a speculated transaction is settled.
//! A block that ends in a burst never publishes it (a serial chain never does).
//!
//! Why the results equal sequential execution: a committed transaction read, for every location,
//! the value the final write sets of the transactions before it give, which by induction are the
//! sequential ones; the executor being deterministic, its result is the sequential result.

mod burst;
mod commit;

use std::cell::RefCell;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::Instant;

use commit::Commit;

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
    #[must_use]
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

/// The window's settings (tests close it from the start, and reopen it eagerly, to exercise bursts
/// and their publication).
#[derive(Clone, Copy, Debug)]
pub(super) struct Tuning {
    /// The window at the start.
    pub(super) window: usize,
    /// How many of a burst's last 32 transactions may depend on their close predecessors for the
    /// window to reopen.
    pub(super) tolerated: u32,
}

impl Default for Tuning {
    /// `window: usize::MAX`: the default start (see `START_WINDOW_CHUNKS`).
    fn default() -> Tuning {
        Tuning { window: usize::MAX, tolerated: TOLERATED_DEPENDENCIES }
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

/// The largest window.
const MAX_WINDOW: usize = 1024;
/// The window at the start, in chunks per thread: enough to keep every thread busy, small enough
/// that a block starting with a serial chain wastes little speculation before it closes (it grows
/// by one with each transaction speculation got right).
const START_WINDOW_CHUNKS: usize = 4;
/// A closed window reopens when at most this many of a burst's last 32 transactions read what one
/// of their close predecessors wrote.
const TOLERATED_DEPENDENCIES: u32 = 2;

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
    /// The window a burst reopens: a chunk per thread.
    reopen_window: usize,
    /// A dependency closer than this (in transactions) would have failed speculation.
    distance: usize,
    tolerated: u32,
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
        let window = tuning.window.min(threads * chunk * START_WINDOW_CHUNKS).min(MAX_WINDOW);
        Run {
            count,
            exec,
            // Three locations a transaction is typical (sender, recipient, beneficiary).
            state: VersionedState::new(pre, count * 3),
            slots: (0..count).map(|_| Mutex::new(Slot::Pending)).collect(),
            chunk,
            reopen_window: threads * chunk,
            distance: threads * chunk,
            tolerated: tuning.tolerated,
            next_claim: Padded(AtomicUsize::new(0)),
            frontier: Padded(AtomicUsize::new(window)),
            committing: Padded(AtomicBool::new(false)),
            clock: Padded(AtomicU64::new(0)),
            halted: Padded(AtomicBool::new(false)),
            commit: Mutex::new(Commit::new(window, count)),
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
    /// yield the core: more threads than cores must not starve the one committing. While nothing
    /// can be claimed (the window is closed: a serial stretch, committed by one thread), sleep:
    /// work comes back only when the window reopens, and a spinning thread would take cache lines
    /// from the committing one.
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
        let record = self.execute(index, &[], local);
        *lock(&self.slots[index]) = Slot::Executed(record);
    }

    /// Execute `index` against the state at its position and put its write set there (replacing
    /// `previous`, its previous execution's): the record.
    fn execute(&self, index: usize, previous: &[(Loc, WriteValue)], local: &mut Local) -> Record {
        let checked_at = self.clock.0.load(SeqCst);
        let execution = self.run_exec(index, &mut local.log);
        local.counters.executions += 1;
        self.state.set_writes(index, execution.writes(), previous);
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

    fn fail(&self, error: EngineError) {
        lock(&self.fault).get_or_insert(error);
        self.halted.0.store(true, SeqCst);
    }

    /// The committed results, or the error that ended the block.
    fn into_results(self) -> Result<Vec<TxResult>, EngineError> {
        if let Some(error) = self.fault.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
            return Err(error);
        }
        self.commit.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner).into_results(self.count)
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
