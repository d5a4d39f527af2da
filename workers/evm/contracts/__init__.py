"""Hand-assembled contracts for synthetic blocks: an ERC-20 token, a constant-product pool and a
small deployable contract (`programs`), written in a tiny assembler (`asm`)."""
from __future__ import annotations

from .asm import AssemblyError, assemble
from .programs import erc20_runtime, pool_runtime, stored_init_code, stored_runtime

__all__ = ["AssemblyError", "assemble", "erc20_runtime", "pool_runtime", "stored_init_code", "stored_runtime"]
