//! Tests of the states and the executors. The parallel executor is checked against the sequential
//! one with synthetic transactions: small programs that read and write locations along a chosen
//! dependency pattern, whose every written value depends on everything they read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::types::{
    empty_code, AccountTriple, Address, Bytes, Code, CodeCache, EngineError, Loc, PreAccount, PreState, ReadValue,
    TxResult, View, WriteValue, EMPTY_CODE_HASH, U256,
};

// ---------------------------------------------------------------------------------------------
// Helpers

fn addr(n: u64) -> Address {
    let mut bytes = [0u8; 20];
    bytes[12..].copy_from_slice(&n.to_be_bytes());
    Address::from(bytes)
}

fn u(n: u64) -> U256 {
    U256::from(n)
}

fn triple(balance: u64, nonce: u64, exists: bool) -> AccountTriple {
    AccountTriple { balance: u(balance), nonce, exists }
}

fn code(bytes: &[u8]) -> Arc<Code> {
    Arc::new(Code::new(Bytes::copy_from_slice(bytes)))
}

fn pre_account(balance: u64, nonce: u64, storage: &[(u64, u64)]) -> PreAccount {
    PreAccount {
        balance: u(balance),
        nonce,
        exists: true,
        code: empty_code(),
        storage: storage.iter().map(|&(slot, value)| (u(slot), u(value))).collect(),
    }
}

fn pre_state(accounts: Vec<(u64, PreAccount)>) -> PreState {
    PreState { accounts: accounts.into_iter().map(|(n, account)| (addr(n), account)).collect() }
}

/// A deterministic pseudo-random generator (splitmix64): no dependency, same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------------------------------------
// Synthetic transactions

/// One step of a synthetic transaction (addresses and slots by number).
#[derive(Clone, Debug)]
enum Op {
    ReadAccount(u64),
    ReadCode(u64),
    ReadSlot(u64, u64),
    /// Read the account, write it back absolutely (nonce + 1, balance moved by the digest).
    SetAccount(u64),
    Credit(u64, u64),
    /// Write the digest of everything read so far to the slot.
    SetSlot(u64, u64),
    SetCode(u64),
    Wipe(u64),
    /// Read the balance: the transaction is invalid (no writes) below the amount.
    RequireBalance(u64, u64),
    /// Read the slot: an `EngineError` if it holds 0.
    FailIfZero(u64, u64),
    /// Read the slot: a panic if it holds 0.
    PanicIfZero(u64, u64),
    /// Busy work for this long (a transaction's cost).
    Spin(Duration),
    /// Read slot `.0`/`.1`; write the digest to slot `.2`/`.3` if it holds 0, else to `.2`/`.3 + 1`.
    Branch(u64, u64, u64, u64),
    /// Read the slot through the view without recording the read (an executor breaking the
    /// engine contract: the parallel executor must still be exact).
    HiddenRead(u64, u64),
}

/// A synthetic transaction's execution: its reads (through the view, once each), its write set
/// (with the executor's merging rules), and a digest of everything it read.
struct Synthetic<'v> {
    view: &'v dyn View,
    index: usize,
    digest: u64,
    reads: Vec<(Loc, ReadValue)>,
    writes: Vec<(Loc, WriteValue)>,
}

impl<'v> Synthetic<'v> {
    fn mix(&mut self, word: u64) {
        self.digest = (self.digest.rotate_left(13) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn record(&mut self, loc: Loc, value: ReadValue) {
        if !self.reads.iter().any(|(seen, _)| *seen == loc) {
            self.reads.push((loc, value));
        }
    }

    fn written(&self, loc: &Loc) -> Option<&WriteValue> {
        self.writes.iter().find(|(l, _)| l == loc).map(|(_, v)| v)
    }

    fn write(&mut self, loc: Loc, value: WriteValue) {
        match self.writes.iter_mut().find(|(l, _)| *l == loc) {
            Some(entry) => entry.1 = value,
            None => self.writes.push((loc, value)),
        }
    }

    /// The account with this transaction's own writes on top of what the view gives.
    fn account(&mut self, a: u64) -> Result<AccountTriple, EngineError> {
        let loc = Loc::Account(addr(a));
        if let Some(WriteValue::Account(account)) = self.written(&loc) {
            return Ok(*account);
        }
        let read = self.view.account(addr(a))?;
        self.record(loc, ReadValue::Account(read));
        self.mix(read.balance.as_limbs()[0] ^ read.nonce << 40 ^ u64::from(read.exists));
        Ok(match self.written(&loc) {
            Some(WriteValue::Credit(amount)) => read.credited(*amount),
            _ => read,
        })
    }

    fn slot(&mut self, a: u64, s: u64) -> Result<U256, EngineError> {
        let loc = Loc::Storage(addr(a), u(s));
        if let Some(WriteValue::Storage(value)) = self.written(&loc) {
            return Ok(*value);
        }
        let value = self.view.storage(addr(a), u(s))?;
        self.record(loc, ReadValue::Storage(value));
        self.mix(value.as_limbs()[0]);
        Ok(value)
    }

    fn step(&mut self, op: &Op) -> Result<bool, EngineError> {
        match *op {
            Op::ReadAccount(a) => {
                self.account(a)?;
            }
            Op::ReadCode(a) => {
                let code = self.view.code(addr(a))?;
                self.record(Loc::Code(addr(a)), ReadValue::Code(code.hash));
                self.mix(code.bytes.len() as u64);
            }
            Op::ReadSlot(a, s) => {
                self.slot(a, s)?;
            }
            Op::SetAccount(a) => {
                let current = self.account(a)?;
                let balance = current.balance.wrapping_add(u(self.digest % 1000));
                self.write(Loc::Account(addr(a)), WriteValue::Account(AccountTriple { balance, nonce: current.nonce + 1, exists: true }));
            }
            Op::Credit(a, amount) => {
                let loc = Loc::Account(addr(a));
                let value = match self.written(&loc) {
                    Some(WriteValue::Account(account)) => WriteValue::Account(account.credited(u(amount))),
                    Some(WriteValue::Credit(earlier)) => WriteValue::Credit(earlier.wrapping_add(u(amount))),
                    _ => WriteValue::Credit(u(amount)),
                };
                self.write(loc, value);
            }
            Op::SetSlot(a, s) => {
                let value = u(self.digest % 997 + 1);
                self.write(Loc::Storage(addr(a), u(s)), WriteValue::Storage(value));
            }
            Op::SetCode(a) => {
                let bytes = self.digest.to_be_bytes();
                self.write(Loc::Code(addr(a)), WriteValue::Code(code(&bytes)));
            }
            Op::Wipe(a) => {
                self.writes.retain(|(loc, _)| !matches!(loc, Loc::Storage(owner, _) if *owner == addr(a)));
                self.write(Loc::Wipe(addr(a)), WriteValue::Wipe);
            }
            Op::RequireBalance(a, amount) => {
                if self.account(a)?.balance < u(amount) {
                    return Ok(false);
                }
            }
            Op::FailIfZero(a, s) => {
                if self.slot(a, s)?.is_zero() {
                    return Err(EngineError::MissingState(format!("slot {s} of {a} is zero in tx {}", self.index)));
                }
            }
            Op::PanicIfZero(a, s) => {
                if self.slot(a, s)?.is_zero() {
                    panic!("slot {s} of {a} is zero in tx {}", self.index);
                }
            }
            Op::Spin(duration) => spin(duration),
            Op::HiddenRead(a, s) => {
                let value = self.view.storage(addr(a), u(s))?;
                self.mix(value.as_limbs()[0]);
            }
            Op::Branch(a, s, b, t) => {
                let zero = self.slot(a, s)?.is_zero();
                self.step(&Op::SetSlot(b, if zero { t } else { t + 1 }))?;
            }
        }
        Ok(true)
    }
}

fn spin(duration: Duration) {
    let start = Instant::now();
    while start.elapsed() < duration {
        std::hint::spin_loop();
    }
}

/// Execute synthetic transaction `index` (`program`) against `view`.
fn run_program(index: usize, program: &[Op], view: &dyn View) -> Result<TxResult, EngineError> {
    let mut tx = Synthetic { view, index, digest: index as u64, reads: Vec::new(), writes: Vec::new() };
    for op in program {
        if !tx.step(op)? {
            return Ok(TxResult { index, valid: false, reads: tx.reads, error: Some("balance too low".into()), ..TxResult::default() });
        }
    }
    Ok(TxResult { index, valid: true, success: true, gas_used: 21_000 + tx.digest % 10_000, reads: tx.reads, writes: tx.writes, ..TxResult::default() })
}

type Outcome = Result<Vec<TxResult>, EngineError>;

fn sequential(programs: &[Vec<Op>], pre: &PreState) -> Outcome {
    execute_sequential_with(programs.len(), pre, |index, view| run_program(index, &programs[index], view))
}

fn parallel(programs: &[Vec<Op>], pre: &PreState, threads: usize) -> (Outcome, Option<ParallelStats>) {
    match execute_parallel_with(programs.len(), pre, threads, |index, view| run_program(index, &programs[index], view)) {
        Ok((results, stats)) => (Ok(results), Some(stats)),
        Err(error) => (Err(error), None),
    }
}

/// The window settings the checks run under: the default (wide open), closed from the start, and
/// closed but reopening after every 32 transactions of a burst (bursts, their publication).
const TUNINGS: [Tuning; 3] =
    [Tuning { window: usize::MAX, tolerated: 2 }, Tuning { window: 0, tolerated: 2 }, Tuning { window: 0, tolerated: 32 }];

fn parallel_tuned(programs: &[Vec<Op>], pre: &PreState, threads: usize, tuning: Tuning) -> (Outcome, Option<ParallelStats>) {
    let exec = |index: usize, view: &dyn View| run_program(index, &programs[index], view);
    match execute_tuned(programs.len(), pre, threads, exec, tuning) {
        Ok((results, stats)) => (Ok(results), Some(stats)),
        Err(error) => (Err(error), None),
    }
}

/// Parallel execution on 1 to 4 threads, under each window setting, gives exactly the sequential
/// outcome.
fn check_equal(name: &str, programs: &[Vec<Op>], pre: &PreState) -> Outcome {
    let expected = sequential(programs, pre);
    for tuning in TUNINGS {
        for threads in [1, 2, 3, 4] {
            let (outcome, stats) = parallel_tuned(programs, pre, threads, tuning);
            assert!(outcome == expected, "{name}: {threads} threads, {tuning:?}: differs from sequential execution");
            if let Some(stats) = stats {
                assert!(stats.executions >= outcome.as_ref().map_or(0, Vec::len), "{name}: fewer executions than results");
            }
        }
    }
    expected
}

const BENEFICIARY: u64 = 0xbeef;

/// Independent value transfers: distinct senders and recipients, one credited beneficiary.
fn transfers(n: usize) -> Vec<Vec<Op>> {
    (0..n as u64).map(|i| vec![Op::SetAccount(1_000 + i), Op::Credit(1_000_000 + i, i + 1), Op::Credit(BENEFICIARY, 21)]).collect()
}

fn transfers_pre(n: usize) -> PreState {
    pre_state((0..n as u64).map(|i| (1_000 + i, pre_account(1_000_000, i % 7, &[]))).collect())
}

// ---------------------------------------------------------------------------------------------
// The database: PreState and CodeCache

#[test]
fn pre_state_reads_accounts_code_and_storage() {
    let mut account = pre_account(5, 1, &[(1, 9)]);
    account.code = code(&[0x60, 0x00]);
    let pre = pre_state(vec![(1, account)]);
    assert_eq!(pre.account(addr(1)).unwrap(), triple(5, 1, true));
    assert_eq!(pre.account(addr(2)).unwrap(), AccountTriple::EMPTY);
    assert_eq!(pre.code(addr(1)).unwrap().bytes.as_ref(), &[0x60, 0x00]);
    assert_eq!(pre.code(addr(2)).unwrap().hash, EMPTY_CODE_HASH);
    assert_eq!(pre.storage(addr(1), u(1)).unwrap(), u(9));
    assert_eq!(pre.storage(addr(1), u(2)).unwrap(), U256::ZERO);
    assert_eq!(pre.storage(addr(2), u(1)).unwrap(), U256::ZERO);
}

#[test]
fn code_cache_analyses_each_code_once() {
    let cache = CodeCache::default();
    let first = cache.get_or_insert(&[0x60, 0x01, 0x00]);
    let second = cache.get_or_insert(&[0x60, 0x01, 0x00]);
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(first.hash, crate::types::keccak256([0x60, 0x01, 0x00]));
    assert_eq!(*first, *code(&[0x60, 0x01, 0x00]));
    let empty = cache.get_or_insert(&[]);
    assert!(Arc::ptr_eq(&empty, &empty_code()));
    assert_eq!(empty.hash, EMPTY_CODE_HASH);
    assert!(empty.is_empty() && !first.is_empty());
    assert_ne!(*first, *cache.get_or_insert(&[0x00]));
}

// ---------------------------------------------------------------------------------------------
// SequentialState

#[test]
fn sequential_state_folds_credits() {
    let pre = pre_state(vec![(1, pre_account(5, 1, &[]))]);
    let mut state = SequentialState::new(&pre);
    state.apply(&[(Loc::Account(addr(1)), WriteValue::Credit(u(7)))]).unwrap();
    assert_eq!(state.account(addr(1)).unwrap(), triple(12, 1, true));
    // A credit to an absent account makes it exist, even a credit of 0 (a touch).
    state.apply(&[(Loc::Account(addr(2)), WriteValue::Credit(U256::ZERO))]).unwrap();
    assert_eq!(state.account(addr(2)).unwrap(), triple(0, 0, true));
    state.apply(&[(Loc::Account(addr(1)), WriteValue::Account(triple(3, 2, true)))]).unwrap();
    state.apply(&[(Loc::Account(addr(1)), WriteValue::Credit(u(4)))]).unwrap();
    assert_eq!(state.account(addr(1)).unwrap(), triple(7, 2, true));
    assert_eq!(state.account(addr(3)).unwrap(), AccountTriple::EMPTY);
}

#[test]
fn sequential_state_wipes_before_slot_writes() {
    let pre = pre_state(vec![(1, pre_account(0, 0, &[(1, 9), (2, 3)])), (2, pre_account(0, 0, &[(1, 8)]))]);
    let mut state = SequentialState::new(&pre);
    state.apply(&[(Loc::Storage(addr(1), u(1)), WriteValue::Storage(u(4)))]).unwrap();
    assert_eq!(state.storage(addr(1), u(1)).unwrap(), u(4));
    // The slot write comes first in the list, the wipe still applies before it.
    state.apply(&[(Loc::Storage(addr(1), u(2)), WriteValue::Storage(u(5))), (Loc::Wipe(addr(1)), WriteValue::Wipe)]).unwrap();
    assert_eq!(state.storage(addr(1), u(1)).unwrap(), U256::ZERO);
    assert_eq!(state.storage(addr(1), u(2)).unwrap(), u(5));
    assert_eq!(state.storage(addr(1), u(3)).unwrap(), U256::ZERO);
    assert_eq!(state.storage(addr(2), u(1)).unwrap(), u(8), "another account's storage is untouched");
    state.apply(&[(Loc::Storage(addr(1), u(1)), WriteValue::Storage(u(6)))]).unwrap();
    assert_eq!(state.storage(addr(1), u(1)).unwrap(), u(6));
}

#[test]
fn sequential_state_code_and_bad_writes() {
    let pre = pre_state(vec![(1, pre_account(0, 0, &[]))]);
    let mut state = SequentialState::new(&pre);
    state.apply(&[(Loc::Code(addr(1)), WriteValue::Code(code(&[0xfe])))]).unwrap();
    assert_eq!(state.code(addr(1)).unwrap().bytes.as_ref(), &[0xfe]);
    assert_eq!(state.code(addr(2)).unwrap().hash, EMPTY_CODE_HASH);
    // A value that does not fit its location is an error, and nothing of the write set applies.
    let bad = [(Loc::Storage(addr(1), u(1)), WriteValue::Storage(u(1))), (Loc::Account(addr(1)), WriteValue::Storage(u(1)))];
    assert!(matches!(state.apply(&bad), Err(EngineError::Internal(_))));
    assert_eq!(state.storage(addr(1), u(1)).unwrap(), U256::ZERO);
}

// ---------------------------------------------------------------------------------------------
// VersionedState

fn value<T>(read: Result<T, EngineError>) -> T {
    read.unwrap()
}

#[test]
fn versioned_state_reads_latest_write_plus_later_credits() {
    let pre = pre_state(vec![(1, pre_account(5, 1, &[]))]);
    let state = VersionedState::new(&pre, 16);
    let account = Loc::Account(addr(1));
    state.set_writes(4, &[(account, WriteValue::Credit(u(10)))], &[]);
    state.set_writes(2, &[(account, WriteValue::Account(triple(100, 2, true)))], &[]);
    state.set_writes(6, &[(account, WriteValue::Credit(u(1)))], &[]);
    state.set_writes(1, &[(account, WriteValue::Credit(u(1_000)))], &[]);
    let expected = [(0, triple(5, 1, true)), (1, triple(5, 1, true)), (2, triple(1_005, 1, true)), (3, triple(100, 2, true)),
        (5, triple(110, 2, true)), (6, triple(110, 2, true)), (7, triple(111, 2, true)), (9, triple(111, 2, true))];
    for (index, account) in expected {
        assert_eq!(value(state.account(addr(1), index)), account, "read at {index}");
    }
    assert_eq!(value(state.read(account, 7)), ReadValue::Account(triple(111, 2, true)));
    // Credits alone on an absent account: it exists from the first credit on.
    state.set_writes(3, &[(Loc::Account(addr(2)), WriteValue::Credit(U256::ZERO))], &[]);
    assert_eq!(value(state.account(addr(2), 3)), AccountTriple::EMPTY);
    assert_eq!(value(state.account(addr(2), 4)), triple(0, 0, true));
}

#[test]
fn versioned_state_wipes_and_slots() {
    let pre = pre_state(vec![(1, pre_account(0, 0, &[(1, 9), (2, 3)]))]);
    let state = VersionedState::new(&pre, 16);
    state.set_writes(3, &[(Loc::Storage(addr(1), u(1)), WriteValue::Storage(u(4)))], &[]);
    state.set_writes(5, &[(Loc::Storage(addr(1), u(2)), WriteValue::Storage(u(5))), (Loc::Wipe(addr(1)), WriteValue::Wipe)], &[]);
    state.set_writes(7, &[(Loc::Storage(addr(1), u(1)), WriteValue::Storage(u(6)))], &[]);
    let slot = |s: u64, index: usize| value(state.storage(addr(1), u(s), index));
    assert_eq!((slot(1, 3), slot(1, 4), slot(1, 6), slot(1, 8)), (u(9), u(4), U256::ZERO, u(6)));
    assert_eq!((slot(2, 5), slot(2, 6), slot(2, 9)), (u(3), u(5), u(5)), "a transaction's own wipe precedes its slot writes");
    assert_eq!((slot(3, 5), slot(3, 6)), (U256::ZERO, U256::ZERO));
    assert!(matches!(state.read(Loc::Wipe(addr(1)), 9), Err(EngineError::Internal(_))));
}

#[test]
fn versioned_state_code() {
    let pre = pre_state(vec![]);
    let state = VersionedState::new(&pre, 16);
    let new = code(&[0x60, 0x00]);
    state.set_writes(1, &[(Loc::Code(addr(1)), WriteValue::Code(new.clone()))], &[]);
    assert_eq!(value(state.code(addr(1), 1)).hash, EMPTY_CODE_HASH);
    assert!(Arc::ptr_eq(&value(state.code(addr(1), 2)), &new));
    assert_eq!(value(state.read(Loc::Code(addr(1)), 3)), ReadValue::Code(new.hash));
}

#[test]
fn versioned_state_updates() {
    let pre = pre_state(vec![(1, pre_account(5, 0, &[(1, 9)]))]);
    let state = VersionedState::new(&pre, 16);
    let slot = Loc::Storage(addr(1), u(1));
    let account = Loc::Account(addr(1));
    let first = [(slot, WriteValue::Storage(u(1))), (account, WriteValue::Credit(u(1)))];
    state.set_writes(2, &first, &[]);
    state.set_writes(4, &[(account, WriteValue::Credit(u(2)))], &[]);
    // The same locations again, other values.
    let second = [(account, WriteValue::Credit(u(3))), (slot, WriteValue::Storage(u(7)))];
    state.set_writes(2, &second, &first);
    assert_eq!(value(state.storage(addr(1), u(1), 3)), u(7));
    assert_eq!(value(state.account(addr(1), 5)), triple(10, 0, true));
    assert_eq!(value(state.storage(addr(1), u(1), 2)), u(9), "a transaction does not read its own writes");
    // A smaller write set: the dropped slot reads the pre-state again.
    let third = [(account, WriteValue::Credit(u(3)))];
    state.set_writes(2, &third, &second);
    assert_eq!(value(state.storage(addr(1), u(1), 3)), u(9));
    assert_eq!(value(state.account(addr(1), 5)), triple(10, 0, true));
    // An absolute write replacing a credit at the same position.
    state.set_writes(2, &[(account, WriteValue::Account(triple(50, 3, true)))], &third);
    assert_eq!(value(state.account(addr(1), 3)), triple(50, 3, true));
    assert_eq!(value(state.account(addr(1), 5)), triple(52, 3, true));
    // A wipe, then the same transaction without it: the slots come back.
    let wipe = [(Loc::Wipe(addr(1)), WriteValue::Wipe)];
    state.set_writes(6, &wipe, &[]);
    state.set_writes(8, &[(slot, WriteValue::Storage(u(2)))], &[]);
    assert_eq!((value(state.storage(addr(1), u(1), 7)), value(state.storage(addr(1), u(1), 9))), (U256::ZERO, u(2)));
    state.set_writes(6, &[(Loc::Code(addr(1)), WriteValue::Code(code(&[1])))], &wipe);
    assert_eq!(value(state.storage(addr(1), u(1), 7)), u(9));
    assert_eq!(value(state.code(addr(1), 7)).bytes.as_ref(), &[1]);
}

#[test]
fn versioned_state_is_shared_between_threads() {
    let pre = pre_state(vec![]);
    let state = VersionedState::new(&pre, 16);
    std::thread::scope(|scope| {
        for part in 0..4 {
            let state = &state;
            scope.spawn(move || {
                for index in (part..1_000).step_by(4) {
                    state.set_writes(index, &[(Loc::Account(addr(BENEFICIARY)), WriteValue::Credit(u(1)))], &[]);
                }
            });
        }
    });
    assert_eq!(value(state.account(addr(BENEFICIARY), 1_000)), triple(1_000, 0, true));
    assert_eq!(value(state.account(addr(BENEFICIARY), 10)), triple(10, 0, true));
}

// ---------------------------------------------------------------------------------------------
// Sequential executor

#[test]
fn sequential_executor_applies_in_order_and_stops_at_the_first_invalid() {
    let pre = pre_state(vec![(1, pre_account(0, 0, &[]))]);
    let programs = vec![
        vec![Op::Credit(1, 5)],
        vec![Op::RequireBalance(1, 5), Op::SetSlot(1, 1)],
        vec![Op::RequireBalance(1, 6), Op::SetSlot(1, 2)],
        vec![Op::SetSlot(1, 3)],
    ];
    let results = sequential(&programs, &pre).unwrap();
    assert_eq!(results.len(), 3);
    assert!(results[1].valid && !results[2].valid && results[2].writes.is_empty());
    assert_eq!(first_invalid(&results), Some((2, "balance too low")));
    assert_eq!(first_invalid(&results[..2]), None);
}

#[test]
fn sequential_executor_turns_panics_into_errors() {
    let pre = pre_state(vec![]);
    let programs = vec![vec![Op::Credit(1, 1)], vec![Op::PanicIfZero(1, 1)]];
    match sequential(&programs, &pre) {
        Err(EngineError::Internal(message)) => assert!(message.contains("slot 1 of 1 is zero"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn with_stack_runs_deep_recursion() {
    // ~ 600 bytes a frame: 100,000 frames need ~60 MiB, far beyond a default thread stack.
    fn depth(n: u32) -> u32 {
        let buffer = std::hint::black_box([n as u8; 512]);
        if n == 0 {
            return 0;
        }
        1 + depth(n - 1) + u32::from(buffer[0] == 1 && n == 7)
    }
    assert_eq!(with_stack(|| depth(100_000)), 100_000);
    assert_eq!(with_stack(|| with_stack(|| 7)), 7, "nested: runs in place");
    let panicked = std::panic::catch_unwind(|| with_stack(|| panic!("inside")));
    assert!(panicked.is_err(), "a panic resumes on the caller");
}

// ---------------------------------------------------------------------------------------------
// Parallel executor against the sequential one

#[test]
fn parallel_independent_transfers_with_shared_beneficiary() {
    let n = 2_000;
    let results = check_equal("transfers", &transfers(n), &transfers_pre(n)).unwrap();
    assert_eq!(results.len(), n);
    let (_, stats) = parallel(&transfers(n), &transfers_pre(n), 2);
    let stats = stats.unwrap();
    assert_eq!(stats.aborts, 0, "credits to one beneficiary must not conflict: {stats:?}");
}

#[test]
fn parallel_serial_chain() {
    // Each transaction reads the slot the previous one wrote and writes it.
    let programs: Vec<Vec<Op>> = (0..300).map(|_| vec![Op::ReadSlot(7, 0), Op::SetSlot(7, 0), Op::Credit(BENEFICIARY, 1)]).collect();
    check_equal("chain", &programs, &pre_state(vec![])).unwrap();
    // The same through a balance: absolute writes of one account.
    let programs: Vec<Vec<Op>> = (0..300).map(|_| vec![Op::SetAccount(7)]).collect();
    check_equal("account chain", &programs, &pre_state(vec![(7, pre_account(1, 0, &[]))])).unwrap();
}

#[test]
fn parallel_hot_slot_every_kth() {
    for k in [2, 5, 17] {
        let mut programs = transfers(600);
        for (i, program) in programs.iter_mut().enumerate() {
            if i % k == 0 {
                program.extend([Op::ReadSlot(9, 0), Op::SetSlot(9, 0)]);
            }
        }
        check_equal(&format!("hot slot every {k}"), &programs, &transfers_pre(600)).unwrap();
    }
}

#[test]
fn parallel_wipes_then_slot_reads() {
    let mut rng = Rng(7);
    let pre = pre_state(vec![(5, pre_account(0, 0, &[(0, 1), (1, 2), (2, 3), (3, 4)]))]);
    let programs: Vec<Vec<Op>> = (0..400)
        .map(|i| match i % 9 {
            0 => vec![Op::Wipe(5), Op::SetSlot(5, rng.below(4))],
            4 => vec![Op::ReadSlot(5, rng.below(4)), Op::Wipe(5)],
            _ => vec![Op::ReadSlot(5, rng.below(4)), Op::ReadSlot(5, rng.below(4)), Op::SetSlot(100 + i, 0)],
        })
        .collect();
    check_equal("wipes", &programs, &pre).unwrap();
}

#[test]
fn parallel_credits_then_balance_reads() {
    let programs: Vec<Vec<Op>> = (0..500)
        .map(|i| match i % 7 {
            3 => vec![Op::SetAccount(BENEFICIARY)],
            5 => vec![Op::ReadAccount(BENEFICIARY), Op::SetSlot(200 + i, 0)],
            _ => vec![Op::Credit(BENEFICIARY, i + 1), Op::Credit(300 + i, 1)],
        })
        .collect();
    check_equal("credits then reads", &programs, &pre_state(vec![])).unwrap();
}

#[test]
fn parallel_invalid_then_valid() {
    // Transaction i requires every credit before it: in a stale view it is invalid, in the final
    // order valid.
    let mut credited = 0;
    let programs: Vec<Vec<Op>> = (0..400u64)
        .map(|i| {
            if i % 4 == 3 {
                vec![Op::RequireBalance(1, credited), Op::SetSlot(1, i)]
            } else {
                credited += 10;
                vec![Op::Credit(1, 10)]
            }
        })
        .collect();
    let results = check_equal("invalid then valid", &programs, &pre_state(vec![])).unwrap();
    assert_eq!(results.len(), 400);
    assert!(results.iter().all(|r| r.valid));
    // One requirement too many: the block stops there, in parallel as sequentially.
    let mut programs = programs;
    programs[203] = vec![Op::RequireBalance(1, 1_000_000)];
    let results = check_equal("invalid", &programs, &pre_state(vec![])).unwrap();
    assert_eq!(results.len(), 204);
    assert_eq!(first_invalid(&results).map(|(index, _)| index), Some(203));
}

#[test]
fn parallel_errors_and_panics_of_final_transactions() {
    let pre = pre_state(vec![]);
    let mut programs = transfers(300);
    programs[150] = vec![Op::FailIfZero(3, 3)];
    programs[200] = vec![Op::RequireBalance(1, 1)]; // invalid, but after the error
    assert!(matches!(check_equal("error", &programs, &pre), Err(EngineError::MissingState(_))));
    let mut programs = transfers(300);
    programs[100] = vec![Op::RequireBalance(1, 1)]; // invalid before the error: no error
    programs[150] = vec![Op::FailIfZero(3, 3)];
    assert_eq!(check_equal("invalid first", &programs, &pre).unwrap().len(), 101);
    let mut programs = transfers(300);
    programs[150] = vec![Op::PanicIfZero(3, 3)];
    assert!(matches!(check_equal("panic", &programs, &pre), Err(EngineError::Internal(_))));
}

#[test]
fn parallel_speculative_errors_and_panics_are_not_reported() {
    // Transaction 0 sets the slot (slowly): later ones fail or panic only in a stale view.
    let pre = pre_state(vec![]);
    let mut programs: Vec<Vec<Op>> = vec![vec![Op::Spin(Duration::from_micros(300)), Op::SetSlot(3, 3)]];
    for i in 1..200 {
        programs.push(match i % 3 {
            0 => vec![Op::FailIfZero(3, 3), Op::SetSlot(50 + i, 0)],
            1 => vec![Op::PanicIfZero(3, 3), Op::SetSlot(50 + i, 0)],
            _ => vec![Op::Credit(BENEFICIARY, 1)],
        });
    }
    let results = check_equal("speculative failures", &programs, &pre).unwrap();
    assert_eq!(results.len(), 200);
}

#[test]
fn parallel_bursts_publish_what_later_transactions_read() {
    // Chains (bursts) with credits, wipes, code and slot writes, each followed by transactions
    // that read all of it: speculated after a probe, they see the bursts' merged write sets.
    let pre = pre_state(vec![(5, pre_account(7, 1, &[(0, 1), (1, 2), (2, 3)]))]);
    let mut programs = Vec::new();
    for round in 0..6u64 {
        for i in 0..20u64 {
            programs.push(match i % 5 {
                0 => vec![Op::ReadSlot(9, 0), Op::SetSlot(9, 0), Op::Credit(5, i), Op::Credit(BENEFICIARY, 1)],
                1 => vec![Op::ReadSlot(9, 0), Op::SetSlot(9, 0), Op::Wipe(5), Op::SetSlot(5, round % 3)],
                2 => vec![Op::ReadSlot(9, 0), Op::SetSlot(9, 0), Op::SetCode(6), Op::SetAccount(6)],
                3 => vec![Op::ReadSlot(9, 0), Op::SetSlot(9, 0), Op::Credit(6, 3)],
                _ => vec![Op::ReadSlot(9, 0), Op::SetSlot(9, 0)],
            });
        }
        for i in 0..10u64 {
            programs.push(vec![
                Op::ReadAccount(5),
                Op::ReadAccount(6),
                Op::ReadAccount(BENEFICIARY),
                Op::ReadCode(6),
                Op::ReadSlot(5, i % 3),
                Op::SetSlot(100 + round * 10 + i, 0),
            ]);
        }
    }
    check_equal("bursts", &programs, &pre).unwrap();
}

#[test]
fn parallel_reads_the_executor_did_not_record() {
    let programs: Vec<Vec<Op>> = (0..300).map(|_| vec![Op::HiddenRead(7, 0), Op::SetSlot(7, 0), Op::Credit(BENEFICIARY, 1)]).collect();
    check_equal("hidden chain", &programs, &pre_state(vec![])).unwrap();
}

#[test]
fn parallel_reexecution_that_drops_a_location() {
    // Transaction 1 runs while 0 (slow) has not written: it writes slot 2/0. Run again, it writes
    // 2/1 instead: transaction 2, which read 2/0 from its first run, must not commit as it is.
    let programs = vec![
        vec![Op::Spin(Duration::from_micros(200)), Op::SetSlot(1, 0)],
        vec![Op::Branch(1, 0, 2, 0)],
        vec![Op::ReadSlot(2, 0), Op::SetSlot(3, 0)],
        vec![Op::ReadSlot(2, 1), Op::SetSlot(3, 1)],
    ];
    for _ in 0..50 {
        check_equal("dropped location", &programs, &pre_state(vec![])).unwrap();
    }
}

/// Random transactions over a few addresses and slots: dense conflicts of every kind.
fn random_block(seed: u64, n: usize) -> (Vec<Vec<Op>>, PreState) {
    let mut rng = Rng(seed);
    // One block in three may fail, one in three may hold invalid transactions: every ending occurs.
    let (may_fail, may_be_invalid) = (seed % 3 == 1, seed % 3 == 2);
    let addresses = 2 + rng.below(6);
    let pre = pre_state((0..addresses).map(|a| (a, pre_account(rng.below(50), rng.below(3), &[(0, 1), (1, rng.below(3))]))).collect());
    let programs = (0..n)
        .map(|_| {
            let len = 1 + rng.below(6);
            (0..len)
                .map(|_| {
                    let (a, s) = (rng.below(addresses), rng.below(3));
                    match rng.below(100) {
                        0..=14 => Op::ReadAccount(a),
                        15..=17 => Op::ReadCode(a),
                        18..=34 => Op::ReadSlot(a, s),
                        35..=44 => Op::SetAccount(a),
                        45..=62 => Op::Credit(a, rng.below(5)),
                        63..=76 => Op::SetSlot(a, s),
                        77..=79 => Op::SetCode(a),
                        80..=82 => Op::Wipe(a),
                        83 => Op::Branch(a, s, rng.below(addresses), rng.below(3)),
                        84 => Op::HiddenRead(a, s),
                        85..=87 if may_be_invalid => Op::RequireBalance(a, rng.below(80)),
                        88..=89 if may_fail => Op::FailIfZero(a, 0),
                        85..=89 => Op::ReadAccount(a),
                        _ => Op::Spin(Duration::from_micros(rng.below(20))),
                    }
                })
                .collect()
        })
        .collect();
    (programs, pre)
}

#[test]
fn parallel_random_conflicts() {
    let mut outcomes = [0usize; 3]; // complete blocks, blocks ending invalid, blocks ending in error
    for seed in 0..150 {
        let (programs, pre) = random_block(seed, 20 + (seed as usize % 5) * 40);
        match check_equal(&format!("random seed {seed}"), &programs, &pre) {
            Ok(results) if results.len() == programs.len() => outcomes[0] += 1,
            Ok(_) => outcomes[1] += 1,
            Err(_) => outcomes[2] += 1,
        }
    }
    // The generator must exercise every ending, or the test proves less than it says.
    assert!(outcomes.iter().all(|&count| count >= 5), "outcomes {outcomes:?}");
}

#[test]
fn parallel_random_conflicts_with_more_threads_than_cores() {
    for seed in 1_000..1_020 {
        let (programs, pre) = random_block(seed, 150);
        let expected = sequential(&programs, &pre);
        for tuning in TUNINGS {
            let (outcome, _) = parallel_tuned(&programs, &pre, 8, tuning);
            assert!(outcome == expected, "seed {seed}, {tuning:?}");
        }
    }
}

#[test]
fn parallel_trivial_blocks() {
    let pre = pre_state(vec![]);
    let (outcome, stats) = parallel(&[], &pre, 4);
    assert_eq!(outcome.unwrap(), Vec::new());
    assert_eq!(stats.unwrap().executions, 0);
    check_equal("one", &[vec![Op::Credit(1, 1)]], &pre).unwrap();
    let (_, stats) = parallel(&transfers(3), &transfers_pre(3), 16);
    assert_eq!(stats.unwrap().threads, 3, "no more threads than transactions");
}

#[test]
fn parallel_stats_count_reexecutions() {
    let programs: Vec<Vec<Op>> = (0..200).map(|_| vec![Op::ReadSlot(7, 0), Op::SetSlot(7, 0)]).collect();
    let (outcome, stats) = parallel(&programs, &pre_state(vec![]), 2);
    let stats = stats.unwrap();
    assert_eq!(outcome.unwrap().len(), 200);
    assert_eq!(stats.transactions, 200);
    assert_eq!(stats.reexecuted(), stats.executions - 200);
    assert!(stats.executions >= 200 && stats.aborts <= stats.executions && stats.elapsed_s > 0.0, "{stats:?}");
}

// ---------------------------------------------------------------------------------------------
// Micro-benchmark: `cargo test --release -- --ignored --nocapture bench`

/// Time `run(threads)` (0: sequential) for each thread count, rounds interleaved so that a burst of
/// load from elsewhere hits all alike: per thread count, the best and the median time, and the
/// last stats.
fn bench_runs(rounds: usize, mut run: impl FnMut(usize) -> Option<ParallelStats>) -> Vec<(usize, Duration, Duration, Option<ParallelStats>)> {
    let counts = [0, 2, 4];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); counts.len()];
    let mut stats = vec![None; counts.len()];
    for _ in 0..rounds {
        for (i, &threads) in counts.iter().enumerate() {
            let start = Instant::now();
            stats[i] = run(threads);
            times[i].push(start.elapsed());
        }
    }
    counts
        .iter()
        .zip(times)
        .zip(stats)
        .map(|((&threads, mut times), stats)| {
            times.sort();
            (threads, times[0], times[times.len() / 2], stats)
        })
        .collect()
}

fn report(name: &str, n: usize, runs: &[(usize, Duration, Duration, Option<ParallelStats>)]) {
    let per_tx = |time: &Duration| time.as_secs_f64() * 1e6 / n as f64;
    let (_, seq_best, seq_median, _) = &runs[0];
    println!("{name}: sequential {:.2} µs/tx (median {:.2})", per_tx(seq_best), per_tx(seq_median));
    for (threads, best, median, stats) in &runs[1..] {
        let stats = stats.as_ref().expect("parallel runs give stats");
        println!(
            "{name}: {threads} threads {:.2} µs/tx, {:.2}x sequential (median {:.2}x); executions {} validations {} aborts {}",
            per_tx(best),
            seq_best.as_secs_f64() / best.as_secs_f64(),
            seq_median.as_secs_f64() / median.as_secs_f64(),
            stats.executions,
            stats.validations,
            stats.aborts,
        );
    }
}

fn bench_block(name: &str, programs: &[Vec<Op>], pre: &PreState) {
    let expected = sequential(programs, pre);
    let runs = bench_runs(20, |threads| {
        if threads == 0 {
            with_stack(|| sequential(programs, pre)).unwrap();
            return None;
        }
        let (outcome, stats) = parallel(programs, pre, threads);
        assert!(outcome == expected);
        stats
    });
    report(name, programs.len(), &runs);
}

#[test]
#[ignore = "a benchmark: run with --ignored --nocapture"]
fn bench_parallel_overhead() {
    let n = 5_000;
    let pre = transfers_pre(n);
    bench_block("trivial transfers", &transfers(n), &pre);
    for micros in [5, 20] {
        let programs: Vec<Vec<Op>> = transfers(n)
            .into_iter()
            .map(|mut program| {
                program.push(Op::Spin(Duration::from_micros(micros)));
                program
            })
            .collect();
        bench_block(&format!("transfers of {micros} µs"), &programs, &pre);
        let chain: Vec<Vec<Op>> =
            (0..n).map(|_| vec![Op::ReadSlot(7, 0), Op::Spin(Duration::from_micros(micros)), Op::SetSlot(7, 0), Op::Credit(BENEFICIARY, 1)]).collect();
        bench_block(&format!("chain of {micros} µs"), &chain, &pre);
    }
}

/// A block of `n` legacy ETH transfers (distinct senders and recipients) for the real executor.
fn native_transfers(n: usize) -> crate::types::NativeBlock {
    native_block(n, false)
}

/// The same transfers, all from one sender (nonces 0, 1, ...): a fully dependent chain.
fn native_chain(n: usize) -> crate::types::NativeBlock {
    native_block(n, true)
}

fn native_block(n: usize, one_sender: bool) -> crate::types::NativeBlock {
    use crate::types::{BlockEnv, NativeBlock, SpecId, TxEnv, B256};
    let env = BlockEnv {
        spec: SpecId::SHANGHAI,
        number: 17_000_000,
        coinbase: addr(BENEFICIARY),
        timestamp: 1_700_000_000,
        difficulty: U256::ZERO,
        mix_hash: B256::ZERO,
        gas_limit: 30_000_000,
        base_fee: Some(u(7)),
        excess_blob_gas: None,
        chain_id: 1,
        block_hashes: Default::default(),
    };
    let txs = (0..n as u64)
        .map(|i| TxEnv {
            tx_type: 0,
            sender: addr(if one_sender { 1_000 } else { 1_000 + i }),
            to: Some(addr(1_000_000 + i)),
            nonce: if one_sender { i } else { i % 7 },
            gas_limit: 21_000,
            max_fee_per_gas: u(10_000_000_000),
            max_priority_fee_per_gas: u(10_000_000_000),
            value: u(1 + i),
            data: Bytes::new(),
            access_list: Vec::new(),
            max_fee_per_blob_gas: U256::ZERO,
            blob_hashes: Vec::new(),
            intrinsic_gas: 21_000,
            static_error: None,
        })
        .collect();
    let mut pre = pre_state((0..n as u64).map(|i| (1_000 + i, pre_account(1_000_000_000_000_000_000, i % 7, &[]))).collect());
    if one_sender {
        pre.accounts.get_mut(&addr(1_000)).expect("the sender").balance = U256::from(10u64).pow(U256::from(21u64));
        pre.accounts.get_mut(&addr(1_000)).expect("the sender").nonce = 0;
    }
    NativeBlock { env, txs, pre, codes: CodeCache::default() }
}

/// Results with their read and write sets in location order (a `TxResult` promises no order).
fn normalized(mut results: Vec<TxResult>) -> Vec<TxResult> {
    for result in &mut results {
        result.reads.sort_by_key(|(loc, _)| *loc);
        result.writes.sort_by_key(|(loc, _)| *loc);
    }
    results
}

#[test]
#[ignore = "a benchmark: run with --ignored --nocapture"]
fn bench_native_transfers() {
    bench_native("native transfers", &native_transfers(5_000));
    bench_native("native chain", &native_chain(5_000));
}

fn bench_native(name: &str, block: &crate::types::NativeBlock) {
    let expected = normalized(execute_sequential(block).unwrap());
    assert_eq!(expected.len(), 5_000);
    assert!(expected.iter().all(|r| r.valid && r.success), "{:?}", expected.iter().find(|r| !r.valid));
    let runs = bench_runs(20, |threads| {
        if threads == 0 {
            execute_sequential(block).unwrap();
            return None;
        }
        let (results, stats) = execute_parallel(block, threads).unwrap();
        assert!(normalized(results) == expected);
        Some(stats)
    });
    report(name, 5_000, &runs);
}

