"""contracts/build is exactly what compiling contracts/src gives, and has what the marketplace calls.

solc's JavaScript build takes seconds per compile, so the real sources are compiled once per module.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from marketplace.chain import build

ESCROW_FUNCTIONS = {"deposit", "withdraw", "setLeaseCap", "reclaimLease", "registerProvider", "addStake",
                    "startUnbonding", "completeUnbonding", "openLease", "settleLease", "releaseLease", "slash",
                    "available", "reservedOf", "getLease", "getProvider", "quote", "grantRole", "pause"}
ESCROW_EVENTS = {"Deposited", "Withdrawn", "LeaseCapSet", "ProviderRegistered", "StakeAdded", "UnbondingStarted",
                 "StakeUnbonded", "LeaseOpened", "LeaseSettled", "LeaseReleased", "LeaseReclaimed",
                 "ProviderSlashed", "TreasurySet"}
TOKEN_FUNCTIONS = {"mint", "approve", "transfer", "balanceOf", "decimals", "allowance"}


@pytest.fixture(scope="module")
def compiled() -> dict[str, dict[str, Any]]:
    return build.compile_contracts()


def _names(artifact: dict[str, Any], kind: str) -> set[str]:
    return {item["name"] for item in artifact["abi"] if item["type"] == kind}


def _copy_tree(to: Path) -> Path:
    """The sources and the OpenZeppelin package, as a checkout elsewhere would have them."""
    shutil.copytree(build.ROOT / "contracts" / "src", to / "contracts" / "src")
    shutil.copytree(build.ROOT / "node_modules" / "@openzeppelin", to / "node_modules" / "@openzeppelin")
    return to


def test_the_committed_build_is_exactly_what_the_sources_compile_to(compiled):
    problems = build.build_differences(compiled)
    assert not problems, build.describe(problems)
    assert build.build_is_current()


def test_each_artifact_says_what_it_was_built_from_and_with(compiled):
    escrow = compiled["LeaseEscrow"]
    assert escrow["compiler"] == "0.8.28" and escrow["source"] == "contracts/src/LeaseEscrow.sol"
    assert set(escrow["sources"]) >= {"contracts/src/LeaseEscrow.sol", "contracts/src/ILeaseEscrow.sol",
                                      "node_modules/@openzeppelin/contracts/access/AccessControl.sol"}
    assert "contracts/src/LeaseEscrow.sol" not in compiled["MarketToken"]["sources"]  # only its own files
    assert escrow["sources_sha256"] == build.sources_digest(escrow["sources"])
    for name in ("LeaseEscrow", "MarketToken"):  # both end with CBOR metadata naming solc 0.8.28 (0x00081c)
        assert compiled[name]["bytecode"].endswith("64736f6c634300081c0033")
        assert compiled[name]["deployedBytecode"].endswith("64736f6c634300081c0033")
    assert compiled["ILeaseEscrow"]["bytecode"] == "0x"


def test_the_abis_have_what_the_marketplace_calls_and_listens_for(compiled):
    escrow = compiled["LeaseEscrow"]
    assert ESCROW_FUNCTIONS <= _names(escrow, "function")
    assert ESCROW_EVENTS <= _names(escrow, "event")
    assert {"InsufficientBalance", "LeaseNotOpen", "NotRegistered"} <= _names(escrow, "error")
    assert ESCROW_EVENTS <= _names(compiled["ILeaseEscrow"], "event")
    assert TOKEN_FUNCTIONS <= _names(compiled["MarketToken"], "function")
    opened = next(item for item in escrow["abi"] if item.get("name") == "LeaseOpened")
    assert [arg["name"] for arg in opened["inputs"] if arg["indexed"]] == ["leaseId", "jobId", "tenant"]


def test_the_same_sources_elsewhere_compile_to_the_same_bytes(compiled, tmp_path):
    """Nothing about the checkout's path reaches an artifact (the bytecode ends with a metadata hash)."""
    written = build.write_build(tmp_path / "build", compiled)
    assert [path.name for path in written] == ["ILeaseEscrow.json", "LeaseEscrow.json", "MarketToken.json"]
    assert all(path.read_bytes() == (build.BUILD_DIR / path.name).read_bytes() for path in written)
    text = written[1].read_text()
    assert str(build.ROOT) not in text and text.endswith("}\n")


def test_an_edited_added_or_deleted_source_makes_the_build_stale_without_compiling(compiled, tmp_path):
    root = _copy_tree(tmp_path / "checkout")
    build_dir = root / "contracts" / "build"
    build.write_build(build_dir, compiled)
    assert build.stale_artifacts(build_dir, root) == []
    escrow = root / "contracts" / "src" / "LeaseEscrow.sol"
    escrow.write_text(escrow.read_text() + "\n// a change\n")
    (root / "contracts" / "src" / "Extra.sol").write_text("pragma solidity 0.8.28;\ncontract Extra {}\n")
    (root / "contracts" / "src" / "MarketToken.sol").unlink()
    assert build.stale_artifacts(build_dir, root) == [
        "LeaseEscrow.json: contracts/src/LeaseEscrow.sol changed",
        "MarketToken.json: contracts/src/MarketToken.sol is gone",
        "contracts/src/Extra.sol is in no artifact",
    ]
    assert not build.build_is_current(build_dir, root)


def test_check_exits_1_naming_what_differs_and_how_to_fix_it(compiled, tmp_path, monkeypatch):
    monkeypatch.setattr(build, "compile_contracts", lambda: compiled)  # the module's one compile
    build_dir = tmp_path / "build"
    build.write_build(build_dir, compiled)
    call_command("compile_contracts", "--check", "--build-dir", str(build_dir))
    (build_dir / "LeaseEscrow.json").write_text("{}\n")
    (build_dir / "MarketToken.json").unlink()
    with pytest.raises(CommandError) as raised:
        call_command("compile_contracts", "--check", "--build-dir", str(build_dir))
    assert str(raised.value) == ("contracts/build is out of date:\n  MarketToken.json is missing\n"
                                 "  LeaseEscrow.json differs from a fresh compile\n"
                                 "run `python manage.py compile_contracts`")


def test_a_compile_error_is_reported_as_file_line_and_message(tmp_path):
    source = tmp_path / "contracts" / "src" / "Broken.sol"
    source.parent.mkdir(parents=True)
    source.write_text("// SPDX-License-Identifier: MIT\npragma solidity 0.8.28;\n\n/// déjà vu: bytes, not chars\n"
                      "contract Broken {\n    function f() external { uint256 x = 1 }\n}\n")
    with pytest.raises(build.CompileError) as raised:
        build.compile_contracts(tmp_path)
    assert raised.value.messages == ["contracts/src/Broken.sol:6: ParserError: Expected ';' but got '}'"]


def test_a_missing_import_names_the_file_the_line_and_the_fix(tmp_path):
    source = tmp_path / "contracts" / "src" / "Token.sol"
    source.parent.mkdir(parents=True)
    source.write_text('pragma solidity 0.8.28;\n// import "./Commented.sol";\n'
                      'import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";\n')
    with pytest.raises(build.CompileError) as raised:
        build.compile_contracts(tmp_path)
    assert str(raised.value) == (
        "contracts/src/Token.sol:3: imported file not found: '@openzeppelin/contracts/token/ERC20/ERC20.sol' "
        "(looked for node_modules/@openzeppelin/contracts/token/ERC20/ERC20.sol) (run `npm ci` in the project root)")


def test_the_command_turns_a_compile_error_into_a_message_not_a_traceback(monkeypatch):
    def refuse() -> None:
        raise build.CompileError(["contracts/src/X.sol:3: TypeError: nope"])

    monkeypatch.setattr(build, "compile_contracts", refuse)
    with pytest.raises(CommandError, match=r"compiling the contracts failed:\ncontracts/src/X.sol:3: TypeError: nope"):
        call_command("compile_contracts")


def test_a_missing_artifact_names_the_command_that_makes_it(tmp_path):
    with pytest.raises(build.ArtifactMissing, match=r"run `python manage.py compile_contracts`"):
        build.load_artifact("LeaseEscrow", tmp_path)
    assert build.load_artifact("MarketToken")["contract"] == "MarketToken"


def test_a_wrong_solc_version_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "solc"
    fake.write_text("#!/bin/sh\necho 'solc, the solidity compiler commandline interface'\n"
                    "echo 'Version: 0.8.20+commit.a1b79de6.Linux.g++'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("SOLC_BINARY", str(fake))
    assert build.find_solc() == fake
    with pytest.raises(build.BuildError, match=r"is solc 0.8.20; the contracts are built with solc 0.8.28 only"):
        build.compile_contracts()
