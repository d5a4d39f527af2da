//! Messages and computations: py-evm's `apply_message`, `apply_create_message` and
//! `apply_computation` (forks Frontier to Cancun), with revm's interpreter running the code and
//! revm's precompiles. Calls recurse (as in py-evm): run on a thread with a large stack.

use std::rc::Rc;
use std::sync::Arc;

use revm_context_interface::cfg::GasParams;
use revm_context_interface::context::{SStoreResult, SelfDestructResult, StateLoad};
use revm_context_interface::host::LoadError;
use revm_context_interface::journaled_state::AccountInfoLoad;
use revm_interpreter::instructions::{gas_table_spec, GasTable, InstructionTable};
use revm_interpreter::interpreter::{ExtBytecode, InputsImpl, SharedMemory};
use revm_interpreter::{CallInput, Host, InstructionResult, Interpreter, InterpreterAction};
use revm_precompile::{PrecompileSpecId, PrecompileStatus, Precompiles};
use revm_primitives::Log as RevmLog;

use super::journal::Tracked;
use super::ops;
use crate::types::{Address, BlockEnv, Bytes, Code, EngineError, Log, SpecId, TxEnv, B256, U256};

pub type Table<'a> = InstructionTable<revm_interpreter::interpreter::EthInterpreter, Machine<'a>>;

pub const STACK_DEPTH_LIMIT: usize = 1024;
const GAS_CODEDEPOSIT: u64 = 200;
const MAX_CODE_SIZE: usize = 24_576;
pub const MAX_INITCODE_SIZE: usize = 49_152;
const THREE: Address = Address::new([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);

/// A message (py-evm's `Message`): one call or creation.
#[derive(Clone, Debug)]
pub struct Message {
    pub gas: u64,
    /// None for a creation (py-evm's CREATE_CONTRACT_ADDRESS).
    pub to: Option<Address>,
    pub sender: Address,
    pub value: U256,
    pub data: Bytes,
    pub code: Arc<Code>,
    pub depth: usize,
    pub create_address: Option<Address>,
    pub code_address: Option<Address>,
    pub should_transfer_value: bool,
    pub is_static: bool,
}

impl Message {
    pub fn storage_address(&self) -> Address {
        self.create_address.or(self.to).unwrap_or_default()
    }

    pub fn code_address(&self) -> Address {
        self.code_address.or(self.to).unwrap_or_default()
    }

    pub fn is_create(&self) -> bool {
        self.create_address.is_some()
    }
}

/// What a computation left behind (py-evm's `Computation`, as its parent and the transaction see it).
#[derive(Clone, Debug)]
pub struct Outcome {
    /// None: success; Some(burns_gas): an error (a revert does not burn the gas left).
    pub error: Option<bool>,
    pub output: Bytes,
    pub gas_remaining: u64,
    /// Index of this computation's node in `Machine::nodes`.
    pub node: usize,
}

impl Outcome {
    pub fn is_error(&self) -> bool {
        self.error.is_some()
    }

    /// py-evm's `get_gas_remaining`: 0 when the error burns the gas.
    pub fn gas_left(&self) -> u64 {
        if self.error == Some(true) { 0 } else { self.gas_remaining }
    }

    /// py-evm's `output` (erased by an error that burns gas).
    pub fn visible_output(&self) -> Bytes {
        if self.error == Some(true) { Bytes::new() } else { self.output.clone() }
    }
}

/// One node of the computation tree: what EIP-161's touched-account collection, refunds and
/// self-destructs need after the fact.
#[derive(Clone, Debug, Default)]
pub struct Node {
    pub to: Option<Address>,
    pub is_error: bool,
    pub refund: i64,
    pub accounts_to_delete: Vec<Address>,
    pub beneficiaries: Vec<Address>,
    pub children: Vec<usize>,
    /// How many logs the transaction had when this computation started (an error drops the rest).
    pub logs_start: usize,
}

/// The host the interpreter runs against: the transaction's state and environment.
pub struct Machine<'a> {
    pub block: &'a BlockEnv,
    pub tx: &'a TxEnv,
    pub spec: SpecId,
    pub state: Tracked<'a>,
    pub gas_params: GasParams,
    gas_table: GasTable,
    table: Rc<Table<'a>>,
    precompiles: &'static Precompiles,
    pub nodes: Vec<Node>,
    /// The node of the computation running now (where refunds, logs and deletions go).
    pub current: usize,
    pub logs: Vec<Log>,
    pub contracts_created: Vec<Address>,
    /// Set when the state view failed: the whole execution stops with this error.
    pub fatal: Option<EngineError>,
}

impl<'a> Machine<'a> {
    pub fn new(block: &'a BlockEnv, tx: &'a TxEnv, state: Tracked<'a>) -> Self {
        let spec = block.spec;
        Machine {
            block,
            tx,
            spec,
            state,
            gas_params: GasParams::new_spec(spec),
            gas_table: ops::gas_table(gas_table_spec(spec)),
            table: Rc::new(ops::table()),
            precompiles: Precompiles::new(PrecompileSpecId::from_spec_id(spec)),
            nodes: Vec::new(),
            current: 0,
            logs: Vec::new(),
            contracts_created: Vec::new(),
            fatal: None,
        }
    }

    /// Berlin's `_mark_address_warm`: true when the account was cold (precompiles are always warm).
    pub fn warm_account(&mut self, address: Address) -> bool {
        if self.precompiles.contains(&address) {
            return false;
        }
        self.state.warm_address(address)
    }

    pub fn at_least(&self, spec: SpecId) -> bool {
        self.spec.is_enabled_in(spec)
    }

    /// py-evm's `get_gas_price`: what the sender pays per gas.
    pub fn gas_price(&self) -> U256 {
        match self.block.base_fee {
            Some(base) if self.at_least(SpecId::LONDON) => {
                self.tx.max_fee_per_gas.min(self.tx.max_priority_fee_per_gas.saturating_add(base))
            }
            _ => self.tx.max_fee_per_gas,
        }
    }

    /// py-evm's `get_tip`: what the beneficiary earns per gas.
    pub fn tip(&self) -> U256 {
        match self.block.base_fee {
            Some(base) if self.at_least(SpecId::LONDON) => {
                self.tx.max_fee_per_gas.saturating_sub(base).min(self.tx.max_priority_fee_per_gas)
            }
            _ => self.tx.max_fee_per_gas,
        }
    }

    /// EIP-4844's blob base fee.
    pub fn blob_base_fee(&self) -> U256 {
        fake_exponential(1, self.block.excess_blob_gas.unwrap_or(0) as u128, 3_338_477)
    }

    fn fail<T>(&mut self, error: EngineError) -> Result<T, InstructionResult> {
        if self.fatal.is_none() {
            self.fatal = Some(error);
        }
        Err(InstructionResult::FatalExternalError)
    }

    /// Unwrap a state result inside an instruction: a view error stops the whole execution.
    pub fn ok<T>(&mut self, result: Result<T, EngineError>) -> Result<T, InstructionResult> {
        match result {
            Ok(value) => Ok(value),
            Err(error) => self.fail(error),
        }
    }

    fn new_node(&mut self, to: Option<Address>) -> usize {
        self.nodes.push(Node { to, ..Node::default() });
        self.nodes.len() - 1
    }

    // Messages ------------------------------------------------------------------------------

    /// py-evm's `apply_message`: transfer, touch, run; revert the state on error.
    pub fn apply_message(&mut self, msg: &Message) -> Result<Outcome, EngineError> {
        let checkpoint = self.state.checkpoint();
        let storage_address = msg.storage_address();
        if msg.should_transfer_value && !msg.value.is_zero() {
            let balance = self.state.get_balance(msg.sender)?;
            if balance < msg.value {
                // Callers check the balance first: py-evm raises here, which never happens.
                return Err(EngineError::Internal(format!("insufficient funds for a transfer: {balance} < {}", msg.value)));
            }
            self.state.delta_balance(msg.sender, msg.value, true)?;
            self.state.delta_balance(storage_address, msg.value, false)?;
        }
        self.state.touch_account(storage_address);
        let outcome = self.apply_computation(msg)?;
        if outcome.is_error() {
            self.state.revert(checkpoint);
        }
        Ok(outcome)
    }

    /// py-evm's `apply_create_message` of the block's fork.
    pub fn apply_create_message(&mut self, msg: &Message) -> Result<Outcome, EngineError> {
        if !self.at_least(SpecId::HOMESTEAD) {
            return self.apply_create_message_frontier(msg);
        }
        let checkpoint = self.state.checkpoint();
        if self.at_least(SpecId::SPURIOUS_DRAGON) {
            self.state.increment_nonce(msg.storage_address())?;
        }
        let mut outcome = self.apply_message(msg)?;
        if outcome.is_error() {
            self.state.revert(checkpoint);
            return Ok(outcome);
        }
        let code = outcome.output.clone();
        if !code.is_empty() {
            let valid = !self.at_least(SpecId::SPURIOUS_DRAGON) || code.len() <= MAX_CODE_SIZE;
            let valid = valid && !(self.at_least(SpecId::LONDON) && code[0] == 0xEF);
            let cost = code.len() as u64 * GAS_CODEDEPOSIT;
            if !valid || outcome.gas_remaining < cost {
                outcome.error = Some(true);
                self.nodes[outcome.node].is_error = true;
                self.logs.truncate(self.nodes[outcome.node].logs_start);
                self.state.revert(checkpoint);
                return Ok(outcome);
            }
            outcome.gas_remaining -= cost;
            self.state.set_code(msg.storage_address(), Arc::new(Code::new(code)));
        }
        Ok(outcome)
    }

    fn apply_create_message_frontier(&mut self, msg: &Message) -> Result<Outcome, EngineError> {
        let mut outcome = self.apply_message(msg)?;
        if outcome.is_error() {
            return Ok(outcome);
        }
        let code = outcome.output.clone();
        if !code.is_empty() {
            let cost = code.len() as u64 * GAS_CODEDEPOSIT;
            if outcome.gas_remaining < cost {
                outcome.output = Bytes::new(); // Frontier: no code, but no error either
            } else {
                outcome.gas_remaining -= cost;
                self.state.set_code(msg.storage_address(), Arc::new(Code::new(code)));
            }
        }
        Ok(outcome)
    }

    /// py-evm's `apply_computation`: a precompile, or the code on revm's interpreter.
    fn apply_computation(&mut self, msg: &Message) -> Result<Outcome, EngineError> {
        let parent = self.current;
        let node = self.new_node(if msg.is_create() { None } else { msg.to });
        if node != 0 {
            self.nodes[parent].children.push(node); // node 0 is the transaction's own message
        }
        self.current = node;
        let result = self.run_computation(msg, node);
        self.current = parent;
        let outcome = result?;
        self.nodes[node].is_error = outcome.is_error();
        Ok(outcome)
    }

    fn run_computation(&mut self, msg: &Message, node: usize) -> Result<Outcome, EngineError> {
        let logs_before = self.logs.len();
        self.nodes[node].logs_start = logs_before;
        if self.at_least(SpecId::SHANGHAI) {
            let coinbase = self.block.coinbase;
            self.state.mark_address_warm(coinbase); // EIP-3651, in every computation as py-evm
        }
        let mut gas = msg.gas;
        if msg.sender == self.tx.sender && msg.is_create() && self.at_least(SpecId::SHANGHAI) {
            let cost = 2 * (msg.code.bytes.len() as u64).div_ceil(32); // EIP-3860 initcode cost
            if gas < cost {
                return Ok(self.halt(node, logs_before, true, Bytes::new(), 0));
            }
            gas -= cost;
        }
        if msg.is_create() {
            self.contracts_created.push(msg.storage_address());
        }
        if let Some(precompile) = self.precompiles.get(&msg.code_address()) {
            return match precompile.execute(&msg.data, gas, 0) {
                Ok(out) if out.status == PrecompileStatus::Success => {
                    Ok(Outcome { error: None, output: out.bytes, gas_remaining: gas - out.gas_used, node })
                }
                Ok(_) => Ok(self.halt(node, logs_before, true, Bytes::new(), 0)),
                Err(error) => Err(EngineError::Internal(format!("precompile {}: {error}", msg.code_address()))),
            };
        }
        let mut interpreter = Interpreter::new(
            SharedMemory::new(),
            ExtBytecode::new(msg.code.bytecode.clone()),
            InputsImpl {
                target_address: msg.storage_address(),
                bytecode_address: Some(msg.code_address()),
                caller_address: msg.sender,
                input: CallInput::Bytes(msg.data.clone()),
                call_value: msg.value,
                depth: msg.depth,
            },
            msg.is_static,
            self.spec,
            gas,
        );
        let table = self.table.clone();
        let gas_table = self.gas_table;
        let action = interpreter.run_plain(&table, &gas_table, self);
        if let Some(error) = self.fatal.take() {
            return Err(error);
        }
        let InterpreterAction::Return(result) = action else {
            return Err(EngineError::Internal("the interpreter asked for a frame: calls run inside instructions".into()));
        };
        self.nodes[node].refund += result.gas.refunded();
        let remaining = result.gas.remaining();
        Ok(match result.result {
            r if r.is_ok() => Outcome { error: None, output: result.output, gas_remaining: remaining, node },
            r if r.is_revert() => self.halt(node, logs_before, false, result.output, remaining),
            InstructionResult::FatalExternalError => {
                return Err(EngineError::Internal("the interpreter stopped without a reason".into()))
            }
            _ => self.halt(node, logs_before, true, Bytes::new(), 0),
        })
    }

    fn halt(&mut self, node: usize, logs_before: usize, burns: bool, output: Bytes, gas_remaining: u64) -> Outcome {
        self.logs.truncate(logs_before);
        Outcome { error: Some(burns), output, gas_remaining, node }
    }

    // The computation tree, after the fact ------------------------------------------------

    /// py-evm's `get_gas_refund` of a node.
    pub fn gas_refund(&self, node: usize) -> i64 {
        let n = &self.nodes[node];
        if n.is_error {
            return 0;
        }
        n.refund + n.children.iter().map(|c| self.gas_refund(*c)).sum::<i64>()
    }

    /// py-evm's `get_accounts_for_deletion` of a node (deduplicated, in first-seen order).
    pub fn accounts_for_deletion(&self, node: usize, out: &mut Vec<Address>) {
        let n = &self.nodes[node];
        if n.is_error {
            return;
        }
        for child in &n.children {
            self.accounts_for_deletion(*child, out);
        }
        for address in &n.accounts_to_delete {
            if !out.contains(address) {
                out.push(*address);
            }
        }
    }

    fn beneficiaries(&self, node: usize, out: &mut Vec<Address>) {
        let n = &self.nodes[node];
        if n.is_error {
            return;
        }
        for child in &n.children {
            self.beneficiaries(*child, out);
        }
        out.extend(n.beneficiaries.iter().copied());
    }

    /// EIP-161's touched accounts, as py-evm's `collect_touched_accounts` (with the RIPEMD-160
    /// special case of geth and parity).
    pub fn touched_accounts(&self, node: usize, ancestor_error: bool, out: &mut Vec<Address>) {
        let n = &self.nodes[node];
        let errored = n.is_error || ancestor_error;
        let mut beneficiaries = Vec::new();
        self.beneficiaries(node, &mut beneficiaries);
        for beneficiary in beneficiaries {
            if !errored || beneficiary == THREE {
                push_unique(out, beneficiary);
            }
        }
        if let Some(to) = n.to {
            if !errored || to == THREE {
                push_unique(out, to);
            }
        }
        for child in &n.children {
            self.touched_accounts(*child, errored, out);
        }
    }
}

fn push_unique(out: &mut Vec<Address>, address: Address) {
    if !out.contains(&address) {
        out.push(address);
    }
}

/// EIP-4844's `fake_exponential(factor, numerator, denominator)`.
pub fn fake_exponential(factor: u128, numerator: u128, denominator: u128) -> U256 {
    let (factor, numerator, denominator) = (U256::from(factor), U256::from(numerator), U256::from(denominator));
    let mut i = U256::from(1);
    let mut output = U256::ZERO;
    let mut accumulator = factor * denominator;
    while !accumulator.is_zero() {
        output += accumulator;
        accumulator = accumulator * numerator / (denominator * i);
        i += U256::from(1);
    }
    output / denominator
}

impl Host for Machine<'_> {
    fn basefee(&self) -> U256 {
        self.block.base_fee.unwrap_or_default()
    }

    fn blob_gasprice(&self) -> U256 {
        self.blob_base_fee()
    }

    fn gas_limit(&self) -> U256 {
        U256::from(self.block.gas_limit)
    }

    fn difficulty(&self) -> U256 {
        self.block.difficulty
    }

    fn prevrandao(&self) -> Option<U256> {
        Some(U256::from_be_bytes(self.block.mix_hash.0))
    }

    fn block_number(&self) -> U256 {
        U256::from(self.block.number)
    }

    fn timestamp(&self) -> U256 {
        U256::from(self.block.timestamp)
    }

    fn beneficiary(&self) -> Address {
        self.block.coinbase
    }

    fn slot_num(&self) -> U256 {
        U256::ZERO
    }

    fn chain_id(&self) -> U256 {
        U256::from(self.block.chain_id)
    }

    fn effective_gas_price(&self) -> U256 {
        self.gas_price()
    }

    fn caller(&self) -> Address {
        self.tx.sender
    }

    fn blob_hash(&self, number: usize) -> Option<U256> {
        self.tx.blob_hashes.get(number).map(|h| U256::from_be_bytes(h.0))
    }

    fn max_initcode_size(&self) -> usize {
        MAX_INITCODE_SIZE
    }

    fn gas_params(&self) -> &GasParams {
        &self.gas_params
    }

    fn is_amsterdam_eip8037_enabled(&self) -> bool {
        false
    }

    fn block_hash(&mut self, _number: u64) -> Option<B256> {
        None // BLOCKHASH is ours (ops::blockhash)
    }

    fn selfdestruct(&mut self, _address: Address, _target: Address, _skip: bool) -> Result<StateLoad<SelfDestructResult>, LoadError> {
        Err(LoadError::DBError) // SELFDESTRUCT is ours
    }

    fn log(&mut self, log: RevmLog) {
        self.logs.push(Log { address: log.address, topics: log.data.topics().to_vec(), data: log.data.data });
    }

    fn sstore_skip_cold_load(&mut self, _a: Address, _k: U256, _v: U256, _skip: bool) -> Result<StateLoad<SStoreResult>, LoadError> {
        Err(LoadError::DBError) // SSTORE is ours
    }

    fn sload_skip_cold_load(&mut self, _a: Address, _k: U256, _skip: bool) -> Result<StateLoad<U256>, LoadError> {
        Err(LoadError::DBError) // SLOAD is ours
    }

    fn tstore(&mut self, address: Address, key: U256, value: U256) {
        self.state.set_transient(address, key, value);
    }

    fn tload(&mut self, address: Address, key: U256) -> U256 {
        self.state.get_transient(address, key)
    }

    fn load_account_info_skip_cold_load(&mut self, _a: Address, _code: bool, _skip: bool) -> Result<AccountInfoLoad<'_>, LoadError> {
        Err(LoadError::DBError) // every account-reading instruction is ours
    }
}
