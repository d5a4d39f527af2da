//! A burst: transactions the commit wave executes one after another, without speculation, against
//! a private overlay on the multi-version state (see `parallel.rs`). Nobody else reads the burst's
//! writes until it is published as one merged write set, so a serial chain pays sequential
//! execution's costs, not the shared state's. The burst also tells when speculation would work
//! again: when its transactions stop reading what the few just before them wrote.

use std::sync::Arc;

use crate::exec::hash::{FastMap, FastSet};
use crate::exec::versioned::VersionedState;
use crate::types::{AccountTriple, Address, Code, EngineError, Loc, View, WriteValue, U256};

/// A balance the burst changed: set, or only credited (then the base balance was never needed).
#[derive(Clone, Copy, Debug)]
enum Balance {
    Set(AccountTriple),
    Credited(U256),
}

/// The writes of a run of consecutive transactions, applied in order (`state.SequentialState`'s
/// rules: a wipe first, credits fold into the balance, a wiped account's slots read 0 unless
/// written after).
#[derive(Debug)]
pub(super) struct Burst {
    /// The first transaction of the burst: everything before it is in the multi-version state.
    start: usize,
    accounts: FastMap<Address, Balance>,
    codes: FastMap<Address, Arc<Code>>,
    storage: FastMap<Address, FastMap<U256, U256>>,
    wiped: FastSet<Address>,
    /// The last transaction that wrote each location (a wipe as `Loc::Wipe`).
    writers: FastMap<Loc, usize>,
    /// One bit per transaction of the burst, the latest lowest: set if it read what one of the
    /// few transactions before it wrote (see `record_dependency`).
    dependent: u64,
    /// Transactions in the burst.
    length: usize,
}

/// How many of the last burst transactions `independent` looks at.
const HISTORY: u32 = 32;

impl Burst {
    pub(super) fn new(start: usize) -> Burst {
        Burst {
            start,
            accounts: FastMap::default(),
            codes: FastMap::default(),
            storage: FastMap::default(),
            wiped: FastSet::default(),
            writers: FastMap::default(),
            dependent: 0,
            length: 0,
        }
    }

    /// Note whether transaction `index` (the burst's next) read, at `reads`, a location that one
    /// of the `distance` transactions before it wrote in the burst: run in parallel with them, it
    /// would have read a stale value. None: no read set (the transaction failed).
    pub(super) fn record_dependency<'r>(&mut self, index: usize, reads: Option<impl Iterator<Item = &'r Loc>>, distance: usize) {
        let near = |loc: &Loc| self.writers.get(loc).is_some_and(|writer| writer + distance >= index);
        let dependent = match reads {
            None => true,
            Some(mut reads) => reads.any(|loc| match loc {
                Loc::Storage(address, _) => near(loc) || near(&Loc::Wipe(*address)),
                _ => near(loc),
            }),
        };
        self.dependent = self.dependent << 1 | u64::from(dependent);
        self.length += 1;
    }

    /// Whether speculation would mostly have worked on the burst's last transactions: at most
    /// `tolerated` of the last 32 depended on their close predecessors.
    pub(super) fn independent(&self, tolerated: u32) -> bool {
        self.length >= HISTORY as usize && (self.dependent & ((1 << HISTORY) - 1)).count_ones() <= tolerated
    }

    /// The view of the next transaction of the burst.
    pub(super) fn view<'b>(&'b self, state: &'b VersionedState<'b>) -> BurstView<'b> {
        BurstView { burst: self, state }
    }

    /// Apply transaction `index`'s write set (values already checked against their locations).
    pub(super) fn apply(&mut self, index: usize, writes: &[(Loc, WriteValue)]) {
        for (loc, _) in writes {
            self.writers.insert(*loc, index);
        }
        for (loc, _) in writes {
            if let Loc::Wipe(address) = loc {
                self.wiped.insert(*address);
                self.storage.remove(address);
            }
        }
        for (loc, value) in writes {
            match (loc, value) {
                (Loc::Account(address), WriteValue::Account(account)) => {
                    self.accounts.insert(*address, Balance::Set(*account));
                }
                (Loc::Account(address), WriteValue::Credit(amount)) => {
                    let balance = match self.accounts.get(address) {
                        Some(Balance::Set(account)) => Balance::Set(account.credited(*amount)),
                        Some(Balance::Credited(earlier)) => Balance::Credited(earlier.wrapping_add(*amount)),
                        None => Balance::Credited(*amount),
                    };
                    self.accounts.insert(*address, balance);
                }
                (Loc::Code(address), WriteValue::Code(code)) => {
                    self.codes.insert(*address, code.clone());
                }
                (Loc::Storage(address, slot), WriteValue::Storage(value)) => {
                    self.storage.entry(*address).or_default().insert(*slot, *value);
                }
                _ => {} // the wipes, applied above
            }
        }
    }

    /// The burst as one write set: what a reader after its last transaction must see. Put at the
    /// last transaction's position, its wipes precede its slot writes, which are the slots written
    /// after the wipes; a balance only credited stays a credit.
    pub(super) fn merged(&self) -> Vec<(Loc, WriteValue)> {
        let slots = self.storage.values().map(FastMap::len).sum::<usize>();
        let mut writes = Vec::with_capacity(self.accounts.len() + self.codes.len() + self.wiped.len() + slots);
        for (address, balance) in &self.accounts {
            let value = match *balance {
                Balance::Set(account) => WriteValue::Account(account),
                Balance::Credited(amount) => WriteValue::Credit(amount),
            };
            writes.push((Loc::Account(*address), value));
        }
        for (address, code) in &self.codes {
            writes.push((Loc::Code(*address), WriteValue::Code(code.clone())));
        }
        for address in &self.wiped {
            writes.push((Loc::Wipe(*address), WriteValue::Wipe));
        }
        for (address, slots) in &self.storage {
            for (slot, value) in slots {
                writes.push((Loc::Storage(*address, *slot), WriteValue::Storage(*value)));
            }
        }
        writes
    }
}

/// The state the burst's next transaction sees: the burst's writes over the multi-version state
/// at the burst's start.
pub(super) struct BurstView<'b> {
    burst: &'b Burst,
    state: &'b VersionedState<'b>,
}

impl View for BurstView<'_> {
    fn account(&self, address: Address) -> Result<AccountTriple, EngineError> {
        match self.burst.accounts.get(&address) {
            Some(Balance::Set(account)) => Ok(*account),
            Some(Balance::Credited(amount)) => Ok(self.state.account(address, self.burst.start)?.credited(*amount)),
            None => self.state.account(address, self.burst.start),
        }
    }

    fn code(&self, address: Address) -> Result<Arc<Code>, EngineError> {
        match self.burst.codes.get(&address) {
            Some(code) => Ok(code.clone()),
            None => self.state.code(address, self.burst.start),
        }
    }

    fn storage(&self, address: Address, slot: U256) -> Result<U256, EngineError> {
        if let Some(value) = self.burst.storage.get(&address).and_then(|slots| slots.get(&slot)) {
            return Ok(*value);
        }
        if self.burst.wiped.contains(&address) {
            return Ok(U256::ZERO);
        }
        self.state.storage(address, slot, self.burst.start)
    }
}
