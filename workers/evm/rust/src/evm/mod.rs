//! One transaction, executed the way py-evm's transaction executor does it (validate, buy gas,
//! build the message, run it, refund, pay the beneficiary, delete self-destructed and touched
//! empty accounts), so that receipts, read sets and write sets equal the reference engine's.
//!
//! `journal` is the state layer (a port of `TrackedAccountDB`), `machine` runs messages on revm's
//! interpreter and precompiles, `ops` holds the state-touching instructions.

mod journal;
mod machine;
mod ops;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

pub use journal::Tracked;
use machine::{Machine, Message, Node, Outcome};

use crate::types::{Address, Bytes, Code, EngineError, NativeBlock, SpecId, TxEnv, TxResult, View, U256};

const REFUND_SELFDESTRUCT: i128 = 24_000;
const GAS_PER_BLOB: u64 = 131_072;

/// Execute transaction `index` of `block` against `view` (the state just before it).
///
/// An invalid transaction (nonce, balance, fees) gives `valid: false` with the reads it made.
/// Never panics on any input: a bug is caught and returned as `EngineError::Internal`.
/// Recurses once per call depth: run it on a thread with a large stack (`exec::with_stack`).
pub fn execute_tx(block: &NativeBlock, index: usize, view: &dyn View) -> Result<TxResult, EngineError> {
    let tx = block
        .txs
        .get(index)
        .ok_or_else(|| EngineError::Malformed(format!("the block has no transaction {index}")))?;
    match catch_unwind(AssertUnwindSafe(|| run(block, index, tx, view))) {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(EngineError::Internal(format!("transaction {index}: {message}")))
        }
    }
}

fn run(block: &NativeBlock, index: usize, tx: &TxEnv, view: &dyn View) -> Result<TxResult, EngineError> {
    if let Some(error) = &tx.static_error {
        return Ok(invalid(index, error.clone(), Vec::new()));
    }
    let mut m = Machine::new(&block.env, tx, Tracked::new(view));
    if let Some(reason) = validate(&mut m)? {
        let reads = m.state.take_reads();
        return Ok(invalid(index, reason, reads));
    }
    let message = match build_message(&mut m)? {
        Ok(message) => message,
        Err(reason) => {
            let reads = m.state.take_reads();
            return Ok(invalid(index, reason, reads));
        }
    };
    let outcome = build_computation(&mut m, &message)?;
    let gas_used = finalize(&mut m, &outcome)?;
    let writes = m.state.write_set(); // before taking the reads: it compares against them
    let logs = if outcome.is_error() { Vec::new() } else { std::mem::take(&mut m.logs) };
    Ok(TxResult {
        index,
        valid: true,
        success: !outcome.is_error(),
        gas_used,
        logs,
        reads: m.state.take_reads(),
        writes,
        error: None,
    })
}

fn invalid(index: usize, error: String, reads: Vec<(crate::types::Loc, crate::types::ReadValue)>) -> TxResult {
    TxResult { index, valid: false, error: Some(error), reads, ..TxResult::default() }
}

/// The state checks of py-evm's `validate_transaction` (London, Frontier, Cancun), in its order.
/// `Some(reason)` when the transaction cannot be included.
fn validate(m: &mut Machine) -> Result<Option<String>, EngineError> {
    let tx = m.tx;
    if m.at_least(SpecId::LONDON) {
        let base_fee = m.block.base_fee.unwrap_or_default();
        if tx.max_fee_per_gas < base_fee {
            return Ok(Some(format!(
                "Sender's max fee per gas ({}) is lower than block's base fee per gas ({base_fee})",
                tx.max_fee_per_gas
            )));
        }
    }
    let max_gas_cost = U256::from(tx.gas_limit).saturating_mul(m.gas_price());
    let balance = m.state.get_balance(tx.sender)?;
    if balance < max_gas_cost {
        return Ok(Some(format!("Sender cannot afford txn gas {max_gas_cost} with account balance {balance}")));
    }
    let total_cost = tx.value.saturating_add(max_gas_cost);
    if balance < total_cost {
        return Ok(Some(format!(
            "Sender does not have enough balance to cover transaction value and gas  (has {balance}, needs {total_cost})"
        )));
    }
    let nonce = m.state.get_nonce(tx.sender)?;
    if nonce != tx.nonce {
        return Ok(Some(format!("Invalid transaction nonce: Expected {nonce}, but got {}", tx.nonce)));
    }
    if m.at_least(SpecId::CANCUN) {
        return validate_cancun(m);
    }
    Ok(None)
}

fn validate_cancun(m: &mut Machine) -> Result<Option<String>, EngineError> {
    let tx = m.tx;
    let blob_gas = U256::from(GAS_PER_BLOB) * U256::from(tx.blob_hashes.len());
    let mut max_total_fee = U256::from(tx.gas_limit).saturating_mul(tx.max_fee_per_gas);
    if tx.tx_type == 3 {
        max_total_fee = max_total_fee.saturating_add(blob_gas.saturating_mul(tx.max_fee_per_blob_gas));
    }
    if m.state.get_balance(tx.sender)? < max_total_fee {
        return Ok(Some("Sender has insufficient funds for blob fee.".into()));
    }
    if tx.tx_type == 3 {
        if tx.blob_hashes.is_empty() {
            return Ok(Some("Blob transaction must contain at least one blob.".into()));
        }
        if tx.blob_hashes.iter().any(|h| h[0] != 0x01) {
            return Ok(Some("Blob versioned hash does not start with expected KZG version: b'\\x01'".into()));
        }
        if tx.max_fee_per_blob_gas < m.blob_base_fee() {
            return Ok(Some("Blob transaction must pay at least the current blob base fee.".into()));
        }
    }
    Ok(None)
}

/// py-evm's `build_evm_message`: buy the gas, bump the nonce, make the message. `Err(reason)` when
/// the gas does not cover the intrinsic gas: py-evm's `validate()` lets that through for typed
/// transactions, and its `Message` refuses the negative gas only here, after reading the code.
fn build_message(m: &mut Machine) -> Result<Result<Message, String>, EngineError> {
    let tx = m.tx;
    let mut gas_fee = U256::from(tx.gas_limit).saturating_mul(m.gas_price());
    if m.at_least(SpecId::CANCUN) && tx.tx_type == 3 {
        let blob_gas = U256::from(GAS_PER_BLOB) * U256::from(tx.blob_hashes.len());
        gas_fee = gas_fee.saturating_add(blob_gas.saturating_mul(m.blob_base_fee()));
    }
    m.state.delta_balance(tx.sender, gas_fee, !gas_fee.is_zero())?;
    m.state.increment_nonce(tx.sender)?;
    let (create_address, data, code) = match tx.to {
        None => {
            let nonce = m.state.get_nonce(tx.sender)? - 1;
            (Some(ops::create_address(tx.sender, nonce)), Bytes::new(), Arc::new(Code::new(tx.data.clone())))
        }
        Some(to) => (None, tx.data.clone(), m.state.get_code(to)?),
    };
    let Some(gas) = tx.gas_limit.checked_sub(tx.intrinsic_gas) else {
        let gas = tx.gas_limit as i128 - tx.intrinsic_gas as i128;
        return Ok(Err(format!("Value must be a valid uint256.  Got: {gas} (Message.gas)")));
    };
    Ok(Ok(Message {
        gas,
        to: tx.to,
        sender: tx.sender,
        value: tx.value,
        data,
        code,
        depth: 0,
        create_address,
        code_address: None,
        should_transfer_value: true,
        is_static: false,
    }))
}

/// py-evm's `build_computation`: warm the access list (Berlin), refuse a creation collision.
fn build_computation(m: &mut Machine, message: &Message) -> Result<Outcome, EngineError> {
    if m.at_least(SpecId::BERLIN) {
        m.state.mark_address_warm(m.tx.sender);
        m.state.mark_address_warm(message.storage_address());
        for item in &m.tx.access_list {
            m.state.mark_address_warm(item.address);
            for slot in &item.slots {
                m.state.mark_storage_warm(item.address, *slot);
            }
        }
    }
    if message.is_create() {
        if m.state.account_has_code_or_nonce(message.storage_address())? {
            m.nodes.push(Node { to: None, is_error: true, ..Node::default() });
            return Ok(Outcome { error: Some(true), output: Bytes::new(), gas_remaining: 0, node: 0 });
        }
        return m.apply_create_message(message);
    }
    m.apply_message(message)
}

/// py-evm's `finalize_computation` (and SpuriousDragon's EIP-161 clearing); the gas used.
fn finalize(m: &mut Machine, outcome: &Outcome) -> Result<u64, EngineError> {
    let tx = m.tx;
    let gas_remaining = outcome.gas_left() as i128;
    let gas_used = tx.gas_limit as i128 - gas_remaining;
    let mut deletions = Vec::new();
    m.accounts_for_deletion(0, &mut deletions);
    let mut refund = m.gas_refund(0) as i128;
    let quotient = if m.at_least(SpecId::LONDON) { 5 } else { 2 };
    if quotient == 2 && !outcome.is_error() {
        refund += REFUND_SELFDESTRUCT * deletions.len() as i128;
    }
    let refund = refund.min(gas_used / quotient);
    let refund_amount = (refund + gas_remaining).max(0) as u128;
    if refund_amount != 0 {
        let amount = U256::from(refund_amount).saturating_mul(m.gas_price());
        m.state.delta_balance(tx.sender, amount, false)?;
    }
    let fee_gas = (tx.gas_limit as i128 - gas_remaining - refund).max(0) as u64;
    let fee = U256::from(fee_gas).saturating_mul(m.tip());
    let coinbase = m.block.coinbase;
    m.state.delta_balance(coinbase, fee, false)?;
    for address in &deletions {
        m.state.delete_account(*address);
    }
    if m.at_least(SpecId::SPURIOUS_DRAGON) {
        let mut touched: Vec<Address> = vec![coinbase];
        m.touched_accounts(0, false, &mut touched);
        for address in touched {
            if m.state.account_exists(address)? && m.state.account_is_empty(address)? {
                m.state.delete_account(address);
            }
        }
    }
    Ok(fee_gas)
}
