"""The one module that imports web3: calls, signed sends, receipts, logs and decoded reverts.

Everything the rest of the marketplace needs from a chain goes through `ChainClient`. web3 is
imported when a client is made, not when this module is (it takes seconds). Values cross this
seam as plain Python: addresses as checksummed strings, hashes and bytes as 0x hex, uint256 as int.

>>> client = ChainClient("http://127.0.0.1:8545")
>>> escrow = client.contract("LeaseEscrow", "0x5FbDB2315678afecb367f032d93F642f64180aa3")
>>> client.call(escrow, "available", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
0
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from marketplace.chain.build import load_artifact

GAS_HEADROOM = 1.25  # estimates are exact on anvil; real chains move between estimate and inclusion
DEFAULT_TIP_WEI = 10**9


class ChainError(Exception):
    """Talking to the chain went wrong (unreachable, or an answer we did not expect)."""


class ChainUnavailable(ChainError):
    """The node did not answer: worth retrying later."""


class ContractRevert(ChainError):
    """The contract refused a call, with its custom error decoded when the ABI knows it.

    ``error`` is the error's name (``InsufficientBalance``), ``args`` its arguments by name.
    """

    def __init__(self, error: str, args: Mapping[str, Any] | None = None, raw: str = "") -> None:
        self.error = error
        self.args_by_name = dict(args or {})
        self.raw = raw
        detail = ", ".join(f"{name}={value}" for name, value in self.args_by_name.items())
        super().__init__(f"{error}({detail})" if detail else error)


@dataclass(frozen=True)
class Contract:
    """A deployed contract: its name (for the ABI), address and web3 handle."""

    name: str
    address: str
    handle: Any = field(repr=False, compare=False)


@dataclass(frozen=True)
class Receipt:
    tx_hash: str
    succeeded: bool
    block_number: int
    gas_used: int
    contract_address: str | None = None


@dataclass(frozen=True)
class Event:
    """One decoded contract log."""

    name: str
    args: dict[str, Any]
    address: str
    tx_hash: str
    log_index: int
    block_number: int
    block_hash: str


@dataclass(frozen=True)
class SignedTx:
    raw: str  # 0x hex of the signed bytes: broadcasting them again sends the same transaction
    tx_hash: str
    sender: str
    nonce: int


def address_of(private_key: str) -> str:
    """The checksummed address of a hex private key (the key itself never leaves this module)."""
    from eth_account import Account

    return str(Account.from_key(private_key).address)


class ChainClient:
    """A JSON-RPC endpoint with the marketplace's contracts' ABIs (from ``contracts/build``)."""

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        import requests
        from web3 import Web3

        self.url = url
        # Typed as Any: web3's own types want its NewTypes (ChecksumAddress, HexStr...) where this
        # seam deals in plain strings, checked at the edges.
        session = requests.Session()
        session.trust_env = False  # straight to the node: never through an HTTP_PROXY from the environment
        self.w3: Any = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout_s}, session=session))
        self._errors: dict[bytes, tuple[str, list[dict[str, Any]]]] = {}
        self._chain_id: int | None = None

    # --- reads -----------------------------------------------------------------------------

    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self._rpc(lambda: self.w3.eth.chain_id))
        return self._chain_id

    def head(self) -> int:
        """The latest block number."""
        return int(self._rpc(lambda: self.w3.eth.block_number))

    def block_time(self, number: int | str = "latest") -> int:
        return int(self._rpc(lambda: self.w3.eth.get_block(number)["timestamp"]))

    def contract(self, name: str, address: str) -> Contract:
        """The deployed contract ``name`` (an artifact in ``contracts/build``) at ``address``."""
        from web3 import Web3

        abi = load_artifact(name)["abi"]
        self._learn_errors(abi)
        checksummed = Web3.to_checksum_address(address)
        return Contract(name, checksummed, self.w3.eth.contract(address=checksummed, abi=abi))

    def call(self, contract: Contract, function: str, *args: Any, block: int | str = "latest") -> Any:
        """A view call's result; a revert raises `ContractRevert`."""
        fn = getattr(contract.handle.functions, function)(*args)
        return self._rpc(lambda: fn.call(block_identifier=block))

    def balance_of(self, token: Contract, address: str) -> int:
        return int(self.call(token, "balanceOf", address))

    def nonce(self, address: str) -> int:
        """The next nonce of ``address`` counting its pending transactions."""
        return int(self._rpc(lambda: self.w3.eth.get_transaction_count(address, "pending")))

    # --- writes ----------------------------------------------------------------------------

    def estimate(self, contract: Contract, function: str, args: Sequence[Any], sender: str) -> int:
        """Gas for the call from ``sender``; raises `ContractRevert` if the contract would refuse it
        (this is the preflight that keeps refused calls from ever using a nonce)."""
        fn = getattr(contract.handle.functions, function)(*args)
        # "pending": the state after our own calls that are sent but not mined yet.
        return int(self._rpc(lambda: fn.estimate_gas({"from": sender}, block_identifier="pending")))

    def sign_call(self, private_key: str, contract: Contract, function: str, args: Sequence[Any], *,
                  nonce: int, gas: int | None = None) -> SignedTx:
        """Sign (not send) a call with an explicit nonce. Gas is estimated when not given."""
        from eth_account import Account

        sender = address_of(private_key)
        gas = gas if gas is not None else int(self.estimate(contract, function, args, sender) * GAS_HEADROOM)
        fn = getattr(contract.handle.functions, function)(*args)
        tx = fn.build_transaction({"from": sender, "nonce": nonce, "gas": gas, "chainId": self.chain_id(),
                                   **self._fees()})
        signed = Account.sign_transaction(tx, private_key)
        return SignedTx(raw="0x" + bytes(signed.raw_transaction).hex(), tx_hash="0x" + bytes(signed.hash).hex(),
                        sender=sender, nonce=nonce)

    def broadcast(self, signed: SignedTx | str) -> str:
        """Send signed bytes; sending the same bytes again is harmless (the node already knows them,
        or their nonce is used): the transaction hash either way."""
        from web3.exceptions import Web3RPCError

        raw = signed.raw if isinstance(signed, SignedTx) else signed
        try:
            return "0x" + bytes(self._rpc(lambda: self.w3.eth.send_raw_transaction(raw))).hex()
        except Web3RPCError as exc:
            message = str(exc).lower()
            if "already known" in message or "nonce too low" in message or "already imported" in message:
                return "0x" + bytes(self.w3.keccak(hexstr=raw)).hex()  # a transaction's hash is its bytes' hash
            raise ChainError(f"the node refused the transaction: {exc}") from None

    def receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt of a mined transaction, None while it is pending or unknown."""
        from web3.exceptions import TransactionNotFound

        try:
            found = self._rpc(lambda: self.w3.eth.get_transaction_receipt(tx_hash))
        except TransactionNotFound:
            return None
        return self._receipt(found)

    def wait(self, tx_hash: str, timeout_s: float = 30.0) -> Receipt:
        found = self._rpc(lambda: self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout_s,
                                                                            poll_latency=0.05))
        return self._receipt(found)

    def revert_reason(self, tx_hash: str) -> ContractRevert | None:
        """Why a mined transaction reverted: its call replayed at its block, decoded."""
        tx = self._rpc(lambda: self.w3.eth.get_transaction(tx_hash))
        call = {"from": tx["from"], "to": tx["to"], "data": tx["input"], "gas": tx["gas"]}
        try:
            self._rpc(lambda: self.w3.eth.call(call, tx["blockNumber"] - 1))
        except ContractRevert as exc:
            return exc
        return None

    def transact(self, private_key: str, contract: Contract, function: str, *args: Any) -> Receipt:
        """Sign with the key's next nonce, send and wait: for wallets that are not the marketplace's
        signer (demo seeding, tests, the gas script). The marketplace's own writes use the outbox."""
        signed = self.sign_call(private_key, contract, function, args, nonce=self.nonce(address_of(private_key)))
        receipt = self.wait(self.broadcast(signed))
        if not receipt.succeeded:
            raise self.revert_reason(receipt.tx_hash) or ContractRevert("reverted")
        return receipt

    def deploy(self, private_key: str, name: str, *args: Any) -> tuple[Contract, Receipt]:
        """Deploy artifact ``name`` with constructor ``args``; the contract and the receipt."""
        from eth_account import Account

        artifact = load_artifact(name)
        self._learn_errors(artifact["abi"])
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        sender = address_of(private_key)
        constructor = factory.constructor(*args)
        gas = int(self._rpc(lambda: constructor.estimate_gas({"from": sender})) * GAS_HEADROOM)
        tx = constructor.build_transaction({"from": sender, "nonce": self.nonce(sender), "gas": gas,
                                            "chainId": self.chain_id(), **self._fees()})
        signed = Account.sign_transaction(tx, private_key)
        receipt = self.wait(self.broadcast("0x" + bytes(signed.raw_transaction).hex()))
        if not receipt.succeeded or not receipt.contract_address:
            raise ChainError(f"deploying {name} failed in transaction {receipt.tx_hash}")
        return self.contract(name, receipt.contract_address), receipt

    # --- events ----------------------------------------------------------------------------

    def events(self, contract: Contract, from_block: int, to_block: int) -> list[Event]:
        """Every log the contract emitted in the block range (inclusive), decoded, in chain order."""
        logs = self._rpc(lambda: self.w3.eth.get_logs({"address": contract.address, "fromBlock": from_block,
                                                       "toBlock": to_block}))
        by_topic = self._event_topics(contract)
        decoded = []
        for log in logs:
            name = by_topic.get(bytes(log["topics"][0])) if log["topics"] else None
            if name is None:
                continue  # an event this ABI does not know (e.g. from a newer contract version)
            event = getattr(contract.handle.events, name)().process_log(log)
            decoded.append(Event(name=name, args=dict(event["args"]), address=contract.address,
                                 tx_hash="0x" + bytes(log["transactionHash"]).hex(), log_index=int(log["logIndex"]),
                                 block_number=int(log["blockNumber"]), block_hash="0x" + bytes(log["blockHash"]).hex()))
        return sorted(decoded, key=lambda event: (event.block_number, event.log_index))

    def _event_topics(self, contract: Contract) -> dict[bytes, str]:
        from eth_utils import event_abi_to_log_topic

        return {bytes(event_abi_to_log_topic(item)): item["name"] for item in contract.handle.abi
                if item.get("type") == "event"}

    # --- internals -------------------------------------------------------------------------

    def _fees(self) -> dict[str, int]:
        base = int(self._rpc(lambda: self.w3.eth.get_block("latest")).get("baseFeePerGas", 0))
        return {"maxFeePerGas": 2 * base + DEFAULT_TIP_WEI, "maxPriorityFeePerGas": DEFAULT_TIP_WEI}

    def _receipt(self, found: Mapping[str, Any]) -> Receipt:
        address = found.get("contractAddress")
        return Receipt(tx_hash="0x" + bytes(found["transactionHash"]).hex(), succeeded=found["status"] == 1,
                       block_number=int(found["blockNumber"]), gas_used=int(found["gasUsed"]),
                       contract_address=str(address) if address else None)

    def _learn_errors(self, abi: Iterable[Mapping[str, Any]]) -> None:
        from eth_utils import function_signature_to_4byte_selector

        for item in abi:
            if item.get("type") == "error":
                signature = f"{item['name']}({','.join(_abi_type(arg) for arg in item['inputs'])})"
                self._errors[bytes(function_signature_to_4byte_selector(signature))] = (item["name"], item["inputs"])

    def decode_revert(self, data: str | bytes | None) -> ContractRevert:
        """A revert's return data as a named error (``Error(string)`` and panics included)."""
        from eth_abi import decode

        raw = bytes.fromhex(data[2:] if data.startswith("0x") else data) if isinstance(data, str) else (data or b"")
        selector, body = raw[:4], raw[4:]
        if selector == bytes.fromhex("08c379a0"):
            return ContractRevert("Error", {"message": decode(["string"], body)[0]}, raw.hex())
        if selector == bytes.fromhex("4e487b71"):
            return ContractRevert("Panic", {"code": hex(decode(["uint256"], body)[0])}, raw.hex())
        known = self._errors.get(selector)
        if known is None:
            return ContractRevert("UnknownError", {"data": "0x" + raw.hex()} if raw else {}, raw.hex())
        name, inputs = known
        values = decode([_abi_type(arg) for arg in inputs], body)
        return ContractRevert(name, {arg["name"]: _plain(value, arg["type"]) for arg, value in zip(inputs, values)},
                              raw.hex())

    def _rpc(self, request: Any) -> Any:
        """Run one web3 request, turning its failures into this module's errors."""
        import requests
        from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError

        try:
            return request()
        except (ContractCustomError, ContractPanicError, ContractLogicError) as exc:
            data = exc.data if isinstance(exc.data, str) else None
            if data and len(data) >= 10:
                raise self.decode_revert(data) from None
            raise ContractRevert("Error", {"message": str(exc.message or exc)}) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ChainUnavailable(f"the chain at {self.url} does not answer ({type(exc).__name__})") from None


def _abi_type(argument: Mapping[str, Any]) -> str:
    kind = str(argument["type"])
    if kind.startswith("tuple"):
        return "(" + ",".join(_abi_type(part) for part in argument["components"]) + ")" + kind[len("tuple"):]
    return kind


def _plain(value: Any, kind: str = "") -> Any:
    if kind == "address":
        from eth_utils import to_checksum_address

        return to_checksum_address(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return value
