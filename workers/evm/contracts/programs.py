"""The synthetic workloads' contracts, hand-assembled (see `workers.evm.contracts.asm`).

Each program carries its Solidity-like equivalent in a comment. They follow Solidity's storage
layout (a ``mapping`` at slot ``p`` keeps key ``k`` at ``keccak(pad32(k) . pad32(p))``), so a
generator can write their pre-state directly, and Solidity's ABI (4-byte selectors, 32-byte words).

Only opcodes every fork has are used (function selectors are extracted with ``DIV``, not ``SHR``,
and there is no ``PUSH0``), so the same code runs in any block. ``REVERT`` is a Byzantium opcode;
in an earlier block it is an undefined instruction, which also aborts the call and undoes its
changes (consuming all its gas): the failure paths differ only in gas, and generated blocks never
take them.
"""
from __future__ import annotations

from eth_hash.auto import keccak

from .asm import assemble

ADDRESS_MASK = 2**160 - 1
SELECTOR_DIVISOR = 2**224  # calldataload(0) / 2**224 = the first 4 bytes of calldata


def selector(signature: str) -> int:
    """The ABI function selector: the first 4 bytes of keccak(signature)."""
    return int.from_bytes(keccak(signature.encode())[:4], "big")


def event_topic(signature: str) -> int:
    """The ABI event topic 0: keccak(signature)."""
    return int.from_bytes(keccak(signature.encode()), "big")


def mapping_slot(key: bytes | int, slot: int) -> int:
    """Where Solidity stores ``mapping[key]`` of a mapping declared at ``slot``."""
    word = key if isinstance(key, int) else int.from_bytes(key, "big")
    return int.from_bytes(keccak(word.to_bytes(32, "big") + slot.to_bytes(32, "big")), "big")


def word(value: bytes | int) -> bytes:
    """One 32-byte ABI word (an address is left-padded)."""
    return (value if isinstance(value, int) else int.from_bytes(value, "big")).to_bytes(32, "big")


# The shared prologue: non-payable (Solidity rejects value sent to a non-payable function), then the
# selector on the stack for the dispatch that follows.
_PROLOGUE = """
    CALLVALUE @revert JUMPI                     ; require(msg.value == 0)
    0x00 CALLDATALOAD $SELECTOR_DIVISOR SWAP1 DIV   ; [selector]
"""

# ERC-20 ---------------------------------------------------------------------------------------

ERC20_BALANCES_SLOT = 0
TRANSFER = selector("transfer(address,uint256)")  # 0xa9059cbb
BALANCE_OF = selector("balanceOf(address)")  # 0x70a08231
TRANSFER_TOPIC = event_topic("Transfer(address,address,uint256)")

# contract Token {
#     mapping(address => uint256) balanceOf;                      // slot 0
#     event Transfer(address indexed from, address indexed to, uint256 value);
#     function transfer(address to, uint256 amount) returns (bool) {
#         require(balanceOf[msg.sender] >= amount);                // reverts with no data
#         balanceOf[msg.sender] -= amount;
#         balanceOf[to] += amount;                                 // after the debit: to == sender works
#         emit Transfer(msg.sender, to, amount);
#         return true;
#     }
#     function balanceOf(address owner) view returns (uint256);
# }
# Stacks are written bottom -> top in the comments.
ERC20_SOURCE = _PROLOGUE + """
    DUP1 $TRANSFER EQ @transfer JUMPI
    DUP1 $BALANCE_OF EQ @balance_of JUMPI
revert:                                         ; also the fallback: unknown selectors revert
    0x00 DUP1 REVERT

transfer:                                       ; [selector]
    POP
    0x44 CALLDATASIZE LT @revert JUMPI          ; two arguments: calldatasize >= 4 + 64
    CALLER 0x00 MSTORE  $BALANCES 0x20 MSTORE  0x40 0x00 KECCAK256   ; [from_slot]
    DUP1 SLOAD                                  ; [from_slot, balance]
    0x24 CALLDATALOAD                           ; [from_slot, balance, amount]
    DUP1 DUP3 LT @revert JUMPI                  ; balance < amount: revert
    SWAP1 SUB                                   ; [from_slot, balance - amount]
    SWAP1 SSTORE                                ; []
    0x04 CALLDATALOAD $ADDRESS_MASK AND         ; [to]
    DUP1 0x00 MSTORE  0x40 0x00 KECCAK256       ; [to, to_slot]   (mem[32:64] still holds the slot)
    DUP1 SLOAD  0x24 CALLDATALOAD ADD           ; [to, to_slot, to_balance + amount]
    SWAP1 SSTORE                                ; [to]   (cannot overflow: the supply is bounded)
    0x24 CALLDATALOAD 0x00 MSTORE               ; log data: amount
    CALLER $TRANSFER_TOPIC 0x20 0x00 LOG3       ; Transfer(msg.sender, to, amount)
    0x01 0x00 MSTORE  0x20 0x00 RETURN          ; return true

balance_of:                                     ; [selector]
    POP
    0x24 CALLDATASIZE LT @revert JUMPI
    0x04 CALLDATALOAD $ADDRESS_MASK AND 0x00 MSTORE  $BALANCES 0x20 MSTORE
    0x40 0x00 KECCAK256 SLOAD 0x00 MSTORE
    0x20 0x00 RETURN
"""


def erc20_runtime() -> bytes:
    """The ERC-20 token's runtime code."""
    return assemble(
        ERC20_SOURCE,
        {
            "SELECTOR_DIVISOR": SELECTOR_DIVISOR,
            "TRANSFER": TRANSFER,
            "BALANCE_OF": BALANCE_OF,
            "BALANCES": ERC20_BALANCES_SLOT,
            "ADDRESS_MASK": ADDRESS_MASK,
            "TRANSFER_TOPIC": TRANSFER_TOPIC,
        },
    )


def erc20_transfer_calldata(to: bytes, amount: int) -> bytes:
    return TRANSFER.to_bytes(4, "big") + word(to) + word(amount)


# Constant-product pool ------------------------------------------------------------------------

POOL_RESERVE0_SLOT, POOL_RESERVE1_SLOT, POOL_BALANCE0_SLOT, POOL_BALANCE1_SLOT = 0, 1, 2, 3
SWAP = selector("swap(uint256)")
GET_RESERVES = selector("getReserves()")
SWAP_TOPIC = event_topic("Swap(address,uint256,uint256)")

# contract Pool {                                   // sells token0 for token1, x * y = k, 0.3% fee
#     uint256 reserve0;                             // slot 0
#     uint256 reserve1;                             // slot 1
#     mapping(address => uint256) balance0;         // slot 2: traders' token0
#     mapping(address => uint256) balance1;         // slot 3: traders' token1
#     event Swap(address indexed trader, uint256 amountIn, uint256 amountOut);
#     function swap(uint256 amountIn) returns (uint256 amountOut) {
#         require(amountIn > 0 && balance0[msg.sender] >= amountIn);
#         balance0[msg.sender] -= amountIn;
#         amountOut = amountIn * 997 * reserve1 / (reserve0 * 1000 + amountIn * 997);
#         require(amountOut > 0);
#         reserve0 += amountIn;                     // every swap reads and writes both reserves:
#         reserve1 -= amountOut;                    // a serial dependency chain
#         balance1[msg.sender] += amountOut;
#         emit Swap(msg.sender, amountIn, amountOut);
#     }
#     function getReserves() view returns (uint256, uint256);
# }
POOL_SOURCE = _PROLOGUE + """
    DUP1 $SWAP EQ @swap JUMPI
    DUP1 $GET_RESERVES EQ @get_reserves JUMPI
revert:
    0x00 DUP1 REVERT

swap:                                           ; [selector]
    POP
    0x24 CALLDATASIZE LT @revert JUMPI
    0x04 CALLDATALOAD                           ; [in]
    DUP1 ISZERO @revert JUMPI
    CALLER 0x00 MSTORE  $BALANCE0 0x20 MSTORE  0x40 0x00 KECCAK256   ; [in, b0_slot]
    DUP1 SLOAD                                  ; [in, b0_slot, b0]
    DUP3 DUP2 LT @revert JUMPI                  ; b0 < in: revert
    DUP3 SWAP1 SUB                              ; [in, b0_slot, b0 - in]
    SWAP1 SSTORE                                ; [in]
    DUP1 997 MUL                                ; [in, in_fee]
    $RESERVE1 SLOAD DUP2 MUL                    ; [in, in_fee, in_fee * r1]
    SWAP1 $RESERVE0 SLOAD 1000 MUL ADD          ; [in, in_fee * r1, r0 * 1000 + in_fee]
    SWAP1 DIV                                   ; [in, out]
    DUP1 ISZERO @revert JUMPI
    DUP2 $RESERVE0 SLOAD ADD $RESERVE0 SSTORE   ; reserve0 += in
    DUP1 $RESERVE1 SLOAD SUB $RESERVE1 SSTORE   ; reserve1 -= out (out < reserve1 by construction)
    CALLER 0x00 MSTORE  $BALANCE1 0x20 MSTORE  0x40 0x00 KECCAK256   ; [in, out, b1_slot]
    DUP1 SLOAD DUP3 ADD SWAP1 SSTORE            ; balance1[msg.sender] += out; [in, out]
    0x20 MSTORE  0x00 MSTORE                    ; mem[0:64] = (in, out)
    CALLER $SWAP_TOPIC 0x40 0x00 LOG2           ; Swap(msg.sender, in, out)
    0x20 0x20 RETURN                            ; return out

get_reserves:                                   ; [selector]
    $RESERVE0 SLOAD 0x00 MSTORE  $RESERVE1 SLOAD 0x20 MSTORE
    0x40 0x00 RETURN
"""


def pool_runtime() -> bytes:
    """The constant-product pool's runtime code."""
    return assemble(
        POOL_SOURCE,
        {
            "SELECTOR_DIVISOR": SELECTOR_DIVISOR,
            "SWAP": SWAP,
            "GET_RESERVES": GET_RESERVES,
            "RESERVE0": POOL_RESERVE0_SLOT,
            "RESERVE1": POOL_RESERVE1_SLOT,
            "BALANCE0": POOL_BALANCE0_SLOT,
            "BALANCE1": POOL_BALANCE1_SLOT,
            "SWAP_TOPIC": SWAP_TOPIC,
        },
    )


def pool_swap_calldata(amount_in: int) -> bytes:
    return SWAP.to_bytes(4, "big") + word(amount_in)


def pool_amount_out(amount_in: int, reserve0: int, reserve1: int) -> int:
    """What `swap` pays for ``amount_in`` at the given reserves (the contract's formula, in Python)."""
    fee_in = amount_in * 997
    return fee_in * reserve1 // (reserve0 * 1000 + fee_in)


# A deployable contract ----------------------------------------------------------------------

# contract Stored {
#     address owner;                                // slot 0
#     uint256 value;                                // slot 1
#     constructor(uint256 v) { owner = msg.sender; value = v; }
#     fallback() returns (address, uint256) { return (owner, value); }   // any call
# }
STORED_RUNTIME_SOURCE = """
    0x00 SLOAD 0x00 MSTORE  0x01 SLOAD 0x20 MSTORE  0x40 0x00 RETURN
"""

# Init code: the constructor, then the runtime code, then the 32-byte argument (as Solidity
# appends constructor arguments to the creation code).
STORED_INIT_SOURCE = """
    CALLER 0x00 SSTORE                          ; owner = msg.sender
    0x20 DUP1 CODESIZE SUB 0x00 CODECOPY        ; mem[0:32] = the argument (the last 32 bytes)
    0x00 MLOAD 0x01 SSTORE                      ; value = v
    $RUNTIME_LENGTH DUP1 @runtime 0x00 CODECOPY ; mem[0:n] = runtime code; [n]
    0x00 RETURN                                 ; deploy it
runtime::
"""


def stored_runtime() -> bytes:
    """The runtime code `stored_init_code` deploys."""
    return assemble(STORED_RUNTIME_SOURCE)


def stored_init_code(value: int) -> bytes:
    """Creation code of ``Stored(value)``: stores the deployer and ``value``, deploys `stored_runtime`."""
    runtime = stored_runtime()
    return assemble(STORED_INIT_SOURCE, {"RUNTIME_LENGTH": len(runtime)}) + runtime + word(value)
