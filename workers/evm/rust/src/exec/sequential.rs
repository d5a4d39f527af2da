//! The sequential executor's state: `state.SequentialState` of `workers/evm/state.py`.

use std::sync::Arc;

use super::check_writes;
use super::hash::{FastMap, FastSet};
use crate::types::{AccountTriple, Address, Code, EngineError, Loc, View, WriteValue, U256};

/// A pre-state plus the write sets applied so far, in order: what the next transaction sees.
///
/// A write set applies its wipe first (it precedes the slot writes it allows); a `Credit` adds to
/// the balance the state holds at that point (and makes the account exist); a wiped account's
/// slots read 0 unless written after the wipe.
pub struct SequentialState<'a> {
    pre: &'a dyn View,
    accounts: FastMap<Address, AccountTriple>,
    codes: FastMap<Address, Arc<Code>>,
    // By account, so that a wipe clears an account's slots without scanning everyone's.
    storage: FastMap<Address, FastMap<U256, U256>>,
    wiped: FastSet<Address>,
}

impl<'a> SequentialState<'a> {
    /// The state before the block's first transaction.
    pub fn new(pre: &'a dyn View) -> SequentialState<'a> {
        SequentialState {
            pre,
            accounts: FastMap::default(),
            codes: FastMap::default(),
            storage: FastMap::default(),
            wiped: FastSet::default(),
        }
    }

    /// Apply one transaction's write set. A value that does not fit its location (a bug in the
    /// executor) is an error, and then nothing is applied.
    pub fn apply(&mut self, writes: &[(Loc, WriteValue)]) -> Result<(), EngineError> {
        check_writes(writes)?;
        for (loc, _) in writes {
            if let Loc::Wipe(address) = loc {
                self.wipe(*address);
            }
        }
        for (loc, value) in writes {
            match (loc, value) {
                (Loc::Account(address), WriteValue::Account(account)) => {
                    self.accounts.insert(*address, *account);
                }
                (Loc::Account(address), WriteValue::Credit(amount)) => {
                    let credited = self.account(*address)?.credited(*amount);
                    self.accounts.insert(*address, credited);
                }
                (Loc::Code(address), WriteValue::Code(code)) => {
                    self.codes.insert(*address, code.clone());
                }
                (Loc::Storage(address, slot), WriteValue::Storage(value)) => {
                    self.storage.entry(*address).or_default().insert(*slot, *value);
                }
                _ => {} // the wipes, applied above (check_writes rejected every other pair)
            }
        }
        Ok(())
    }

    fn wipe(&mut self, address: Address) {
        self.wiped.insert(address);
        self.storage.remove(&address);
    }
}

impl View for SequentialState<'_> {
    fn account(&self, address: Address) -> Result<AccountTriple, EngineError> {
        match self.accounts.get(&address) {
            Some(account) => Ok(*account),
            None => self.pre.account(address),
        }
    }

    fn code(&self, address: Address) -> Result<Arc<Code>, EngineError> {
        match self.codes.get(&address) {
            Some(code) => Ok(code.clone()),
            None => self.pre.code(address),
        }
    }

    fn storage(&self, address: Address, slot: U256) -> Result<U256, EngineError> {
        if let Some(value) = self.storage.get(&address).and_then(|slots| slots.get(&slot)) {
            return Ok(*value);
        }
        if self.wiped.contains(&address) {
            return Ok(U256::ZERO);
        }
        self.pre.storage(address, slot)
    }
}
