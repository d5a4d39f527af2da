//! Multi-version memory, shared by the parallel executor's threads: `state.VersionedState` of
//! `workers/evm/state.py`, with locks.

use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::hash::{FastHasher, FastMap, FastSet};
use crate::types::{AccountTriple, Address, Code, EngineError, Loc, ReadValue, View, WriteValue, U256};

/// Shards of the location map: enough that two threads rarely want the same lock (except for a
/// location they both write, such as the beneficiary's account).
const SHARDS: usize = 256;

/// The writes to one location, by transaction index. Most locations have one writer: it is held
/// inline. Several writers are kept in a vector sorted by index: writes arrive nearly in block
/// order (an append), and a read is a binary search over contiguous memory.
#[derive(Debug)]
enum Versions {
    One((usize, WriteValue)),
    Many(Vec<(usize, WriteValue)>),
}

impl Versions {
    fn insert(&mut self, index: usize, value: WriteValue) {
        match self {
            Versions::One((writer, current)) if *writer == index => *current = value,
            Versions::One(first) => {
                let first = std::mem::replace(first, (0, WriteValue::Wipe));
                let mut writes = Vec::with_capacity(4);
                writes.push(first);
                *self = Versions::Many(writes);
                self.insert(index, value);
            }
            Versions::Many(writes) => match writes.binary_search_by_key(&index, |(writer, _)| *writer) {
                Ok(position) => writes[position].1 = value,
                Err(position) => writes.insert(position, (index, value)),
            },
        }
    }

    /// Remove `index`'s write; true if none is left.
    fn remove(&mut self, index: usize) -> bool {
        match self {
            Versions::One((writer, _)) => *writer == index,
            Versions::Many(writes) => {
                if let Ok(position) = writes.binary_search_by_key(&index, |(writer, _)| *writer) {
                    writes.remove(position);
                }
                writes.is_empty()
            }
        }
    }

    /// The writes of transactions before `index`, latest first.
    fn before(&self, index: usize) -> impl Iterator<Item = (usize, &WriteValue)> {
        let writes = match self {
            Versions::One(write) => std::slice::from_ref(write),
            Versions::Many(writes) => writes.as_slice(),
        };
        let end = writes.partition_point(|(writer, _)| *writer < index);
        writes[..end].iter().rev().map(|(writer, value)| (*writer, value))
    }
}

/// A location with its hash, computed once: it picks the shard, and the shard's map uses it as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    hash: u64,
    loc: Loc,
}

impl Key {
    fn new(loc: Loc) -> Key {
        Key { hash: BuildHasherDefault::<FastHasher>::default().hash_one(loc), loc }
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A shard's map: keys hash to their precomputed hash (mixed once more by `FastHasher::finish`).
type ShardMap = FastMap<Key, Versions>;

/// A shard of the location map, on its own cache lines (no false sharing between shards).
#[repr(align(128))]
#[derive(Default)]
struct Shard {
    map: RwLock<ShardMap>,
    /// A Bloom filter (one bit per key) of every key ever written to the shard, read without the
    /// lock: most reads are of locations nobody in the block writes, and skip the lock and the
    /// table. Bits are set under the write lock, before the write set's clock tick, so a read the
    /// clock vouches for sees them (other reads are validated anyway); they are never cleared.
    filter: [AtomicU64; FILTER_WORDS],
}

/// The filter's size in 64-bit words (512 bits: a few dozen keys a shard stay mostly distinct).
const FILTER_WORDS: usize = 8;

impl Shard {
    /// The filter word and bit of `key` (hash bits other than those that picked the shard).
    fn filter_bit(key: &Key) -> (usize, u64) {
        let bit = (key.hash >> 8) as usize % (FILTER_WORDS * 64);
        (bit / 64, 1 << (bit % 64))
    }

    /// False if no transaction ever wrote `key` here.
    fn may_hold(&self, key: &Key) -> bool {
        let (word, bit) = Shard::filter_bit(key);
        self.filter[word].load(Ordering::Acquire) & bit != 0
    }

    /// Note that `key` is written (the caller holds the write lock: no other writer races).
    fn mark(&self, key: &Key) {
        let (word, bit) = Shard::filter_bit(key);
        let current = self.filter[word].load(Ordering::Relaxed);
        if current & bit == 0 {
            self.filter[word].store(current | bit, Ordering::Release);
        }
    }
}

/// Pre-state plus each transaction's latest write set, by block position, safe to share between
/// threads. What transaction `i` reads is what it sees if every transaction before it ran with its
/// current write set: the latest absolute write before `i` plus every credit after it (for a slot:
/// the latest slot write or wipe before `i`, whichever is later; a transaction's own wipe precedes
/// its own slot writes).
///
/// The caller keeps each transaction's current write set (the parallel executor has it in its
/// records) and passes it back on update. Updates of one transaction must not race each other;
/// any number of readers may run alongside (a read is not atomic across locations: the executor
/// validates what it read).
pub struct VersionedState<'a> {
    pre: &'a (dyn View + Sync),
    shards: Box<[Shard]>,
    /// Whether any transaction ever wrote a wipe: until then a slot read needs no wipe lookup.
    any_wipe: AtomicBool,
}

impl<'a> VersionedState<'a> {
    /// The state over `pre` before any transaction has run; `locations`: how many locations the
    /// block may write, roughly (the shards are sized for them: no rehashing on the way).
    pub fn new(pre: &'a (dyn View + Sync), locations: usize) -> VersionedState<'a> {
        let per_shard = (locations / SHARDS).min(1 << 16);
        let shard = || Shard {
            map: RwLock::new(ShardMap::with_capacity_and_hasher(per_shard, Default::default())),
            filter: Default::default(),
        };
        VersionedState { pre, shards: (0..SHARDS).map(|_| shard()).collect(), any_wipe: AtomicBool::new(false) }
    }

    /// Replace transaction `index`'s write set `previous` (empty if it had none) with `writes`
    /// (each location once, values fitting their locations).
    pub fn set_writes(&self, index: usize, writes: &[(Loc, WriteValue)], previous: &[(Loc, WriteValue)]) {
        if writes.iter().any(|(loc, _)| matches!(loc, Loc::Wipe(_))) {
            // Before the entry exists: a reader that finds the entry also finds the flag set.
            self.any_wipe.store(true, Ordering::SeqCst);
        }
        // New entries first, stale ones after: a reader never sees the location unwritten between.
        for (loc, value) in writes {
            let key = Key::new(*loc);
            let mut map = self.write_shard(&key);
            match map.get_mut(&key) {
                Some(versions) => versions.insert(index, value.clone()),
                None => {
                    self.shard(&key).mark(&key);
                    map.insert(key, Versions::One((index, value.clone())));
                }
            }
        }
        for loc in dropped(previous, writes) {
            let key = Key::new(loc);
            let mut shard = self.write_shard(&key);
            if shard.get_mut(&key).is_some_and(|versions| versions.remove(index)) {
                shard.remove(&key);
            }
        }
    }

    /// The account as transaction `index` sees it: the latest absolute write plus the credits after.
    pub fn account(&self, address: Address, index: usize) -> Result<AccountTriple, EngineError> {
        let key = Key::new(Loc::Account(address));
        if !self.shard(&key).may_hold(&key) {
            return self.pre.account(address);
        }
        let (base, credit) = {
            let shard = self.read_shard(&key);
            let Some(versions) = shard.get(&key) else { return self.pre.account(address) };
            let mut credit: Option<U256> = None;
            let mut base = None;
            for (_, value) in versions.before(index) {
                match value {
                    WriteValue::Credit(amount) => credit = Some(credit.unwrap_or(U256::ZERO).wrapping_add(*amount)),
                    WriteValue::Account(account) => {
                        base = Some(*account);
                        break;
                    }
                    other => return Err(misplaced(&key.loc, other)),
                }
            }
            (base, credit)
        };
        // The pre-state is read outside the shard lock: it may be slower (a view from outside).
        let base = match base {
            Some(account) => account,
            None => self.pre.account(address)?,
        };
        // A credit, even of 0, makes the account exist (as `state.apply_credit`).
        Ok(credit.map_or(base, |amount| base.credited(amount)))
    }

    /// The code as transaction `index` sees it.
    pub fn code(&self, address: Address, index: usize) -> Result<Arc<Code>, EngineError> {
        let loc = Loc::Code(address);
        match self.last_before(&loc, index) {
            Some((_, WriteValue::Code(code))) => Ok(code),
            Some((_, other)) => Err(misplaced(&loc, &other)),
            None => self.pre.code(address),
        }
    }

    /// The slot as transaction `index` sees it: 0 if the account was wiped after the slot's latest
    /// write.
    pub fn storage(&self, address: Address, slot: U256, index: usize) -> Result<U256, EngineError> {
        let loc = Loc::Storage(address, slot);
        let write = self.last_before(&loc, index);
        if self.any_wipe.load(Ordering::SeqCst) {
            if let Some((wiper, _)) = self.last_before(&Loc::Wipe(address), index) {
                if write.as_ref().is_none_or(|(writer, _)| wiper > *writer) {
                    return Ok(U256::ZERO);
                }
            }
        }
        match write {
            Some((_, WriteValue::Storage(value))) => Ok(value),
            Some((_, other)) => Err(misplaced(&loc, &other)),
            None => self.pre.storage(address, slot),
        }
    }

    /// Any location as a read set records it (code by its hash). A wipe is never read.
    pub fn read(&self, loc: Loc, index: usize) -> Result<ReadValue, EngineError> {
        Ok(match loc {
            Loc::Account(address) => ReadValue::Account(self.account(address, index)?),
            Loc::Code(address) => ReadValue::Code(self.code(address, index)?.hash),
            Loc::Storage(address, slot) => ReadValue::Storage(self.storage(address, slot, index)?),
            Loc::Wipe(_) => return Err(EngineError::Internal(format!("{loc:?} cannot be read"))),
        })
    }

    /// The latest write at `loc` of a transaction before `index` (cloned: the lock is released).
    fn last_before(&self, loc: &Loc, index: usize) -> Option<(usize, WriteValue)> {
        let key = Key::new(*loc);
        if !self.shard(&key).may_hold(&key) {
            return None;
        }
        let shard = self.read_shard(&key);
        let (writer, value) = shard.get(&key)?.before(index).next()?;
        Some((writer, value.clone()))
    }

    fn shard(&self, key: &Key) -> &Shard {
        // The top bits: the shard's map mixes the hash again before it picks buckets and tags.
        &self.shards[(key.hash >> 56) as usize % SHARDS]
    }

    fn read_shard(&self, key: &Key) -> RwLockReadGuard<'_, ShardMap> {
        self.shard(key).map.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_shard(&self, key: &Key) -> RwLockWriteGuard<'_, ShardMap> {
        self.shard(key).map.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The locations of write set `old` that write set `new` does not hold.
fn dropped(old: &[(Loc, WriteValue)], new: &[(Loc, WriteValue)]) -> Vec<Loc> {
    if old.is_empty() {
        return Vec::new();
    }
    let old_locs = old.iter().map(|(loc, _)| *loc);
    // Write sets are small: a linear scan beats hashing up to a few dozen locations.
    if old.len() * new.len() <= 1024 {
        return old_locs.filter(|loc| !new.iter().any(|(l, _)| l == loc)).collect();
    }
    let new_set: FastSet<Loc> = new.iter().map(|(loc, _)| *loc).collect();
    old_locs.filter(|loc| !new_set.contains(loc)).collect()
}

fn misplaced(loc: &Loc, value: &WriteValue) -> EngineError {
    EngineError::Internal(format!("{value:?} written to {loc:?}"))
}
