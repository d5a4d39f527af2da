"""A tiny EVM assembler: enough to write the synthetic workloads' contracts by hand.

There is no Solidity compiler at run time, so the contracts of `workers.evm.contracts.programs` are
written in this assembly. One token at a time, separated by whitespace; ``;`` starts a comment:

- ``ADD``, ``SSTORE``, ``KECCAK256`` ...: an opcode (py-evm's mnemonics; ``KECCAK256`` is ``SHA3``);
- ``42``, ``0x2a``: push a number with the shortest ``PUSHn`` (never ``PUSH0``, a Shanghai opcode,
  so the code runs on every fork);
- ``$NAME``: push a named constant given to `assemble`;
- ``name:``: a jump target: defines the label and emits a ``JUMPDEST``;
- ``name::``: a mark: defines the label without emitting anything (e.g. where appended data starts);
- ``@name``: push a label's offset, always as ``PUSH2`` so every offset is known after one pass.

>>> assemble("@end JUMP  0x01 0x00 SSTORE  end: STOP").hex()
'6100095660016000555b00'
>>> assemble("$X", {"X": 0}).hex()
'6000'
"""
from __future__ import annotations

from collections.abc import Mapping

from eth.vm import opcode_values

OPCODES: dict[str, int] = {
    name: value for name, value in vars(opcode_values).items() if name.isupper() and isinstance(value, int)
}
OPCODES["KECCAK256"] = OPCODES["SHA3"]
LABEL_WIDTH = 2  # @label pushes are PUSH2: code is far below 64 KiB (EIP-170 caps it at 24 KiB)


class AssemblyError(ValueError):
    """The assembly source is wrong (unknown token, undefined or duplicate label, bad number)."""


def assemble(source: str, constants: Mapping[str, int] | None = None) -> bytes:
    """Assemble ``source`` into EVM bytecode; ``constants`` are the values of the ``$NAME`` tokens."""
    constants = constants or {}
    code = bytearray()
    labels: dict[str, int] = {}
    fixups: list[tuple[int, str]] = []  # (offset of the PUSH2 operand, label)
    for token in _tokens(source):
        if token.endswith("::") or token.endswith(":"):
            name = token.rstrip(":")
            if not name or name in labels:
                raise AssemblyError(f"empty or duplicate label {token!r}")
            labels[name] = len(code)
            if not token.endswith("::"):
                code.append(OPCODES["JUMPDEST"])
        elif token.startswith("@"):
            code.append(OPCODES["PUSH1"] + LABEL_WIDTH - 1)
            fixups.append((len(code), token[1:]))
            code += bytes(LABEL_WIDTH)
        elif token.startswith("$"):
            if token[1:] not in constants:
                raise AssemblyError(f"no value for the constant {token}")
            code += push(constants[token[1:]])
        elif token[0].isdigit():
            code += push(_number(token))
        elif token.upper() in OPCODES and not token.upper().startswith("PUSH"):
            code.append(OPCODES[token.upper()])
        else:
            raise AssemblyError(f"unknown token {token!r}")
    for offset, name in fixups:
        if name not in labels:
            raise AssemblyError(f"undefined label @{name}")
        code[offset : offset + LABEL_WIDTH] = labels[name].to_bytes(LABEL_WIDTH, "big")
    return bytes(code)


def push(value: int) -> bytes:
    """The shortest ``PUSHn value`` (``PUSH1 0x00`` for zero: ``PUSH0`` only exists from Shanghai)."""
    if not 0 <= value < 2**256:
        raise AssemblyError(f"{value} does not fit in a 256-bit word")
    width = max(1, (value.bit_length() + 7) // 8)
    return bytes([OPCODES["PUSH1"] + width - 1]) + value.to_bytes(width, "big")


def _tokens(source: str) -> list[str]:
    return [token for line in source.splitlines() for token in line.split(";", 1)[0].split()]


def _number(token: str) -> int:
    try:
        return int(token, 0)
    except ValueError:
        raise AssemblyError(f"not a number: {token!r}") from None
