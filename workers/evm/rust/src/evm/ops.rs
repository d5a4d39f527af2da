//! The instructions that touch state, written to do exactly what py-evm's do, in its order (so
//! the same locations are read even when an instruction runs out of gas half way). Every other
//! instruction is revm's. Each fork's base cost is charged here (their static cost in the gas
//! table is zero), as py-evm charges it before the logic.

use revm_bytecode::opcode::*;
use revm_interpreter::instructions::contract::resize_memory;
use revm_interpreter::instructions::GasTable;
use revm_interpreter::interpreter::EthInterpreter;
use revm_interpreter::interpreter_types::{InputsTr, MemoryTr, ReturnData, RuntimeFlag};
use revm_interpreter::{Instruction, InstructionContext, InstructionResult, Interpreter};

use super::machine::{Machine, Message, Table, MAX_INITCODE_SIZE, STACK_DEPTH_LIMIT};
use crate::types::{keccak256, Address, Bytes, Code, EngineError, SpecId, B256, U256};
use std::sync::Arc;

type Ctx<'x, 'a> = InstructionContext<'x, Machine<'a>, EthInterpreter>;
type R = Result<(), InstructionResult>;

const GAS_CALLVALUE: u64 = 9000;
const GAS_NEWACCOUNT: u64 = 25000;
const GAS_CALLSTIPEND: u64 = 2300;
const GAS_SELFDESTRUCT_NEWACCOUNT: u64 = 25000;
const COLD_ACCOUNT_ACCESS: u64 = 2600;
const COLD_SLOAD: u64 = 2100;
const WARM_READ: u64 = 100;

/// The instructions we own, replacing revm's.
const OURS: [u8; 15] = [
    BALANCE, SELFBALANCE, EXTCODESIZE, EXTCODECOPY, EXTCODEHASH, BLOCKHASH, SLOAD, SSTORE, CALL, CALLCODE,
    DELEGATECALL, STATICCALL, CREATE, CREATE2, SELFDESTRUCT,
];

/// revm's instruction table with the state instructions replaced by ours.
pub fn table<'a>() -> Table<'a> {
    let mut table = revm_interpreter::instruction_table::<EthInterpreter, Machine<'a>>();
    table[BALANCE as usize] = Instruction::new(balance);
    table[SELFBALANCE as usize] = Instruction::new(selfbalance);
    table[EXTCODESIZE as usize] = Instruction::new(extcodesize);
    table[EXTCODECOPY as usize] = Instruction::new(extcodecopy);
    table[EXTCODEHASH as usize] = Instruction::new(extcodehash);
    table[BLOCKHASH as usize] = Instruction::new(blockhash);
    table[SLOAD as usize] = Instruction::new(sload);
    table[SSTORE as usize] = Instruction::new(sstore);
    table[CALL as usize] = Instruction::new(call);
    table[CALLCODE as usize] = Instruction::new(callcode);
    table[DELEGATECALL as usize] = Instruction::new(delegatecall);
    table[STATICCALL as usize] = Instruction::new(staticcall);
    table[CREATE as usize] = Instruction::new(create);
    table[CREATE2 as usize] = Instruction::new(create2);
    table[SELFDESTRUCT as usize] = Instruction::new(selfdestruct);
    table
}

/// revm's static gas table of the fork, without our instructions (they charge themselves).
pub fn gas_table(mut table: GasTable) -> GasTable {
    for op in OURS {
        table[op as usize] = 0;
    }
    table
}

// Helpers ----------------------------------------------------------------------------------------

fn charge(interp: &mut Interpreter<EthInterpreter>, cost: u64) -> R {
    if interp.gas.record_regular_cost(cost) { Ok(()) } else { Err(InstructionResult::OutOfGas) }
}

fn pop<const N: usize>(interp: &mut Interpreter<EthInterpreter>) -> Result<[U256; N], InstructionResult> {
    interp.stack.popn().ok_or(InstructionResult::StackUnderflow)
}

fn push(interp: &mut Interpreter<EthInterpreter>, value: U256) -> R {
    if interp.stack.push(value) { Ok(()) } else { Err(InstructionResult::StackOverflow) }
}

fn to_address(word: U256) -> Address {
    Address::from_word(B256::from(word.to_be_bytes::<32>()))
}

fn address_word(address: Address) -> U256 {
    U256::from_be_bytes(address.into_word().0)
}

fn require(ctx: &Ctx, spec: SpecId) -> R {
    if ctx.host.spec.is_enabled_in(spec) { Ok(()) } else { Err(InstructionResult::NotActivated) }
}

fn no_static(ctx: &Ctx) -> R {
    if ctx.interpreter.runtime_flag.is_static() { Err(InstructionResult::StateChangeDuringStaticCall) } else { Ok(()) }
}

/// py-evm's `extend_memory(start, size)` (nothing for size 0); the range to read or write.
fn memory(ctx: &mut Ctx, offset: U256, len: U256) -> Result<std::ops::Range<usize>, InstructionResult> {
    resize_memory(ctx.interpreter, &ctx.host.gas_params, offset, len)
}

fn self_address(ctx: &Ctx) -> Address {
    ctx.interpreter.input.target_address()
}

/// Berlin's account access charge: 2600 when cold (and now warm), else 100.
fn access_account(ctx: &mut Ctx, address: Address) -> R {
    let cost = if ctx.host.warm_account(address) { COLD_ACCOUNT_ACCESS } else { WARM_READ };
    charge(ctx.interpreter, cost)
}

fn base(ctx: &Ctx, frontier: u64, tangerine: u64, istanbul: u64) -> u64 {
    let spec = ctx.host.spec;
    if spec.is_enabled_in(SpecId::BERLIN) {
        0
    } else if spec.is_enabled_in(SpecId::ISTANBUL) {
        istanbul
    } else if spec.is_enabled_in(SpecId::TANGERINE) {
        tangerine
    } else {
        frontier
    }
}

macro_rules! state {
    ($ctx:expr, $e:expr) => {{
        let result = $e;
        $ctx.host.ok(result)?
    }};
}

// Account reads ------------------------------------------------------------------------------------

/// The common start of BALANCE, EXTCODESIZE and EXTCODEHASH: the fork's base cost (frontier,
/// tangerine, istanbul), the address operand, and from Berlin on its access cost.
fn account_operand(ctx: &mut Ctx, frontier: u64, tangerine: u64, istanbul: u64) -> Result<Address, InstructionResult> {
    charge(ctx.interpreter, base(ctx, frontier, tangerine, istanbul))?;
    let [address] = pop(ctx.interpreter)?;
    let address = to_address(address);
    if ctx.host.spec.is_enabled_in(SpecId::BERLIN) {
        access_account(ctx, address)?;
    }
    Ok(address)
}

fn balance(mut ctx: Ctx) -> R {
    let address = account_operand(&mut ctx, 20, 400, 700)?;
    let value = state!(ctx, ctx.host.state.get_balance(address));
    push(ctx.interpreter, value)
}

fn selfbalance(ctx: Ctx) -> R {
    require(&ctx, SpecId::ISTANBUL)?;
    charge(ctx.interpreter, 5)?;
    let address = self_address(&ctx);
    let value = state!(ctx, ctx.host.state.get_balance(address));
    push(ctx.interpreter, value)
}

fn extcodesize(mut ctx: Ctx) -> R {
    let address = account_operand(&mut ctx, 20, 700, 700)?;
    let code = state!(ctx, ctx.host.state.get_code(address));
    push(ctx.interpreter, U256::from(code.bytes.len()))
}

fn extcodecopy(mut ctx: Ctx) -> R {
    let berlin = ctx.host.spec.is_enabled_in(SpecId::BERLIN);
    charge(ctx.interpreter, base(&ctx, 20, 700, 700))?;
    let [address, memory_start, code_start, size] = pop(ctx.interpreter)?;
    let address = to_address(address);
    let range = memory(&mut ctx, memory_start, size)?;
    let code = state!(ctx, ctx.host.state.get_code(address));
    if !range.is_empty() {
        let start = usize::try_from(code_start).unwrap_or(usize::MAX);
        ctx.interpreter.memory.set_data(range.start, start, range.len(), &code.bytes);
    }
    charge(ctx.interpreter, 3 * (range.len() as u64).div_ceil(32))?;
    if berlin {
        access_account(&mut ctx, address)?;
    }
    Ok(())
}

fn extcodehash(mut ctx: Ctx) -> R {
    require(&ctx, SpecId::PETERSBURG)?;
    let address = account_operand(&mut ctx, 400, 400, 700)?;
    let hash = if state!(ctx, ctx.host.state.account_is_empty(address)) {
        U256::ZERO
    } else {
        U256::from_be_bytes(state!(ctx, ctx.host.state.get_code(address)).hash.0)
    };
    push(ctx.interpreter, hash)
}

fn blockhash(ctx: Ctx) -> R {
    charge(ctx.interpreter, 20)?;
    let [number] = pop(ctx.interpreter)?;
    let current = ctx.host.block.number;
    let hash = match u64::try_from(number) {
        Ok(n) if n < current && n + 256 >= current => match ctx.host.block.block_hashes.get(&n) {
            Some(hash) => U256::from_be_bytes(hash.0),
            None => {
                let error = EngineError::MissingState(format!("BLOCKHASH({n}) is read but not in block_hashes"));
                return ctx.host.ok(Err(error));
            }
        },
        _ => U256::ZERO,
    };
    push(ctx.interpreter, hash)
}

// Storage -------------------------------------------------------------------------------------------

fn sload(ctx: Ctx) -> R {
    let berlin = ctx.host.spec.is_enabled_in(SpecId::BERLIN);
    charge(ctx.interpreter, if berlin { 0 } else { base(&ctx, 50, 200, 800) })?;
    let [slot] = pop(ctx.interpreter)?;
    let address = self_address(&ctx);
    if berlin {
        let cost = if ctx.host.state.warm_slot(address, slot) { COLD_SLOAD } else { WARM_READ };
        charge(ctx.interpreter, cost)?;
    }
    let value = state!(ctx, ctx.host.state.get_storage(address, slot, true));
    push(ctx.interpreter, value)
}

/// EIP-2200's schedule (py-evm's `NetSStoreGasSchedule`).
struct Schedule {
    sload: u64,
    set: u64,
    reset: u64,
    clears: i64,
}

fn sstore(ctx: Ctx) -> R {
    let spec = ctx.host.spec;
    if spec.is_enabled_in(SpecId::BYZANTIUM) {
        no_static(&ctx)?;
    }
    if !spec.is_enabled_in(SpecId::ISTANBUL) {
        return sstore_legacy(ctx);
    }
    if ctx.interpreter.gas.remaining() <= 2300 {
        return Err(InstructionResult::ReentrancySentryOOG); // EIP-2200: fails below the stipend
    }
    let schedule = if spec.is_enabled_in(SpecId::LONDON) {
        Schedule { sload: 100, set: 20000, reset: 2900, clears: 4800 }
    } else if spec.is_enabled_in(SpecId::BERLIN) {
        Schedule { sload: 100, set: 20000, reset: 2900, clears: 15000 }
    } else {
        Schedule { sload: 800, set: 20000, reset: 5000, clears: 15000 }
    };
    let [slot, value] = pop(ctx.interpreter)?;
    let address = self_address(&ctx);
    let current = state!(ctx, ctx.host.state.get_storage(address, slot, true));
    let original = state!(ctx, ctx.host.state.get_storage(address, slot, false));
    let (cost, refund) = net_sstore_cost(&schedule, original, current, value);
    charge(ctx.interpreter, cost)?;
    if refund != 0 {
        ctx.interpreter.gas.record_refund(refund);
    }
    ctx.host.state.set_storage(address, slot, value);
    if spec.is_enabled_in(SpecId::BERLIN) && ctx.host.state.warm_slot(address, slot) {
        charge(ctx.interpreter, COLD_SLOAD)?;
    }
    Ok(())
}

fn net_sstore_cost(s: &Schedule, original: U256, current: U256, value: U256) -> (u64, i64) {
    if current == value {
        return (s.sload, 0);
    }
    if original == current {
        if original.is_zero() {
            return (s.set, 0);
        }
        return (s.reset, if value.is_zero() { s.clears } else { 0 });
    }
    let mut refund = 0i64;
    if !original.is_zero() {
        if current.is_zero() {
            refund -= s.clears;
        }
        if value.is_zero() {
            refund += s.clears;
        }
    }
    if original == value {
        refund += if original.is_zero() { (s.set - s.sload) as i64 } else { (s.reset - s.sload) as i64 };
    }
    (s.sload, refund)
}

fn sstore_legacy(ctx: Ctx) -> R {
    let [slot, value] = pop(ctx.interpreter)?;
    let address = self_address(&ctx);
    let current = state!(ctx, ctx.host.state.get_storage(address, slot, true));
    let cost = if current.is_zero() && !value.is_zero() { 20000 } else { 5000 };
    let refund = if !current.is_zero() && value.is_zero() { 15000 } else { 0 };
    charge(ctx.interpreter, cost)?;
    if refund != 0 {
        ctx.interpreter.gas.record_refund(refund);
    }
    ctx.host.state.set_storage(address, slot, value);
    Ok(())
}

// Calls -----------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum CallKind {
    Call,
    CallCode,
    DelegateCall,
    StaticCall,
}

fn call(ctx: Ctx) -> R {
    generic_call(ctx, CallKind::Call)
}

fn callcode(ctx: Ctx) -> R {
    generic_call(ctx, CallKind::CallCode)
}

fn delegatecall(ctx: Ctx) -> R {
    require(&ctx, SpecId::HOMESTEAD)?;
    generic_call(ctx, CallKind::DelegateCall)
}

fn staticcall(ctx: Ctx) -> R {
    require(&ctx, SpecId::BYZANTIUM)?;
    generic_call(ctx, CallKind::StaticCall)
}

/// py-evm's `BaseCall.__call__` with each fork's gas rules.
fn generic_call(mut ctx: Ctx, kind: CallKind) -> R {
    let spec = ctx.host.spec;
    charge(ctx.interpreter, base(&ctx, 40, 700, 700))?;
    let (gas, target, value, args) = match kind {
        CallKind::Call | CallKind::CallCode => {
            let [gas, target, value, a, b, c, d] = pop(ctx.interpreter)?;
            (gas, to_address(target), value, [a, b, c, d])
        }
        CallKind::DelegateCall | CallKind::StaticCall => {
            let [gas, target, a, b, c, d] = pop(ctx.interpreter)?;
            let value = if kind == CallKind::DelegateCall { ctx.interpreter.input.call_value() } else { U256::ZERO };
            (gas, to_address(target), value, [a, b, c, d])
        }
    };
    if kind == CallKind::Call && spec.is_enabled_in(SpecId::BYZANTIUM) && ctx.interpreter.runtime_flag.is_static() && !value.is_zero() {
        return Err(InstructionResult::CallNotAllowedInsideStatic);
    }
    let input = memory(&mut ctx, args[0], args[1])?;
    let output = memory(&mut ctx, args[2], args[3])?;
    let data = if input.is_empty() { Bytes::new() } else { Bytes::copy_from_slice(&ctx.interpreter.memory.slice(input)) };
    let me = self_address(&ctx);
    // CALL and STATICCALL run the target's code on its storage; CALLCODE and DELEGATECALL run it
    // on ours.
    let (to, code_address) = match kind {
        CallKind::Call | CallKind::StaticCall => (target, None),
        CallKind::CallCode | CallKind::DelegateCall => (me, Some(target)),
    };
    if spec.is_enabled_in(SpecId::BERLIN) {
        access_account(&mut ctx, target)?;
    }
    let code = state!(ctx, ctx.host.state.get_code(target));
    let extra = call_extra_gas(&mut ctx, kind, to, value)?;
    let transfers = !value.is_zero() && matches!(kind, CallKind::Call | CallKind::CallCode);
    let (child_gas, total_fee) = if kind == CallKind::DelegateCall && !spec.is_enabled_in(SpecId::TANGERINE) {
        let gas = u64::try_from(gas).map_err(|_| InstructionResult::OutOfGas)?;
        (gas, gas)
    } else if spec.is_enabled_in(SpecId::TANGERINE) {
        let remaining = ctx.interpreter.gas.remaining();
        if remaining < extra {
            return Err(InstructionResult::OutOfGas);
        }
        let available = remaining - extra;
        let gas = u64::try_from(gas).unwrap_or(u64::MAX).min(available - available / 64);
        let stipend = if transfers { GAS_CALLSTIPEND } else { 0 };
        (gas + stipend, gas + extra)
    } else {
        let gas = u64::try_from(gas).map_err(|_| InstructionResult::OutOfGas)?;
        let stipend = if transfers { GAS_CALLSTIPEND } else { 0 };
        (gas.checked_add(stipend).ok_or(InstructionResult::OutOfGas)?, gas.checked_add(extra).ok_or(InstructionResult::OutOfGas)?)
    };
    charge(ctx.interpreter, total_fee)?;
    let sender_balance = state!(ctx, ctx.host.state.get_balance(me));
    let insufficient = matches!(kind, CallKind::Call | CallKind::CallCode) && sender_balance < value;
    let depth = ctx.interpreter.input.depth();
    if insufficient || depth + 1 > STACK_DEPTH_LIMIT {
        ctx.interpreter.return_data.clear();
        ctx.interpreter.gas.erase_cost(child_gas);
        return push(ctx.interpreter, U256::ZERO);
    }
    let sender = if kind == CallKind::DelegateCall { ctx.interpreter.input.caller_address() } else { me };
    let message = Message {
        gas: child_gas,
        to: Some(to),
        sender,
        value,
        data,
        code,
        depth: depth + 1,
        create_address: None,
        code_address,
        should_transfer_value: matches!(kind, CallKind::Call | CallKind::CallCode),
        is_static: kind == CallKind::StaticCall || ctx.interpreter.runtime_flag.is_static(),
    };
    let outcome = state!(ctx, ctx.host.apply_message(&message));
    ctx.interpreter.return_data.set_buffer(outcome.visible_output());
    push(ctx.interpreter, U256::from(!outcome.is_error() as u8))?;
    if outcome.error != Some(true) && !output.is_empty() {
        let n = output.len().min(outcome.output.len());
        ctx.interpreter.memory.set(output.start, &outcome.output[..n]);
    }
    // The child's refunds and self-destructs stay in its node of the computation tree: the
    // transaction sums them over the successful part of the tree, as py-evm does.
    ctx.interpreter.gas.erase_cost(outcome.gas_left());
    Ok(())
}

/// The extra gas of a call (value transfer, new account), with py-evm's reads.
fn call_extra_gas(ctx: &mut Ctx, kind: CallKind, to: Address, value: U256) -> Result<u64, InstructionResult> {
    let spec = ctx.host.spec;
    let transfer = if value.is_zero() { 0 } else { GAS_CALLVALUE };
    match kind {
        CallKind::DelegateCall => Ok(0),
        CallKind::CallCode => Ok(transfer),
        CallKind::Call | CallKind::StaticCall => {
            let transfer = if kind == CallKind::StaticCall { 0 } else { transfer };
            if spec.is_enabled_in(SpecId::SPURIOUS_DRAGON) {
                let dead = !state!(ctx, ctx.host.state.account_exists(to)) || state!(ctx, ctx.host.state.account_is_empty(to));
                let new_account = if dead && !value.is_zero() && kind == CallKind::Call { GAS_NEWACCOUNT } else { 0 };
                Ok(transfer + new_account)
            } else {
                let exists = state!(ctx, ctx.host.state.account_exists(to));
                Ok(transfer + if exists { 0 } else { GAS_NEWACCOUNT })
            }
        }
    }
}

// Creation ----------------------------------------------------------------------------------------------

fn create(ctx: Ctx) -> R {
    generic_create(ctx, false)
}

fn create2(ctx: Ctx) -> R {
    require(&ctx, SpecId::PETERSBURG)?;
    generic_create(ctx, true)
}

/// py-evm's `Create.__call__` (and CREATE2's), with each fork's rules.
fn generic_create(mut ctx: Ctx, is_create2: bool) -> R {
    let spec = ctx.host.spec;
    if spec.is_enabled_in(SpecId::BYZANTIUM) {
        no_static(&ctx)?;
    }
    let (endowment, start, length, salt) = if is_create2 {
        let [e, s, l, salt] = pop(ctx.interpreter)?;
        (e, s, l, salt)
    } else {
        let [e, s, l] = pop(ctx.interpreter)?;
        (e, s, l, U256::ZERO)
    };
    let words = u64::try_from(length).map(|l| l.div_ceil(32)).unwrap_or(u64::MAX / 64);
    let mut cost = 32000u64;
    if is_create2 {
        cost = cost.saturating_add(words.saturating_mul(6));
    }
    if spec.is_enabled_in(SpecId::SHANGHAI) {
        cost = cost.saturating_add(words.saturating_mul(2));
    }
    charge(ctx.interpreter, cost)?;
    let range = memory(&mut ctx, start, length)?;
    let me = self_address(&ctx);
    let balance = state!(ctx, ctx.host.state.get_balance(me));
    let nonce = state!(ctx, ctx.host.state.get_nonce(me));
    let depth = ctx.interpreter.input.depth();
    if balance < endowment || depth + 1 > STACK_DEPTH_LIMIT || nonce == u64::MAX {
        ctx.interpreter.return_data.clear();
        return push(ctx.interpreter, U256::ZERO);
    }
    let init_code = if range.is_empty() { Bytes::new() } else { Bytes::copy_from_slice(&ctx.interpreter.memory.slice(range)) };
    let remaining = ctx.interpreter.gas.remaining();
    let child_gas = if spec.is_enabled_in(SpecId::TANGERINE) { remaining - remaining / 64 } else { remaining };
    charge(ctx.interpreter, child_gas)?;
    let address = if is_create2 {
        state!(ctx, ctx.host.state.increment_nonce(me));
        create2_address(me, salt, &init_code)
    } else {
        let creation_nonce = state!(ctx, ctx.host.state.get_nonce(me));
        state!(ctx, ctx.host.state.increment_nonce(me));
        create_address(me, creation_nonce)
    };
    if spec.is_enabled_in(SpecId::BERLIN) {
        ctx.host.state.mark_address_warm(address);
    }
    if state!(ctx, ctx.host.state.account_has_code_or_nonce(address)) {
        ctx.interpreter.return_data.clear();
        return push(ctx.interpreter, U256::ZERO);
    }
    if spec.is_enabled_in(SpecId::SHANGHAI) && init_code.len() > MAX_INITCODE_SIZE {
        // py-evm raises OutOfGas from `validate_create_message`, after the creator's nonce and
        // the new nonce (EIP-161) changed: the creating frame fails.
        state!(ctx, ctx.host.state.increment_nonce(address));
        return Err(InstructionResult::OutOfGas);
    }
    let message = Message {
        gas: child_gas,
        to: None,
        sender: me,
        value: endowment,
        data: Bytes::new(),
        code: Arc::new(Code::new(init_code)),
        depth: depth + 1,
        create_address: Some(address),
        code_address: None,
        should_transfer_value: true,
        is_static: ctx.interpreter.runtime_flag.is_static(),
    };
    let checkpoint = ctx.host.state.checkpoint();
    if is_create2 {
        ctx.host.state.delete_storage(address);
    }
    let outcome = state!(ctx, ctx.host.apply_create_message(&message));
    if outcome.is_error() && is_create2 {
        ctx.host.state.revert(checkpoint);
    }
    ctx.interpreter.return_data.set_buffer(if outcome.is_error() { outcome.visible_output() } else { Bytes::new() });
    push(ctx.interpreter, if outcome.is_error() { U256::ZERO } else { address_word(address) })?;
    ctx.interpreter.gas.erase_cost(outcome.gas_left());
    Ok(())
}

/// keccak(rlp([sender, nonce]))[12:].
pub fn create_address(sender: Address, nonce: u64) -> Address {
    let mut nonce_rlp = Vec::with_capacity(9);
    if nonce == 0 {
        nonce_rlp.push(0x80);
    } else if nonce < 0x80 {
        nonce_rlp.push(nonce as u8);
    } else {
        let bytes = nonce.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        nonce_rlp.push(0x80 + (8 - skip) as u8);
        nonce_rlp.extend_from_slice(&bytes[skip..]);
    }
    let mut out = Vec::with_capacity(32);
    out.push(0xc0 + (21 + nonce_rlp.len()) as u8);
    out.push(0x94);
    out.extend_from_slice(sender.as_slice());
    out.extend_from_slice(&nonce_rlp);
    Address::from_word(keccak256(&out))
}

/// keccak(0xff ++ sender ++ salt ++ keccak(init_code))[12:] (EIP-1014).
pub fn create2_address(sender: Address, salt: U256, init_code: &[u8]) -> Address {
    let mut out = Vec::with_capacity(85);
    out.push(0xff);
    out.extend_from_slice(sender.as_slice());
    out.extend_from_slice(&salt.to_be_bytes::<32>());
    out.extend_from_slice(keccak256(init_code).as_slice());
    Address::from_word(keccak256(&out))
}

// Self-destruct -------------------------------------------------------------------------------------------

fn selfdestruct(ctx: Ctx) -> R {
    let spec = ctx.host.spec;
    if spec.is_enabled_in(SpecId::BYZANTIUM) {
        no_static(&ctx)?;
    }
    charge(ctx.interpreter, if spec.is_enabled_in(SpecId::TANGERINE) { 5000 } else { 0 })?;
    let [beneficiary] = pop(ctx.interpreter)?;
    let beneficiary = to_address(beneficiary);
    let me = self_address(&ctx);
    if spec.is_enabled_in(SpecId::BERLIN) && ctx.host.warm_account(beneficiary) {
        charge(ctx.interpreter, COLD_ACCOUNT_ACCESS)?;
    }
    if spec.is_enabled_in(SpecId::SPURIOUS_DRAGON) {
        let dead = !state!(ctx, ctx.host.state.account_exists(beneficiary))
            || state!(ctx, ctx.host.state.account_is_empty(beneficiary));
        if dead && !state!(ctx, ctx.host.state.get_balance(me)).is_zero() {
            charge(ctx.interpreter, GAS_SELFDESTRUCT_NEWACCOUNT)?;
        }
    } else if spec.is_enabled_in(SpecId::TANGERINE) && !state!(ctx, ctx.host.state.account_exists(beneficiary)) {
        charge(ctx.interpreter, GAS_SELFDESTRUCT_NEWACCOUNT)?;
    }
    let node = ctx.host.current;
    if spec.is_enabled_in(SpecId::CANCUN) && !ctx.host.contracts_created.contains(&me) {
        // EIP-6780: only the balance moves (as deltas: the beneficiary gets a credit).
        let amount = state!(ctx, ctx.host.state.get_balance(me));
        state!(ctx, ctx.host.state.delta_balance(beneficiary, amount, false));
        state!(ctx, ctx.host.state.delta_balance(me, amount, true));
        ctx.host.nodes[node].beneficiaries.push(beneficiary);
        return Err(InstructionResult::SelfDestruct);
    }
    let local = state!(ctx, ctx.host.state.get_balance(me));
    let theirs = state!(ctx, ctx.host.state.get_balance(beneficiary));
    state!(ctx, ctx.host.state.set_balance(beneficiary, local.wrapping_add(theirs)));
    state!(ctx, ctx.host.state.set_balance(me, U256::ZERO));
    ctx.host.nodes[node].accounts_to_delete.push(me);
    ctx.host.nodes[node].beneficiaries.push(beneficiary);
    Err(InstructionResult::SelfDestruct)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_addresses_match_known_vectors() {
        // The first contract of 0x6ac7ea33f8831ea9dcc53393aaa88b25a785dbf0 (nonce 0 and 1).
        let sender: Address = "0x6ac7ea33f8831ea9dcc53393aaa88b25a785dbf0".parse().unwrap();
        assert_eq!(create_address(sender, 0), "0xcd234a471b72ba2f1ccf0a70fcaba648a5eecd8d".parse::<Address>().unwrap());
        assert_eq!(create_address(sender, 1), "0x343c43a37d37dff08ae8c4a11544c718abb4fcf8".parse::<Address>().unwrap());
        // EIP-1014 example 0.
        assert_eq!(create2_address(Address::ZERO, U256::ZERO, &[0]), "0x4d1a2e2bb4f88f0250f26ffff098b0b30b26bf38".parse::<Address>().unwrap());
    }

    #[test]
    fn net_sstore_matches_eip_2200_cases() {
        let s = Schedule { sload: 800, set: 20000, reset: 5000, clears: 15000 };
        let u = U256::from;
        assert_eq!(net_sstore_cost(&s, u(0), u(0), u(0)), (800, 0));
        assert_eq!(net_sstore_cost(&s, u(0), u(0), u(1)), (20000, 0));
        assert_eq!(net_sstore_cost(&s, u(1), u(1), u(0)), (5000, 15000));
        assert_eq!(net_sstore_cost(&s, u(1), u(2), u(1)), (800, 4200));
        assert_eq!(net_sstore_cost(&s, u(1), u(0), u(1)), (800, -15000 + 4200));
        assert_eq!(net_sstore_cost(&s, u(0), u(1), u(0)), (800, 19200));
    }
}
