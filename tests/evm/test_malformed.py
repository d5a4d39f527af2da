"""Bad input gets a clear error naming the field, from the library and from the command line."""
from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from workers.evm import MalformedBlock, bundle_directory, load_block, load_bundle, run_block
from workers.evm.cli import main
from workers.evm.errors import MissingState

from .conftest import LOCAL_DATA

FRONTIER = LOCAL_DATA / "mainnet" / "46147"  # one value transfer
CANCUN = LOCAL_DATA / "mainnet" / "19923400"  # reads BLOCKHASH
Doc = dict[str, Any]


def read(path: Path) -> Any:
    return json.loads(gzip.decompress(path.read_bytes()))


def write(path: Path, document: Any) -> None:
    path.write_bytes(gzip.compress(json.dumps(document).encode()))


def tampered(source: Path, tmp_path: Path, name: str, change: Callable[[Doc], None]) -> Path:
    target = tmp_path / source.name
    shutil.copytree(source, target)
    document = read(target / name)
    change(document)
    write(target / name, document)
    return target


def tx(document: Doc) -> Doc:
    return document["transactions"][0]


BLOCK_CASES: list[tuple[str, Callable[[Doc], None], str]] = [
    ("missing header field", lambda d: d.pop("miner"), "block.miner: missing"),
    ("bad hex", lambda d: d.update(timestamp="0xzz"), "block.timestamp: not a number"),
    ("short hash", lambda d: d.update(mixHash="0x1234"), "block.mixHash: must be 32 bytes"),
    ("gas used over limit", lambda d: d.update(gasUsed=hex(10**9)), "block.gasUsed"),
    ("tx gas over block limit", lambda d: tx(d).update(gas=hex(10**9), hash=None), "transactions[0].gas: 1000000000 is over the block gas limit"),
    ("tx fields do not match its hash", lambda d: tx(d).update(value="0x1"), "transactions[0].hash: does not match"),
    ("typed tx before Berlin", lambda d: tx(d).update(type="0x2"), "transactions[0].type: type 2 is not valid in frontier"),
    ("transactions not objects", lambda d: d.update(transactions=["0xabc"]), "transactions[0]: must be a full transaction object"),
]


@pytest.mark.parametrize(("change", "message"), [case[1:] for case in BLOCK_CASES], ids=[case[0] for case in BLOCK_CASES])
def test_a_malformed_block_names_the_field(change: Callable[[Doc], None], message: str, tmp_path: Path) -> None:
    with pytest.raises(MalformedBlock, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_block(tampered(FRONTIER, tmp_path, "block.json.gz", change))


def test_a_transaction_whose_sender_cannot_be_recovered(tmp_path: Path) -> None:
    def forge(document: Doc) -> None:
        tx(document).update(s="0x0")
        tx(document).pop("hash")  # so the hash check does not fire first

    with pytest.raises(MalformedBlock, match=r"transactions\[0\]\.from: sender cannot be recovered"):
        run_block(load_block(tampered(FRONTIER, tmp_path, "block.json.gz", forge)))


def test_a_transaction_signed_by_someone_else(tmp_path: Path) -> None:
    block = tampered(FRONTIER, tmp_path, "block.json.gz", lambda d: tx(d).update({"from": "0x" + "11" * 20}))
    with pytest.raises(MalformedBlock, match=r"transactions\[0\]\.from: 0x1111.* is not the signer"):
        run_block(load_block(block))


PRE_STATE_CASES: list[tuple[str, Callable[[Doc], None], str]] = [
    ("code hash without code", lambda d: d[next(iter(d))].update(codeHash="0x" + "ab" * 32), "code: missing: the account has a code hash but no code"),
    ("code not matching its hash", lambda d: d[next(iter(d))].update(code="0x60", codeHash="0x" + "ab" * 32), "code: does not match the account's code hash"),
    ("negative balance", lambda d: d[next(iter(d))].update(balance=-1), "balance: out of range"),
    ("bad address", lambda d: d.update({"0x12": {"balance": "0x0", "nonce": 0}}), "must be 20 bytes"),
    ("storage not an object", lambda d: d[next(iter(d))].update(storage=[1]), "storage: must be an object"),
]


@pytest.mark.parametrize(("change", "message"), [case[1:] for case in PRE_STATE_CASES], ids=[case[0] for case in PRE_STATE_CASES])
def test_a_malformed_pre_state_names_the_field(change: Callable[[Doc], None], message: str, tmp_path: Path) -> None:
    with pytest.raises(MalformedBlock, match=message):
        load_block(tampered(FRONTIER, tmp_path, "pre_state.json.gz", change))


def test_missing_files_and_bad_bundles(tmp_path: Path) -> None:
    with pytest.raises(MalformedBlock, match="no such block directory"):
        load_block(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MalformedBlock, match="block.json.gz: missing file"):
        load_block(tmp_path / "empty")
    with pytest.raises(MalformedBlock, match="not valid"):
        load_bundle(b"\x1f\x8b garbage")
    with pytest.raises(MalformedBlock, match='"block" and "pre_state"'):
        load_bundle(json.dumps({"block": {}}).encode())


def test_a_bundle_is_the_same_block(tmp_path: Path) -> None:
    bundle = tmp_path / "block.bundle"
    bundle.write_bytes(bundle_directory(CANCUN))
    assert load_block(bundle) == load_block(CANCUN)
    assert run_block(load_block(bundle)).verified


def test_a_block_hash_out_of_range_and_a_missing_one(tmp_path: Path) -> None:
    number = read(CANCUN / "block.json.gz")["number"]
    with pytest.raises(MalformedBlock, match="is not one of the 256 ancestors"):
        load_block(tampered(CANCUN, tmp_path / "a", "block_hashes.json.gz", lambda d: d.update({str(int(number, 16)): "0x" + "00" * 32})))
    with pytest.raises(MissingState, match=r"BLOCKHASH\(\d+\) is read but not in block_hashes"):
        run_block(load_block(tampered(CANCUN, tmp_path / "b", "block_hashes.json.gz", lambda d: d.clear())))


def test_a_header_mismatch_names_the_first_differing_transaction(tmp_path: Path) -> None:
    block = tampered(CANCUN, tmp_path, "block.json.gz", lambda d: d.update(gasUsed=hex(int(d["gasUsed"], 16) - 1)))
    report = run_block(load_block(block))
    assert not report.verified and report.checks["gas_used"] is False
    assert "sequential execution gives the same receipts" in (report.mismatch or "")


# The command line ---------------------------------------------------------------------------------


def test_run_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(CANCUN), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for field in ("number", "transactions", "gas_used", "logs_bloom", "receipts_root", "engine", "workers", "reexecuted", "elapsed_s"):
        assert field in report
    assert (report["engine"], report["workers"], report["verified"]) == ("native", 1, True)


def test_bad_input_exits_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nothing")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["run", str(FRONTIER), "--workers", "0"]) == 2
    assert main(["generate", "nonsense", "10", str(tmp_path / "g")]) == 2


def test_a_mismatch_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    block = tampered(FRONTIER, tmp_path, "block.json.gz", lambda d: d.update(logsBloom="0x" + "ff" * 256))
    assert main(["run", str(block)]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_verify_reports_every_block_and_fails_if_one_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tampered(FRONTIER, tmp_path, "block.json.gz", lambda d: d.pop("miner"))
    assert main(["verify", str(CANCUN), str(broken), "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "block.miner: missing" in out and "1 of 2 blocks verified" in out


def test_the_progress_bar_draws_on_a_terminal_only() -> None:
    import io

    from workers.evm.cli import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        bar = ProgressBar(4, "blocks", stream)
        bar.update(2)
        bar.finish()
    assert "[###############...............] 2.0/4 blocks" in terminal.getvalue()
    assert pipe.getvalue() == ""


def test_transactions_must_fit_in_what_the_block_has_left(tmp_path: Path) -> None:
    from workers.evm import InvalidTransaction
    from workers.evm.generate import generate_block

    directory = generate_block("transfers", 3, tmp_path / "t", number=19_500_000)

    def shrink(document: Doc) -> None:  # room for two transfers, not three
        document["gasLimit"] = hex(2 * 21_000 + 10_000)
        document["gasUsed"] = hex(0)

    assert {int(tx["gas"], 16) for tx in read(directory / "block.json.gz")["transactions"]} == {21_000}
    block = tampered(directory, tmp_path / "small", "block.json.gz", shrink)
    with pytest.raises(InvalidTransaction, match="transaction 2: its gas limit"):
        run_block(load_block(block))
