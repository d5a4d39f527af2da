//! The commit wave of the parallel executor (see `parallel.rs`): in block order, one thread at a
//! time, each transaction made final (as speculated, validated, or executed again) and committed.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::{Relaxed, Release, SeqCst};
use std::sync::TryLockError;

use super::burst::Burst;
use super::{catch, check_writes, lock, Execution, Local, ReadLog, Record, Run, Slot, MAX_WINDOW};
use crate::types::{EngineError, Loc, ReadValue, TxResult, View};

/// A committed write set that may be newer than what a later transaction read.
struct Recent {
    /// Its tick.
    tick: u64,
    /// The largest tick of this entry and every one before it (and of those forgotten): scanning
    /// from the newest entry, the check stops where this is not newer than the execution.
    max_tick: u64,
    /// The execution whose write set it is, by position in `Commit::executions` (None: a burst).
    position: Option<usize>,
    /// Locations besides that write set: those an earlier execution of the transaction wrote and
    /// the final one does not, or a published burst's.
    extra: Vec<Loc>,
}

/// How many committed write sets the commit wave keeps for the touch check (speculation rarely
/// runs further ahead of the commit wave than this).
const RECENT: usize = 2048;
/// At most this many location comparisons per touch check (then validate instead).
const TOUCH_BUDGET: usize = 1024;

/// The commit wave's state (behind the commit lock).
pub(super) struct Commit {
    /// The first transaction not committed.
    next: usize,
    /// The last committed transactions, oldest first.
    recent: VecDeque<Recent>,
    /// The largest tick of the committed write sets no longer in `recent`.
    old_tick: u64,
    /// How far ahead of `next` speculation may go.
    window: usize,
    /// The burst under way, not published yet.
    burst: Option<Burst>,
    /// The committed executions, in order.
    executions: Vec<Execution>,
    /// Set when a committed transaction ends the block (invalid, or an error).
    ended: bool,
}

impl Commit {
    /// The wave before the first transaction of a block of `count`, with the window at `window`.
    pub(super) fn new(window: usize, count: usize) -> Commit {
        Commit {
            next: 0,
            recent: VecDeque::with_capacity(RECENT),
            old_tick: 0,
            window,
            burst: None,
            executions: Vec::with_capacity(count),
            ended: false,
        }
    }

    /// The committed results of a block of `count` transactions, or the error that ended it.
    pub(super) fn into_results(self, count: usize) -> Result<Vec<TxResult>, EngineError> {
        if !self.ended && self.next < count {
            return Err(EngineError::Internal(format!("the block stopped at transaction {} of {count}", self.next)));
        }
        self.executions.into_iter().map(|execution| execution.outcome).collect()
    }

    /// A speculated transaction was right: widen the window.
    fn widen(&mut self) {
        self.window = (self.window + 1).min(MAX_WINDOW);
    }

    /// Keep a committed write set for the touch check (forgetting the oldest: see `untouched`).
    fn remember(&mut self, mut recent: Recent) {
        if self.recent.len() == RECENT {
            let oldest = self.recent.pop_front().expect("full");
            self.old_tick = self.old_tick.max(oldest.tick);
        }
        let before = self.recent.back().map_or(self.old_tick, |last| last.max_tick);
        recent.max_tick = recent.tick.max(before);
        self.recent.push_back(recent);
    }
}

impl<F> Run<'_, F>
where
    F: Fn(usize, &dyn View) -> Result<TxResult, EngineError> + Sync,
{
    /// Advance the commit wave as far as it goes, if no other thread is at it. True if it moved.
    pub(super) fn try_commit(&self, local: &mut Local) -> bool {
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
                Some(Slot::Pending) if commit.window == 0 => {
                    let execution = self.execute_in_burst(index, commit, local);
                    self.commit_one(commit, execution, None);
                    self.maybe_reopen(commit);
                }
                Some(Slot::Pending) => {
                    self.publish(commit);
                    let record = self.execute(index, &[], local);
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
            commit.widen();
            return (record, Vec::new());
        }
        local.counters.validations += 1;
        if self.reads_valid(index, &record.execution) {
            commit.widen();
            return (record, Vec::new());
        }
        local.counters.aborts += 1;
        commit.window /= 2;
        let speculative = record.execution.writes();
        let again = self.execute(index, speculative, local);
        let kept = again.execution.writes();
        let dropped = speculative.iter().map(|(loc, _)| *loc).filter(|loc| !kept.iter().any(|(l, _)| l == loc)).collect();
        (again, dropped)
    }

    /// Reopen the window if the burst's last transactions show speculation would work again.
    fn maybe_reopen(&self, commit: &mut Commit) {
        if commit.burst.as_ref().is_some_and(|burst| burst.independent(self.tolerated)) && !commit.ended {
            self.publish(commit); // before anyone speculates on top of it
            commit.window = self.reopen_window;
            self.frontier.0.store(commit.next + commit.window, Release);
        }
    }

    /// Execute `index` as the next transaction of the burst (starting one if none is under way).
    fn execute_in_burst(&self, index: usize, commit: &mut Commit, local: &mut Local) -> Execution {
        let burst = commit.burst.get_or_insert_with(|| Burst::new(index));
        let view = burst.view(&self.state);
        let outcome = catch(|| (self.exec)(index, &view)).and_then(|result| check_writes(&result.writes).map(|()| result));
        local.counters.executions += 1;
        let reads = outcome.as_ref().ok().map(|result| result.reads.iter().map(|(loc, _)| loc));
        burst.record_dependency(index, reads, self.distance);
        if let Ok(result) = &outcome {
            burst.apply(index, &result.writes);
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
        commit.remember(Recent { tick, max_tick: tick, position: None, extra });
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
            commit.remember(Recent { tick, max_tick: tick, position, extra: dropped });
        }
        commit.next += 1;
        commit.ended = match &execution.outcome {
            Ok(result) => !result.valid,
            Err(_) => true,
        };
        commit.executions.push(execution);
        self.frontier.0.store(commit.next + commit.window, Release);
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
    let newer = commit.recent.iter().rev().take_while(|recent| recent.max_tick > record.checked_at);
    for recent in newer.filter(|recent| recent.tick > record.checked_at) {
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
