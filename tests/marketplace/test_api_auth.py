"""Sign-up, tokens, the account endpoint, and the limits on authentication attempts."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.conf import global_settings
from django.contrib.auth.hashers import check_password
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from marketplace import ratelimit
from marketplace.models import Account
from tests.conftest import PASSWORD, make_node

REGISTER, TOKEN, ROTATE, ME = "/api/v1/auth/register", "/api/v1/auth/token", "/api/v1/auth/token/rotate", "/api/v1/me"
CHECKSUMMED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # an EIP-55 test vector


def register(client: APIClient, username: str = "zoe", password: str = PASSWORD, role: str = "developer",
             **extra: object):
    return client.post(REGISTER, {"username": username, "password": password, "role": role, **extra}, format="json")


def as_token(token: str, **extra: str) -> APIClient:
    client = APIClient(**extra)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


# --- sign-up -----------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["developer", "provider"])
def test_it_signs_up_an_account_with_a_role_and_a_working_token(db, anon, role):
    response = register(anon, role=role)

    assert response.status_code == 201
    body = response.json()
    assert body["username"] == "zoe" and body["role"] == role
    me = as_token(body["token"]).get(ME)
    assert me.status_code == 200
    assert me.json() == {"username": "zoe", "role": role, "payout_address": ""}
    assert Account.objects.get(user__username="zoe").role == role


def test_it_stores_only_a_salted_hash_of_the_password(db, anon, settings):
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS  # what production uses
    register(anon, username="zoe")
    register(anon, username="yan")

    stored = {user.username: user.password for user in User.objects.all()}
    assert all(PASSWORD not in value for value in stored.values())
    assert all(value.startswith("pbkdf2_sha256$") for value in stored.values())
    assert stored["zoe"] != stored["yan"]  # salted: same password, different hashes
    assert check_password(PASSWORD, stored["zoe"])


@pytest.mark.parametrize("password", [
    "short7",  # too short
    "password1234",  # too common
    "84629175302846",  # all digits
    "zoewanderer1",  # too close to the username
])
def test_it_refuses_a_weak_password_and_creates_nobody(db, anon, password):
    response = register(anon, username="zoewanderer", password=password)

    assert response.status_code == 400
    assert response.json()["code"] == "weak_password"
    assert response.json()["field"] == "password"
    assert not User.objects.exists()


@pytest.mark.parametrize("username", ["alice", "ALICE", "Alice"])
def test_it_refuses_a_taken_username_whatever_its_case(anon, provider, username):
    response = register(anon, username=username)

    assert response.status_code == 409
    assert response.json()["code"] == "username_taken"
    assert User.objects.count() == 1


@pytest.mark.parametrize("username", ["ab", "has space", "semi;colon", "x" * 151])
def test_it_refuses_a_malformed_username(db, anon, username):
    response = register(anon, username=username)

    assert response.status_code == 400
    assert response.json()["code"] in {"invalid_username", "max_length"}
    assert not User.objects.exists()


@pytest.mark.parametrize("role", ["admin", "", "Provider", None, 1])
def test_it_refuses_a_role_that_is_not_provider_or_developer(db, anon, role):
    response = register(anon, role=role)

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"role"}
    assert not User.objects.exists()


def test_it_refuses_to_let_a_sign_up_set_other_user_fields(db, anon):
    response = register(anon, is_staff=True)

    assert response.status_code == 400
    assert response.json()["code"] == "unknown_field"
    assert not User.objects.exists()


# --- tokens ------------------------------------------------------------------------------------

def test_it_exchanges_correct_credentials_for_the_accounts_token(anon, developer):
    response = anon.post(TOKEN, {"username": "dave", "password": PASSWORD}, format="json")

    assert response.status_code == 200
    assert response.json() == {"token": developer.token, "username": "dave", "role": "developer"}


def test_it_answers_a_wrong_password_and_an_unknown_user_alike(anon, developer):
    wrong = anon.post(TOKEN, {"username": "dave", "password": PASSWORD + "x"}, format="json")
    unknown = anon.post(TOKEN, {"username": "nobody", "password": PASSWORD}, format="json")

    assert wrong.status_code == unknown.status_code == 400
    assert wrong.json() == unknown.json() == {"code": "invalid_credentials", "detail": "wrong username or password"}


def test_it_makes_a_token_for_a_user_who_lost_theirs(anon, developer):
    Token.objects.filter(user=developer.user).delete()

    response = anon.post(TOKEN, {"username": "dave", "password": PASSWORD}, format="json")

    assert response.status_code == 200
    assert as_token(response.json()["token"]).get(ME).status_code == 200


def test_rotating_the_token_stops_the_old_one_at_once(developer):
    response = developer.client.post(ROTATE)

    assert response.status_code == 200
    new = response.json()["token"]
    assert new != developer.token
    old_answer = as_token(developer.token).get(ME)
    assert old_answer.status_code == 401
    assert old_answer.json()["code"] == "authentication_failed"
    assert as_token(new).get(ME).status_code == 200
    assert Token.objects.get(user=developer.user).key == new


def test_logging_in_after_a_rotation_returns_the_new_token(anon, developer):
    new = developer.client.post(ROTATE).json()["token"]

    assert anon.post(TOKEN, {"username": "dave", "password": PASSWORD}, format="json").json()["token"] == new


@pytest.mark.parametrize(("method", "path"), [("post", ROTATE), ("get", ME), ("patch", ME)])
def test_the_account_endpoints_need_a_token(anon, method, path):
    response = getattr(anon, method)(path)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


# --- the account and its payout address --------------------------------------------------------

def test_a_provider_sets_a_checksummed_payout_address(provider):
    response = provider.client.patch(ME, {"payout_address": CHECKSUMMED}, format="json")

    assert response.status_code == 200
    assert response.json() == {"username": "alice", "role": "provider", "payout_address": CHECKSUMMED}
    assert Account.objects.get(user=provider.user).payout_address == CHECKSUMMED
    assert provider.client.get(ME).json()["payout_address"] == CHECKSUMMED


def test_it_refuses_an_address_with_a_wrong_checksum_and_suggests_the_right_one(provider):
    response = provider.client.patch(ME, {"payout_address": CHECKSUMMED.lower()}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_address"
    assert CHECKSUMMED in response.json()["detail"]
    assert Account.objects.get(user=provider.user).payout_address == ""


@pytest.mark.parametrize("address", [
    CHECKSUMMED[:-1],  # 39 hex digits
    "0x" + "g" * 40,
    "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed00",  # no 0x
    "alice.eth",
])
def test_it_refuses_something_that_is_not_an_address(provider, address):
    response = provider.client.patch(ME, {"payout_address": address}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_address"
    assert Account.objects.get(user=provider.user).payout_address == ""


@pytest.mark.parametrize("address", ["", None, 42, "0x" + "0" * 80])
def test_it_refuses_a_payout_address_of_the_wrong_shape(provider, address):
    response = provider.client.patch(ME, {"payout_address": address}, format="json")

    assert response.status_code == 400
    assert Account.objects.get(user=provider.user).payout_address == ""


def test_the_account_endpoint_cannot_change_the_role(developer):
    response = developer.client.patch(ME, {"role": "provider"}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "read_only_field"
    assert Account.objects.get(user=developer.user).role == "developer"
    assert developer.client.get(ME).json()["role"] == "developer"


# --- throttles ---------------------------------------------------------------------------------

@pytest.fixture
def low_rates(monkeypatch: pytest.MonkeyPatch) -> None:
    """DRF copies the rates onto the throttle class when it is defined, so settings alone do not reach it."""
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"auth": "3/min", "job_create": "3/min",
                                                                "heartbeat": "3/min"})


@pytest.mark.parametrize(("path", "body"), [
    (REGISTER, {"username": "zoe", "password": PASSWORD, "role": "developer"}),
    (TOKEN, {"username": "dave", "password": "wrong password 1"}),
])
def test_the_auth_endpoints_answer_429_past_their_rate(developer, anon, low_rates, path, body):
    answers = [anon.post(path, body, format="json").status_code for _ in range(3)]
    assert 429 not in answers

    response = anon.post(path, body, format="json")

    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
    assert int(response["Retry-After"]) > 0


def test_the_auth_rate_is_per_client_address(developer, low_rates):
    here, there = APIClient(REMOTE_ADDR="10.0.0.1"), APIClient(REMOTE_ADDR="10.0.0.2")
    body = {"username": "dave", "password": PASSWORD}
    for _ in range(3):
        assert here.post(TOKEN, body, format="json").status_code == 200

    assert here.post(TOKEN, body, format="json").status_code == 429
    assert there.post(TOKEN, body, format="json").status_code == 200


def test_signing_up_and_logging_in_share_one_budget(developer, anon, low_rates):
    for _ in range(3):
        anon.post(TOKEN, {"username": "dave", "password": PASSWORD}, format="json")

    assert register(anon).status_code == 429
    assert not User.objects.filter(username="zoe").exists()


def test_rotating_tokens_is_throttled_too(developer, low_rates):
    client = developer.client
    for _ in range(3):
        token = client.post(ROTATE).json()["token"]
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    assert client.post(ROTATE).status_code == 429


@pytest.fixture
def frozen_minute(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Pin the failure counter's clock inside one minute (the counter is per calendar minute)."""
    clock = [1_800_000_000.0]
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: clock[0]))
    return clock


def test_a_flood_of_bad_tokens_is_cut_off_with_429_even_for_a_good_token(settings, developer, frozen_minute):
    settings.AUTH_FAILURES_PER_MINUTE = 3
    for attempt in range(3):
        response = as_token(f"bad-{attempt}").get(ME)
        assert response.status_code == 401

    flooded = as_token("bad-again").get(ME)
    assert flooded.status_code == 429
    assert flooded.json()["code"] == "throttled"
    good_from_same_address = developer.client.get(ME)
    assert good_from_same_address.status_code == 429
    assert good_from_same_address.json()["code"] == "throttled"


def test_the_failure_limit_is_per_address_and_ignores_forwarded_for(settings, developer, frozen_minute):
    settings.AUTH_FAILURES_PER_MINUTE = 3
    for attempt in range(4):
        as_token("bad", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=f"192.0.2.{attempt}").get(ME)

    assert as_token(developer.token, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.99").get(
        ME).status_code == 429
    assert as_token(developer.token, REMOTE_ADDR="10.0.0.2").get(ME).status_code == 200


def test_the_failure_limit_lifts_the_next_minute(settings, developer, frozen_minute):
    settings.AUTH_FAILURES_PER_MINUTE = 3
    for _ in range(4):
        as_token("bad").get(ME)
    assert developer.client.get(ME).status_code == 429

    frozen_minute[0] += 60

    assert developer.client.get(ME).status_code == 200


def test_good_tokens_do_not_use_up_the_failure_budget(settings, developer, frozen_minute):
    settings.AUTH_FAILURES_PER_MINUTE = 3
    for _ in range(10):
        assert developer.client.get(ME).status_code == 200


def test_bad_node_tokens_count_against_the_same_budget(settings, provider, frozen_minute):
    settings.AUTH_FAILURES_PER_MINUTE = 3
    make_node(provider)
    node_client = APIClient()
    for _ in range(3):
        response = node_client.post("/api/v1/nodes/heartbeat/", {}, format="json",
                                    HTTP_AUTHORIZATION="Node node_not-a-real-token")
        assert response.status_code == 401

    response = node_client.post("/api/v1/nodes/heartbeat/", {}, format="json",
                                HTTP_AUTHORIZATION="Node node_not-a-real-token")

    assert response.status_code == 429
    assert provider.client.get(ME).status_code == 429


def test_a_deactivated_user_can_neither_use_a_token_nor_log_in(developer, anon):
    User.objects.filter(pk=developer.user.pk).update(is_active=False)

    assert developer.client.get(ME).status_code == 401
    response = anon.post(TOKEN, {"username": "dave", "password": PASSWORD}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid_credentials"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("spellings", [["same-name"] * 6, ["same-name", "Same-Name", "SAME-NAME", "same-NAME",
                                                          "Same-name", "sAME-NAME"]])
def test_racing_sign_ups_for_one_name_leave_one_account(spellings):
    """Six sign-ups for one name (whatever its case) at once, each on its own connection: one wins, five get 409."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from django.db import connection

    start = Barrier(6)

    def sign_up(index: int) -> int:
        try:
            client = APIClient(REMOTE_ADDR=f"10.1.0.{index}")
            start.wait()
            return register(client, username=spellings[index]).status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = sorted(pool.map(sign_up, range(6)))

    assert statuses == [201] + [409] * 5
    assert User.objects.filter(username__iexact="same-name").count() == 1
    assert Account.objects.count() == Token.objects.count() == 1
