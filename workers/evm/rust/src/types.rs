//! The engine's data model, shared by the transaction executor (`evm`), the block executors
//! (`exec`) and the Python bindings (`python`). It mirrors `workers/evm/state.py` and
//! `workers/evm/engine.py`: read what their docstrings say about read and write sets first.

use std::collections::HashMap;

pub use crate::exec::hash::FastMap;
use std::fmt;
use std::sync::{Arc, RwLock};

pub use revm_bytecode::Bytecode;
pub use revm_primitives::hardfork::SpecId;
pub use revm_primitives::{keccak256, Address, Bytes, B256, U256};

/// keccak256 of the empty string: the code hash of an account without code.
pub const EMPTY_CODE_HASH: B256 = revm_primitives::KECCAK_EMPTY;

/// A state location, as in `workers.evm.state` (`(ACCOUNT, a)`, `(CODE, a)`, `(STORAGE, a, slot)`,
/// `(WIPE, a)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Loc {
    Account(Address),
    Code(Address),
    Storage(Address, U256),
    /// Written (never read) when a transaction clears an account's whole storage.
    Wipe(Address),
}

impl Loc {
    pub fn address(&self) -> Address {
        match *self {
            Loc::Account(a) | Loc::Code(a) | Loc::Storage(a, _) | Loc::Wipe(a) => a,
        }
    }
}

/// An account as a read set records it: `(balance, nonce, exists)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AccountTriple {
    pub balance: U256,
    pub nonce: u64,
    pub exists: bool,
}

impl AccountTriple {
    pub const EMPTY: AccountTriple = AccountTriple { balance: U256::ZERO, nonce: 0, exists: false };

    /// The triple with a credit folded in (a credit makes the account exist).
    pub fn credited(self, amount: U256) -> AccountTriple {
        AccountTriple { balance: self.balance.wrapping_add(amount), nonce: self.nonce, exists: true }
    }
}

/// Contract code with its hash and revm's analysed form (jump table), built once per code.
#[derive(Debug)]
pub struct Code {
    pub bytes: Bytes,
    pub hash: B256,
    pub bytecode: Bytecode,
}

impl Code {
    pub fn new(bytes: Bytes) -> Code {
        let hash = if bytes.is_empty() { EMPTY_CODE_HASH } else { keccak256(&bytes) };
        Code::with_hash(bytes, hash)
    }

    /// Code whose hash the caller already knows (the pre-state's loader checked it).
    pub fn with_hash(bytes: Bytes, hash: B256) -> Code {
        let bytecode = Bytecode::new_legacy(bytes.clone());
        Code { bytes, hash, bytecode }
    }

    pub fn empty() -> Arc<Code> {
        Arc::new(Code::new(Bytes::new()))
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl PartialEq for Code {
    fn eq(&self, other: &Code) -> bool {
        self.hash == other.hash
    }
}

impl Eq for Code {}

/// The value a read set records for a location (code by its hash: read sets cross processes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadValue {
    Account(AccountTriple),
    Code(B256),
    Storage(U256),
}

/// The value a write set holds for a location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteValue {
    Account(AccountTriple),
    /// A balance addition that did not read the balance (the deferred-credit rule).
    Credit(U256),
    Code(Arc<Code>),
    Storage(U256),
    Wipe,
}

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log {
    pub address: Address,
    pub topics: Vec<B256>,
    pub data: Bytes,
}

/// One execution of one transaction, as `workers.evm.engine.TxResult`.
///
/// `reads` and `writes` hold each location once (no order is promised).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TxResult {
    pub index: usize,
    /// False when the transaction cannot be included against the state it saw (nonce, balance,
    /// intrinsic gas): `reads` then holds what it read and `writes` is empty.
    pub valid: bool,
    pub success: bool,
    pub gas_used: u64,
    pub logs: Vec<Log>,
    pub reads: Vec<(Loc, ReadValue)>,
    pub writes: Vec<(Loc, WriteValue)>,
    pub error: Option<String>,
}

/// Why an execution could not give a result. Never a panic: see `evm::execute_tx`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineError {
    /// Execution needed state the block does not hold (e.g. a BLOCKHASH outside `block_hashes`).
    MissingState(String),
    /// The block or a transaction is malformed (e.g. an unknown fork, a bad field).
    Malformed(String),
    /// A view supplied from outside (Python) failed; the bindings keep the original exception.
    View(String),
    /// A bug in the engine, caught before it could abort the process.
    Internal(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::MissingState(m) => write!(f, "missing state: {m}"),
            EngineError::Malformed(m) => write!(f, "malformed block: {m}"),
            EngineError::View(m) => write!(f, "state view failed: {m}"),
            EngineError::Internal(m) => write!(f, "engine bug: {m}"),
        }
    }
}

impl std::error::Error for EngineError {}

/// What a transaction executes against: the state just before it (as `StateView` in Python).
/// A view never changes during one transaction's execution.
pub trait View {
    fn account(&self, address: Address) -> Result<AccountTriple, EngineError>;
    fn code(&self, address: Address) -> Result<Arc<Code>, EngineError>;
    fn storage(&self, address: Address, slot: U256) -> Result<U256, EngineError>;
}

/// The block-level values execution needs (from `workers.evm.block.Header`).
#[derive(Clone, Debug)]
pub struct BlockEnv {
    pub spec: SpecId,
    pub number: u64,
    pub coinbase: Address,
    pub timestamp: u64,
    pub difficulty: U256,
    /// The header's mix hash: PREVRANDAO from Paris on.
    pub mix_hash: B256,
    pub gas_limit: u64,
    pub base_fee: Option<U256>,
    pub excess_blob_gas: Option<u64>,
    pub chain_id: u64,
    /// Ancestor hashes BLOCKHASH may read (absent: `EngineError::MissingState` when in range).
    pub block_hashes: HashMap<u64, B256>,
}

/// One access-list entry (EIP-2930).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessListItem {
    pub address: Address,
    pub slots: Vec<U256>,
}

/// One decoded transaction with its (already verified) sender.
#[derive(Clone, Debug)]
pub struct TxEnv {
    /// 0 legacy, 1 EIP-2930, 2 EIP-1559, 3 EIP-4844.
    pub tx_type: u8,
    pub sender: Address,
    /// None for a contract creation.
    pub to: Option<Address>,
    pub nonce: u64,
    pub gas_limit: u64,
    /// Types 0 and 1: the gas price; types 2 and 3: max fee per gas.
    pub max_fee_per_gas: U256,
    /// Types 0 and 1: the gas price; types 2 and 3: max priority fee per gas.
    pub max_priority_fee_per_gas: U256,
    pub value: U256,
    pub data: Bytes,
    pub access_list: Vec<AccessListItem>,
    pub max_fee_per_blob_gas: U256,
    pub blob_hashes: Vec<B256>,
    /// The intrinsic gas py-evm computes for this transaction in this fork (`decoded.intrinsic_gas`:
    /// base, calldata, creation, access list); the message gets `gas_limit - intrinsic_gas`.
    pub intrinsic_gas: u64,
    /// Set when py-evm's stateless `decoded.validate()` refuses the transaction (e.g. gas below the
    /// intrinsic gas): the result is then `valid: false` with this error and no reads.
    pub static_error: Option<String>,
}

/// One account of the pre-state.
#[derive(Clone, Debug)]
pub struct PreAccount {
    pub balance: U256,
    pub nonce: u64,
    pub exists: bool,
    pub code: Arc<Code>,
    pub storage: FastMap<U256, U256>,
}

/// The block's pre-state, loaded once: every account and slot the block touches; absent = empty.
#[derive(Clone, Debug, Default)]
pub struct PreState {
    pub accounts: FastMap<Address, PreAccount>,
}

impl View for PreState {
    fn account(&self, address: Address) -> Result<AccountTriple, EngineError> {
        Ok(match self.accounts.get(&address) {
            Some(a) => AccountTriple { balance: a.balance, nonce: a.nonce, exists: a.exists },
            None => AccountTriple::EMPTY,
        })
    }

    fn code(&self, address: Address) -> Result<Arc<Code>, EngineError> {
        Ok(match self.accounts.get(&address) {
            Some(a) => a.code.clone(),
            None => empty_code(),
        })
    }

    fn storage(&self, address: Address, slot: U256) -> Result<U256, EngineError> {
        Ok(self
            .accounts
            .get(&address)
            .and_then(|a| a.storage.get(&slot).copied())
            .unwrap_or(U256::ZERO))
    }
}

/// The one shared empty code (cloning an Arc is cheaper than analysing nothing again).
pub fn empty_code() -> Arc<Code> {
    use std::sync::OnceLock;
    static EMPTY: OnceLock<Arc<Code>> = OnceLock::new();
    EMPTY.get_or_init(Code::empty).clone()
}

/// Codes by hash, so code that arrives from outside (a Python view) is analysed once per block.
#[derive(Debug, Default)]
pub struct CodeCache {
    codes: RwLock<HashMap<B256, Arc<Code>>>,
}

impl CodeCache {
    pub fn get_or_insert(&self, bytes: &[u8]) -> Arc<Code> {
        if bytes.is_empty() {
            return empty_code();
        }
        let hash = keccak256(bytes);
        if let Some(code) = self.codes.read().unwrap_or_else(|e| e.into_inner()).get(&hash) {
            return code.clone();
        }
        let code = Arc::new(Code::with_hash(Bytes::copy_from_slice(bytes), hash));
        self.codes.write().unwrap_or_else(|e| e.into_inner()).entry(hash).or_insert(code).clone()
    }
}

/// A block ready to execute: environment, decoded transactions, pre-state.
#[derive(Debug)]
pub struct NativeBlock {
    pub env: BlockEnv,
    pub txs: Vec<TxEnv>,
    pub pre: PreState,
    pub codes: CodeCache,
}

/// The revm spec of a fork name of `workers.evm.forks.FORKS`.
pub fn spec_of_fork(fork: &str) -> Result<SpecId, EngineError> {
    Ok(match fork {
        "frontier" => SpecId::FRONTIER,
        "homestead" => SpecId::HOMESTEAD,
        "tangerine_whistle" => SpecId::TANGERINE,
        "spurious_dragon" => SpecId::SPURIOUS_DRAGON,
        "byzantium" => SpecId::BYZANTIUM,
        "petersburg" => SpecId::PETERSBURG,
        "istanbul" => SpecId::ISTANBUL,
        "muir_glacier" => SpecId::ISTANBUL,
        "berlin" => SpecId::BERLIN,
        "london" => SpecId::LONDON,
        "arrow_glacier" => SpecId::LONDON,
        "gray_glacier" => SpecId::LONDON,
        "paris" => SpecId::MERGE,
        "shanghai" => SpecId::SHANGHAI,
        "cancun" => SpecId::CANCUN,
        other => return Err(EngineError::Malformed(format!("unknown fork {other:?}"))),
    })
}
