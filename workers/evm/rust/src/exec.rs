//! Block executors: sequential (the oracle) and parallel on native threads.
//!
//! Both run a per-transaction executor (`evm::execute_tx`, or any closure for the generic
//! `*_with` forms) against a `View` of the state just before the transaction, and both give the
//! same results: the parallel one is correct by construction only if the executor is a
//! deterministic function of the transaction and the values its view returns.
//!
//! The state semantics are those of `workers/evm/state.py`: a write set applies its wipe first,
//! a `Credit` folds into the balance that is read later, and a wiped account's slots read 0 unless
//! written after the wipe.
//!
//! **Invalid transactions.** A result with `valid == false` in the final order makes the block
//! invalid. Both executors then stop there: the returned results end with that (first) invalid
//! result, so `results.len() < count` or `!results.last().valid` tells the caller, and
//! [`first_invalid`] gives what Python's `InvalidTransaction(index, error)` needs. (Stopping there,
//! as `workers/evm/execute.py` does, also means an error of a later transaction never hides it.)
//!
//! **Errors.** An `EngineError` from the executor (or a panic in it, caught and turned into
//! `EngineError::Internal`) aborts the block with that error, as sequential execution would: the
//! parallel executor reports an error only once every earlier transaction is final, so an error
//! that a stale speculative view caused is never reported.
//!
//! **Stacks.** The EVM executor recurses once per call depth (up to 1024 frames): every thread
//! that executes transactions has a [`STACK_SIZE`] stack ([`with_stack`] runs a closure on one).

pub mod hash;
mod parallel;
mod sequential;
mod versioned;

#[cfg(test)]
mod tests;

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::thread::{self, Scope, ScopedJoinHandle};

use crate::types::{EngineError, Loc, NativeBlock, TxResult, View, WriteValue};

pub use parallel::{execute_parallel_with, ParallelStats};
#[cfg(test)]
use parallel::{execute_tuned, Tuning};
pub use sequential::SequentialState;
pub use versioned::VersionedState;

/// The stack of every thread that executes transactions: 1024 nested EVM frames need far more than
/// the default 2 MiB. Only virtual memory is reserved; pages are touched as the recursion deepens.
pub const STACK_SIZE: usize = 256 << 20;

/// Execute every transaction of `block` in order, each against the state its predecessors left
/// (on a thread with a [`STACK_SIZE`] stack). Stops after the first invalid transaction (see the
/// module documentation); an executor error aborts with that error.
pub fn execute_sequential(block: &NativeBlock) -> Result<Vec<TxResult>, EngineError> {
    try_with_stack(|| {
        execute_sequential_with(block.txs.len(), &block.pre, |index, view| crate::evm::execute_tx(block, index, view))
    })?
}

/// The sequential executor over any pre-state and per-transaction executor `exec(index, view)`.
///
/// Runs on the calling thread: give it a large stack if `exec` recurses deeply.
pub fn execute_sequential_with(
    count: usize,
    pre: &dyn View,
    exec: impl Fn(usize, &dyn View) -> Result<TxResult, EngineError>,
) -> Result<Vec<TxResult>, EngineError> {
    let mut state = SequentialState::new(pre);
    let mut results = Vec::with_capacity(count);
    for index in 0..count {
        let result = catch(|| exec(index, &state))?;
        state.apply(&result.writes)?;
        let valid = result.valid;
        results.push(result);
        if !valid {
            break;
        }
    }
    Ok(results)
}

/// Execute `block` on `threads` OS threads (optimistic execution, committed in order: see
/// `parallel.rs`); the results equal [`execute_sequential`]'s exactly (receipts and every read and
/// write set), including where an invalid transaction stops the block.
pub fn execute_parallel(block: &NativeBlock, threads: usize) -> Result<(Vec<TxResult>, ParallelStats), EngineError> {
    execute_parallel_with(block.txs.len(), &block.pre, threads, |index, view| crate::evm::execute_tx(block, index, view))
}

/// The first invalid result, as `(index, error)`: what the bindings raise as
/// `InvalidTransaction(index, error)` (None: the block's transactions are all valid).
pub fn first_invalid(results: &[TxResult]) -> Option<(usize, &str)> {
    results.iter().find(|r| !r.valid).map(|r| (r.index, r.error.as_deref().unwrap_or("invalid")))
}

thread_local! {
    /// Whether this thread was started with a [`STACK_SIZE`] stack (then `with_stack` need not spawn).
    static LARGE_STACK: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` on a thread with a [`STACK_SIZE`] stack and return its value (directly, when already on
/// such a thread). A panic in `f` resumes on the caller; a thread that cannot start panics.
pub fn with_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    match try_with_stack(f) {
        Ok(value) => value,
        Err(error) => panic!("{error}"),
    }
}

/// [`with_stack`], with a thread that cannot start (memory, thread limits) as an error.
pub fn try_with_stack<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, EngineError> {
    if LARGE_STACK.get() {
        return Ok(f());
    }
    thread::scope(|scope| {
        let handle = spawn_large(scope, "evm".into(), f)?;
        Ok(handle.join().unwrap_or_else(|payload| panic::resume_unwind(payload)))
    })
}

/// Spawn a scoped thread with a [`STACK_SIZE`] stack.
fn spawn_large<'scope, T: Send + 'scope>(
    scope: &'scope Scope<'scope, '_>,
    name: String,
    f: impl FnOnce() -> T + Send + 'scope,
) -> Result<ScopedJoinHandle<'scope, T>, EngineError> {
    thread::Builder::new()
        .name(name)
        .stack_size(STACK_SIZE)
        .spawn_scoped(scope, move || {
            LARGE_STACK.set(true);
            f()
        })
        .map_err(|error| EngineError::Internal(format!("cannot start an execution thread: {error}")))
}

/// Run `f`, turning a panic into `EngineError::Internal` with its message.
fn catch<T>(f: impl FnOnce() -> Result<T, EngineError>) -> Result<T, EngineError> {
    panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(EngineError::Internal(panic_message(&*payload))))
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    format!("panic: {text}")
}

/// Check that a write set's values fit their locations (a bug in the executor otherwise): the
/// states can then trust every value they hold.
fn check_writes(writes: &[(Loc, WriteValue)]) -> Result<(), EngineError> {
    for (loc, value) in writes {
        let fits = matches!(
            (loc, value),
            (Loc::Account(_), WriteValue::Account(_) | WriteValue::Credit(_))
                | (Loc::Code(_), WriteValue::Code(_))
                | (Loc::Storage(..), WriteValue::Storage(_))
                | (Loc::Wipe(_), WriteValue::Wipe)
        );
        if !fits {
            return Err(EngineError::Internal(format!("the executor wrote {value:?} to {loc:?}")));
        }
    }
    Ok(())
}

/// Lock a mutex, ignoring poisoning: every panic is caught and aborts the block, and nothing
/// guarded here is left half-updated by one.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
