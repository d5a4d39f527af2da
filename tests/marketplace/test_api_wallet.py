"""GET/POST /api/v1/wallet/: the message a wallet signs, and linking it with a real EIP-191 signature."""
from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account as EthAccount
from eth_account.messages import encode_defunct

from marketplace.models import Account
from marketplace.services.accounts import sign_wallet_link, wallet_link_message
from tests.conftest import Person
from tests.web.escrow import CHAIN_ID, DEVELOPER_KEY, OTHER_KEY, Escrow

URL = "/api/v1/wallet/"
DEV = EthAccount.from_key(DEVELOPER_KEY)
OTHER = EthAccount.from_key(OTHER_KEY)


def sign(text: str, key: str) -> str:
    return "0x" + bytes(EthAccount.from_key(key).sign_message(encode_defunct(text=text)).signature).hex()


def linked(person: Person) -> str:
    return Account.objects.get(user=person.user).wallet_address


def test_an_account_without_a_wallet_says_so(developer: Person) -> None:
    response = developer.client.get(URL)
    assert response.status_code == 200
    assert response.json() == {"address": None, "linked_at": None, "message_to_sign": None, "chain_id": None}


def test_it_gives_the_exact_message_a_wallet_signs(developer: Person) -> None:
    response = developer.client.get(URL, {"address": DEV.address})
    assert response.status_code == 200
    message = response.json()["message_to_sign"]
    assert message == wallet_link_message(developer.user, DEV.address)
    assert DEV.address in message and "dave" in message


@pytest.mark.parametrize("address, words", [
    ("0x12345", "not an EVM address"),
    (DEV.address.lower(), "checksum does not match"),
    ("", "not an EVM address"),
])
def test_it_refuses_to_give_a_message_for_a_bad_address(developer: Person, address: str, words: str) -> None:
    response = developer.client.get(URL, {"address": address})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_address" and body["field"] == "address" and words in body["detail"]


def test_a_signature_from_the_wallet_links_it(developer: Person) -> None:
    message = developer.client.get(URL, {"address": DEV.address}).json()["message_to_sign"]
    response = developer.client.post(URL, {"address": DEV.address, "signature": sign(message, DEVELOPER_KEY)},
                                     format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["address"] == DEV.address and body["linked_at"] and body["message_to_sign"] is None
    assert linked(developer) == DEV.address
    assert developer.client.get(URL).json()["address"] == DEV.address


def test_linking_another_wallet_replaces_the_first(developer: Person) -> None:
    for key in (DEVELOPER_KEY, OTHER_KEY):
        address, signature = sign_wallet_link(developer.user, key)
        assert developer.client.post(URL, {"address": address, "signature": signature},
                                     format="json").status_code == 200
    assert linked(developer) == OTHER.address


@pytest.mark.parametrize("address", ["0x12345", DEV.address.lower(), "0x" + "g" * 40, "not an address"])
def test_a_bad_address_is_refused_and_nothing_is_linked(developer: Person, address: str) -> None:
    _, signature = sign_wallet_link(developer.user, DEVELOPER_KEY)
    response = developer.client.post(URL, {"address": address, "signature": signature}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_address" and response.json()["field"] == "address"
    assert linked(developer) == ""


@pytest.mark.parametrize("signature", ["0x1234", "not hex at all", "0x" + "00" * 65, "0x" + "zz" * 65])
def test_a_malformed_signature_is_refused(developer: Person, signature: str) -> None:
    response = developer.client.post(URL, {"address": DEV.address, "signature": signature}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_signature" and response.json()["field"] == "signature"
    assert linked(developer) == ""


def test_a_signature_by_another_wallet_is_refused_and_names_the_signer(developer: Person) -> None:
    message = wallet_link_message(developer.user, DEV.address)
    response = developer.client.post(URL, {"address": DEV.address, "signature": sign(message, OTHER_KEY)},
                                     format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "wrong_signer" and OTHER.address in body["detail"]
    assert linked(developer) == ""


def test_a_signature_made_for_another_account_cannot_be_replayed(developer: Person,
                                                                  other_developer: Person) -> None:
    address, signature = sign_wallet_link(other_developer.user, DEVELOPER_KEY)  # erin's message, dave's wallet
    response = developer.client.post(URL, {"address": address, "signature": signature}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "wrong_signer"
    assert linked(developer) == ""


@pytest.mark.parametrize("body, code", [
    ({"address": DEV.address}, "required"),
    ({"signature": "0x00"}, "required"),
    ({"address": DEV.address, "signature": "0x00", "chain_id": 1}, "unknown_field"),
    ({"address": DEV.address, "signature": ""}, "blank"),
    ({"address": ["x"], "signature": "0x00"}, "invalid"),
    ({"address": "0x" + "a" * 200, "signature": "0x00"}, "max_length"),
])
def test_a_body_of_the_wrong_shape_is_a_400_with_a_code(developer: Person, body: dict[str, Any], code: str) -> None:
    response = developer.client.post(URL, body, format="json")
    assert response.status_code == 400 and response.json()["code"] == code
    assert linked(developer) == ""


def test_anonymous_callers_are_refused(anon: Any, db: None) -> None:
    assert anon.get(URL).status_code == 401
    assert anon.post(URL, {"address": DEV.address, "signature": "0x00"}, format="json").status_code == 401


def test_the_chain_id_is_the_recorded_deployments(developer: Person, settings: Any, monkeypatch: Any) -> None:
    Escrow.configure(settings, monkeypatch)
    assert developer.client.get(URL).json()["chain_id"] == CHAIN_ID
    settings.CHAIN_ID = 10  # an operator pinning the chain wins
    assert developer.client.get(URL).json()["chain_id"] == 10


def test_before_any_deployment_the_chain_id_is_null_and_the_node_is_not_asked(developer: Person, settings: Any,
                                                                              monkeypatch: Any) -> None:
    from marketplace.chain import context

    settings.CHAIN_URL = "http://127.0.0.1:9"
    monkeypatch.setattr(context, "chain_id", lambda: pytest.fail("a page view asked the node"))
    assert developer.client.get(URL).json()["chain_id"] is None


def record_escrows(*chain_ids: int) -> None:
    from marketplace.models import ChainDeployment

    for chain_id in chain_ids:
        ChainDeployment.objects.create(chain_id=chain_id, name="LeaseEscrow", address="0x" + "1" * 40, block_number=1)


def test_with_several_chains_recorded_the_node_says_which(developer: Person, settings: Any,
                                                           monkeypatch: Any) -> None:
    from marketplace.chain import context

    settings.CHAIN_URL = "http://127.0.0.1:9"
    record_escrows(CHAIN_ID, 5)
    monkeypatch.setattr(context, "chain_id", lambda: 5)
    assert developer.client.get(URL).json()["chain_id"] == 5


@pytest.mark.filterwarnings("ignore:websockets.legacy is deprecated:DeprecationWarning")  # web3's import
def test_the_chain_id_is_null_when_the_node_that_should_say_which_does_not_answer(developer: Person,
                                                                                  settings: Any) -> None:
    settings.CHAIN_URL = "http://127.0.0.1:9"  # nothing listens there: unknown, not a 500
    record_escrows(CHAIN_ID, 5)
    assert developer.client.get(URL).json()["chain_id"] is None
