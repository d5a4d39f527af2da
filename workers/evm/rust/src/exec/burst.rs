//! A burst: transactions the commit wave executes one after another, without speculation, against
//! a private overlay on the multi-version state (see `parallel.rs`). Nobody else reads the burst's
//! writes until it is published as one merged write set, so a serial chain pays sequential
//! execution's costs, not the shared state's.

use std::sync::Arc;

use super::hash::{FastMap, FastSet};
use super::versioned::VersionedState;
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
    pub(super) start: usize,
    accounts: FastMap<Address, Balance>,
    codes: FastMap<Address, Arc<Code>>,
    storage: FastMap<Address, FastMap<U256, U256>>,
    wiped: FastSet<Address>,
}

impl Burst {
    pub(super) fn new(start: usize) -> Burst {
        Burst {
            start,
            accounts: FastMap::default(),
            codes: FastMap::default(),
            storage: FastMap::default(),
            wiped: FastSet::default(),
        }
    }

    /// The view of the next transaction of the burst.
    pub(super) fn view<'b>(&'b self, state: &'b VersionedState<'b>) -> BurstView<'b> {
        BurstView { burst: self, state }
    }

    /// Apply one transaction's write set (values already checked against their locations).
    pub(super) fn apply(&mut self, writes: &[(Loc, WriteValue)]) {
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
