//! The transaction's state: a port of `TrackedAccountDB` (workers/evm/reference.py), method for
//! method, so that the native engine reads and writes exactly the locations py-evm does.
//!
//! Reads go to the `View` once per location and are recorded with the value seen (inside
//! reverted calls too); changes are journaled so a reverted call undoes them; a positive balance
//! change of an account not read is a credit (the deferred-credit rule of `workers.evm.state`).

use std::sync::Arc;

use crate::exec::hash::{FastMap as HashMap, FastSet as HashSet};

use crate::types::{
    AccountTriple, Address, Code, EngineError, Loc, ReadValue, View, WriteValue, EMPTY_CODE_HASH, U256,
};

type Result<T> = std::result::Result<T, EngineError>;

/// One undo record: the container, the key and the value before (None: absent).
enum Undo {
    Account(Address, Option<AccountTriple>),
    Credit(Address, Option<U256>),
    Code(Address, Option<Arc<Code>>),
    Storage(Address, U256, Option<U256>),
    Wiped(Address, bool),
    WarmAddress(Address, bool),
    WarmSlot(Address, U256, bool),
    Transient(Address, U256, Option<U256>),
}

/// A checkpoint: the journal length to return to.
#[derive(Clone, Copy, Debug)]
pub struct Checkpoint(usize);

/// One transaction's view of the state, journaled, recording what it reads.
pub struct Tracked<'v> {
    view: &'v dyn View,
    reads: HashMap<Loc, ReadValue>,
    accounts: HashMap<Address, AccountTriple>,
    credits: HashMap<Address, U256>,
    code: HashMap<Address, Arc<Code>>,
    base_code: HashMap<Address, Arc<Code>>,
    storage: HashMap<(Address, U256), U256>,
    wiped: HashSet<Address>,
    warm_addresses: HashSet<Address>,
    warm_slots: HashSet<(Address, U256)>,
    transient: HashMap<(Address, U256), U256>,
    journal: Vec<Undo>,
}

impl<'v> Tracked<'v> {
    pub fn new(view: &'v dyn View) -> Self {
        Tracked {
            view,
            reads: HashMap::default(),
            accounts: HashMap::default(),
            credits: HashMap::default(),
            code: HashMap::default(),
            base_code: HashMap::default(),
            storage: HashMap::default(),
            wiped: HashSet::default(),
            warm_addresses: HashSet::default(),
            warm_slots: HashSet::default(),
            transient: HashMap::default(),
            journal: Vec::new(),
        }
    }

    // Reads from the view --------------------------------------------------------------------

    fn read_account(&mut self, address: Address) -> Result<AccountTriple> {
        if let Some(ReadValue::Account(value)) = self.reads.get(&Loc::Account(address)) {
            return Ok(*value);
        }
        let value = self.view.account(address)?;
        self.reads.insert(Loc::Account(address), ReadValue::Account(value));
        Ok(value)
    }

    fn read_slot(&mut self, address: Address, slot: U256) -> Result<U256> {
        if let Some(ReadValue::Storage(value)) = self.reads.get(&Loc::Storage(address, slot)) {
            return Ok(*value);
        }
        let value = self.view.storage(address, slot)?;
        self.reads.insert(Loc::Storage(address, slot), ReadValue::Storage(value));
        Ok(value)
    }

    /// The account, loaded (and any credit folded in) on first use.
    fn account(&mut self, address: Address) -> Result<AccountTriple> {
        if let Some(account) = self.accounts.get(&address) {
            return Ok(*account);
        }
        let mut account = self.read_account(address)?;
        if let Some(credit) = self.credits.get(&address).copied() {
            account = account.credited(credit);
            self.forget_credit(address);
        }
        self.put_account(address, account);
        Ok(account)
    }

    // Journal -------------------------------------------------------------------------------

    fn put_account(&mut self, address: Address, value: AccountTriple) {
        let old = self.accounts.insert(address, value);
        self.journal.push(Undo::Account(address, old));
    }

    fn put_credit(&mut self, address: Address, value: U256) {
        let old = self.credits.insert(address, value);
        self.journal.push(Undo::Credit(address, old));
    }

    fn forget_credit(&mut self, address: Address) {
        if let Some(old) = self.credits.remove(&address) {
            self.journal.push(Undo::Credit(address, Some(old)));
        }
    }

    fn put_storage(&mut self, address: Address, slot: U256, value: U256) {
        let old = self.storage.insert((address, slot), value);
        self.journal.push(Undo::Storage(address, slot, old));
    }

    /// A checkpoint to revert to (py-evm's `record`).
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint(self.journal.len())
    }

    /// Undo every change since `checkpoint` (py-evm's `discard`); reads stay recorded.
    pub fn revert(&mut self, checkpoint: Checkpoint) {
        while self.journal.len() > checkpoint.0 {
            match self.journal.pop().expect("journal longer than checkpoint") {
                Undo::Account(a, old) => restore(&mut self.accounts, a, old),
                Undo::Credit(a, old) => restore(&mut self.credits, a, old),
                Undo::Code(a, old) => restore(&mut self.code, a, old),
                Undo::Storage(a, s, old) => restore(&mut self.storage, (a, s), old),
                Undo::Transient(a, s, old) => restore(&mut self.transient, (a, s), old),
                Undo::Wiped(a, was) => restore_set(&mut self.wiped, a, was),
                Undo::WarmAddress(a, was) => restore_set(&mut self.warm_addresses, a, was),
                Undo::WarmSlot(a, s, was) => restore_set(&mut self.warm_slots, (a, s), was),
            }
        }
    }

    // Balance, nonce, existence ---------------------------------------------------------------

    pub fn get_balance(&mut self, address: Address) -> Result<U256> {
        Ok(self.account(address)?.balance)
    }

    pub fn set_balance(&mut self, address: Address, balance: U256) -> Result<()> {
        let account = self.account(address)?;
        self.put_account(address, AccountTriple { balance, nonce: account.nonce, exists: true });
        Ok(())
    }

    /// A balance addition without reading the balance; resolved if the transaction reads it.
    pub fn add_credit(&mut self, address: Address, amount: U256) {
        if let Some(account) = self.accounts.get(&address).copied() {
            self.put_account(address, account.credited(amount));
        } else {
            let total = self.credits.get(&address).copied().unwrap_or_default().wrapping_add(amount);
            self.put_credit(address, total);
        }
    }

    /// py-evm's `delta_balance` with the deferred-credit rule: additions are credits.
    pub fn delta_balance(&mut self, address: Address, delta: U256, negative: bool) -> Result<()> {
        if !negative {
            self.add_credit(address, delta);
            Ok(())
        } else {
            let balance = self.get_balance(address)?;
            self.set_balance(address, balance.wrapping_sub(delta))
        }
    }

    pub fn get_nonce(&mut self, address: Address) -> Result<u64> {
        Ok(self.account(address)?.nonce)
    }

    pub fn set_nonce(&mut self, address: Address, nonce: u64) -> Result<()> {
        let account = self.account(address)?;
        self.put_account(address, AccountTriple { balance: account.balance, nonce, exists: true });
        Ok(())
    }

    pub fn increment_nonce(&mut self, address: Address) -> Result<()> {
        let nonce = self.get_nonce(address)?;
        self.set_nonce(address, nonce.wrapping_add(1))
    }

    pub fn account_exists(&mut self, address: Address) -> Result<bool> {
        if !self.accounts.contains_key(&address) && self.credits.contains_key(&address) {
            return Ok(true);
        }
        Ok(self.account(address)?.exists)
    }

    pub fn touch_account(&mut self, address: Address) {
        if let Some(account) = self.accounts.get(&address).copied() {
            self.put_account(address, AccountTriple { exists: true, ..account });
        } else {
            self.add_credit(address, U256::ZERO);
        }
    }

    pub fn account_has_code_or_nonce(&mut self, address: Address) -> Result<bool> {
        Ok(self.get_nonce(address)? != 0 || self.get_code(address)?.hash != EMPTY_CODE_HASH)
    }

    pub fn account_is_empty(&mut self, address: Address) -> Result<bool> {
        if !self.accounts.contains_key(&address)
            && self.credits.get(&address).is_some_and(|c| !c.is_zero())
        {
            return Ok(false); // a positive credit makes it non-empty whatever the balance was
        }
        Ok(!self.account_has_code_or_nonce(address)? && self.get_balance(address)?.is_zero())
    }

    pub fn delete_account(&mut self, address: Address) {
        self.forget_credit(address);
        self.put_account(address, AccountTriple::EMPTY);
        self.set_code(address, crate::types::empty_code());
        self.delete_storage(address);
    }

    // Code ------------------------------------------------------------------------------------

    pub fn get_code(&mut self, address: Address) -> Result<Arc<Code>> {
        if let Some(code) = self.code.get(&address) {
            return Ok(code.clone());
        }
        if let Some(code) = self.base_code.get(&address) {
            return Ok(code.clone());
        }
        let code = self.view.code(address)?;
        self.reads.insert(Loc::Code(address), ReadValue::Code(code.hash));
        self.base_code.insert(address, code.clone());
        Ok(code)
    }

    pub fn set_code(&mut self, address: Address, code: Arc<Code>) {
        let old = self.code.insert(address, code);
        self.journal.push(Undo::Code(address, old));
    }

    // Storage ---------------------------------------------------------------------------------

    /// A slot's current value (`from_journal`) or its value before the transaction (EIP-2200's
    /// "original value": always a read of the view).
    pub fn get_storage(&mut self, address: Address, slot: U256, from_journal: bool) -> Result<U256> {
        if from_journal {
            if let Some(value) = self.storage.get(&(address, slot)) {
                return Ok(*value);
            }
            if self.wiped.contains(&address) {
                return Ok(U256::ZERO);
            }
        }
        self.read_slot(address, slot)
    }

    pub fn set_storage(&mut self, address: Address, slot: U256, value: U256) {
        self.put_storage(address, slot, value);
    }

    pub fn delete_storage(&mut self, address: Address) {
        let was = !self.wiped.insert(address);
        self.journal.push(Undo::Wiped(address, was));
        let slots: Vec<U256> = self.storage.keys().filter(|(a, _)| *a == address).map(|(_, s)| *s).collect();
        for slot in slots {
            let old = self.storage.remove(&(address, slot));
            self.journal.push(Undo::Storage(address, slot, old));
        }
    }

    // EIP-2929 warm sets and EIP-1153 transient storage ----------------------------------------

    pub fn is_address_warm(&self, address: Address) -> bool {
        self.warm_addresses.contains(&address)
    }

    pub fn mark_address_warm(&mut self, address: Address) {
        let was = !self.warm_addresses.insert(address);
        self.journal.push(Undo::WarmAddress(address, was));
    }

    /// Mark warm; true when it was cold (Berlin's `_mark_address_warm`).
    pub fn warm_address(&mut self, address: Address) -> bool {
        if self.is_address_warm(address) {
            return false;
        }
        self.mark_address_warm(address);
        true
    }

    pub fn mark_storage_warm(&mut self, address: Address, slot: U256) {
        let was = !self.warm_slots.insert((address, slot));
        self.journal.push(Undo::WarmSlot(address, slot, was));
    }

    /// Mark a slot warm; true when it was cold.
    pub fn warm_slot(&mut self, address: Address, slot: U256) -> bool {
        if self.warm_slots.contains(&(address, slot)) {
            return false;
        }
        self.mark_storage_warm(address, slot);
        true
    }

    pub fn get_transient(&self, address: Address, slot: U256) -> U256 {
        self.transient.get(&(address, slot)).copied().unwrap_or_default()
    }

    pub fn set_transient(&mut self, address: Address, slot: U256, value: U256) {
        let old = self.transient.insert((address, slot), value);
        self.journal.push(Undo::Transient(address, slot, old));
    }

    // Results ----------------------------------------------------------------------------------

    /// Every location read, with the value seen.
    pub fn take_reads(&mut self) -> Vec<(Loc, ReadValue)> {
        std::mem::take(&mut self.reads).into_iter().collect()
    }

    /// Locations this transaction changed, with their final values (credits stay credits).
    pub fn write_set(&self) -> Vec<(Loc, WriteValue)> {
        let mut writes: HashMap<Loc, WriteValue> = HashMap::default();
        for address in &self.wiped {
            writes.insert(Loc::Wipe(*address), WriteValue::Wipe);
        }
        for (address, account) in &self.accounts {
            let loc = Loc::Account(*address);
            if self.reads.get(&loc) != Some(&ReadValue::Account(*account)) {
                writes.insert(loc, WriteValue::Account(*account));
            }
        }
        for (address, amount) in &self.credits {
            writes.insert(Loc::Account(*address), WriteValue::Credit(*amount));
        }
        for (address, code) in &self.code {
            let loc = Loc::Code(*address);
            if self.reads.get(&loc) != Some(&ReadValue::Code(code.hash)) {
                writes.insert(loc, WriteValue::Code(code.clone()));
            }
        }
        for ((address, slot), value) in &self.storage {
            let loc = Loc::Storage(*address, *slot);
            if self.wiped.contains(address) {
                if !value.is_zero() {
                    writes.insert(loc, WriteValue::Storage(*value));
                }
            } else if self.reads.get(&loc) != Some(&ReadValue::Storage(*value)) {
                writes.insert(loc, WriteValue::Storage(*value));
            }
        }
        writes.into_iter().collect()
    }
}

fn restore<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, key: K, old: Option<V>) {
    match old {
        Some(value) => {
            map.insert(key, value);
        }
        None => {
            map.remove(&key);
        }
    }
}

fn restore_set<K: std::hash::Hash + Eq>(set: &mut HashSet<K>, key: K, was: bool) {
    if was {
        set.insert(key);
    } else {
        set.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{PreAccount, PreState};
    use std::collections::HashMap as StdMap;

    fn addr(n: u8) -> Address {
        Address::repeat_byte(n)
    }

    fn pre() -> PreState {
        let mut state = PreState::default();
        let mut storage = crate::types::FastMap::default();
        storage.insert(U256::from(1), U256::from(10));
        state.accounts.insert(
            addr(1),
            PreAccount { balance: U256::from(100), nonce: 3, exists: true, code: Arc::new(Code::new(vec![0x60, 0x00].into())), storage },
        );
        state
    }

    fn reads_of(t: &mut Tracked) -> StdMap<Loc, ReadValue> {
        t.take_reads().into_iter().collect()
    }

    #[test]
    fn a_read_is_recorded_once_with_the_value_seen() {
        let state = pre();
        let mut t = Tracked::new(&state);
        assert_eq!(t.get_balance(addr(1)).unwrap(), U256::from(100));
        t.set_balance(addr(1), U256::from(5)).unwrap();
        assert_eq!(t.get_balance(addr(1)).unwrap(), U256::from(5));
        let reads = reads_of(&mut t);
        assert_eq!(reads.len(), 1);
        assert_eq!(reads[&Loc::Account(addr(1))], ReadValue::Account(AccountTriple { balance: U256::from(100), nonce: 3, exists: true }));
    }

    #[test]
    fn credits_do_not_read_until_the_balance_is_read() {
        let state = pre();
        let mut t = Tracked::new(&state);
        t.add_credit(addr(2), U256::from(7));
        t.add_credit(addr(2), U256::from(1));
        assert!(t.account_exists(addr(2)).unwrap());
        assert!(!t.account_is_empty(addr(2)).unwrap());
        assert!(t.take_reads().is_empty());
        let writes: StdMap<_, _> = t.write_set().into_iter().collect();
        assert_eq!(writes[&Loc::Account(addr(2))], WriteValue::Credit(U256::from(8)));
        // Reading the balance folds the credit in and makes it an absolute write.
        assert_eq!(t.get_balance(addr(2)).unwrap(), U256::from(8));
        let writes: StdMap<_, _> = t.write_set().into_iter().collect();
        assert_eq!(writes[&Loc::Account(addr(2))], WriteValue::Account(AccountTriple { balance: U256::from(8), nonce: 0, exists: true }));
    }

    #[test]
    fn reverted_changes_are_undone_but_their_reads_stay() {
        let state = pre();
        let mut t = Tracked::new(&state);
        let checkpoint = t.checkpoint();
        t.set_storage(addr(1), U256::from(1), U256::from(99));
        assert_eq!(t.get_storage(addr(1), U256::from(2), true).unwrap(), U256::ZERO);
        t.mark_address_warm(addr(3));
        t.revert(checkpoint);
        assert_eq!(t.get_storage(addr(1), U256::from(1), true).unwrap(), U256::from(10));
        assert!(!t.is_address_warm(addr(3)));
        assert!(t.write_set().is_empty());
        let reads = reads_of(&mut t);
        assert!(reads.contains_key(&Loc::Storage(addr(1), U256::from(2))));
        assert!(reads.contains_key(&Loc::Storage(addr(1), U256::from(1))));
    }

    #[test]
    fn a_wipe_hides_old_slots_and_writes_only_non_zero_ones() {
        let state = pre();
        let mut t = Tracked::new(&state);
        t.set_storage(addr(1), U256::from(5), U256::from(1));
        t.delete_storage(addr(1));
        assert_eq!(t.get_storage(addr(1), U256::from(1), true).unwrap(), U256::ZERO);
        assert_eq!(t.get_storage(addr(1), U256::from(1), false).unwrap(), U256::from(10));
        t.set_storage(addr(1), U256::from(2), U256::from(4));
        t.set_storage(addr(1), U256::from(3), U256::ZERO);
        let writes: StdMap<_, _> = t.write_set().into_iter().collect();
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[&Loc::Wipe(addr(1))], WriteValue::Wipe);
        assert_eq!(writes[&Loc::Storage(addr(1), U256::from(2))], WriteValue::Storage(U256::from(4)));
    }

    #[test]
    fn code_is_read_by_hash_and_an_unchanged_write_is_no_write() {
        let state = pre();
        let mut t = Tracked::new(&state);
        let code = t.get_code(addr(1)).unwrap();
        t.set_code(addr(1), code.clone());
        assert!(t.write_set().is_empty());
        let reads = reads_of(&mut t);
        assert_eq!(reads[&Loc::Code(addr(1))], ReadValue::Code(code.hash));
    }

    #[test]
    fn an_empty_check_short_circuits_on_the_nonce() {
        let state = pre();
        let mut t = Tracked::new(&state);
        assert!(!t.account_is_empty(addr(1)).unwrap());
        let reads = reads_of(&mut t);
        assert!(reads.contains_key(&Loc::Account(addr(1))));
        assert!(!reads.contains_key(&Loc::Code(addr(1))), "nonce != 0: the code is not needed");
    }
}
