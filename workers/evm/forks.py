"""Ethereum mainnet forks by block number, and the py-evm VM class of each.

>>> fork_of(19_426_587)
'cancun'
>>> fork_of(4_369_999)
'spurious_dragon'
"""
from __future__ import annotations

from bisect import bisect_right
from typing import Any

FORKS: tuple[tuple[int, str], ...] = (
    (0, "frontier"),
    (1_150_000, "homestead"),
    (2_463_000, "tangerine_whistle"),
    (2_675_000, "spurious_dragon"),
    (4_370_000, "byzantium"),
    (7_280_000, "petersburg"),
    (9_069_000, "istanbul"),
    (9_200_000, "muir_glacier"),
    (12_244_000, "berlin"),
    (12_965_000, "london"),
    (13_773_000, "arrow_glacier"),
    (15_050_000, "gray_glacier"),
    (15_537_394, "paris"),
    (17_034_870, "shanghai"),
    (19_426_587, "cancun"),
)
BYZANTIUM = 4_370_000
_STARTS = [start for start, _ in FORKS]

_VM_CLASS_NAMES = {
    "frontier": "FrontierVM",
    "homestead": "HomesteadVM",
    "tangerine_whistle": "TangerineWhistleVM",
    "spurious_dragon": "SpuriousDragonVM",
    "byzantium": "ByzantiumVM",
    "petersburg": "PetersburgVM",
    "istanbul": "IstanbulVM",
    "muir_glacier": "MuirGlacierVM",
    "berlin": "BerlinVM",
    "london": "LondonVM",
    "arrow_glacier": "ArrowGlacierVM",
    "gray_glacier": "GrayGlacierVM",
    "paris": "ParisVM",
    "shanghai": "ShanghaiVM",
    "cancun": "CancunVM",
}


def fork_of(number: int) -> str:
    """The mainnet fork a block number belongs to."""
    if number < 0:
        raise ValueError("block numbers are not negative")
    return FORKS[bisect_right(_STARTS, number) - 1][1]


def has_receipt_status(number: int) -> bool:
    """Byzantium (EIP-658) replaced the receipt's intermediate state root with a status code."""
    return number >= BYZANTIUM


def vm_class(fork: str) -> Any:
    """The py-evm VM class of a fork (imported lazily: py-evm takes a while to import)."""
    import eth.vm.forks as forks

    return getattr(forks, _VM_CLASS_NAMES[fork])
