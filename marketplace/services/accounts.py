"""Accounts: sign-up, API tokens and the payout wallet."""
from __future__ import annotations

from django.contrib.auth import authenticate, password_validation
from django.contrib.auth.models import User
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from marketplace.errors import Conflict, DomainError, InvalidInput
from marketplace.models import Account, Role


class InvalidCredentials(DomainError):
    code = "invalid_credentials"
    status = 400


def _check_username(username: str) -> None:
    if not 3 <= len(username) <= 150:
        raise InvalidInput("username must be 3 to 150 characters", code="invalid_username", field="username")
    try:
        UnicodeUsernameValidator()(username)
    except ValidationError as exc:
        raise InvalidInput(exc.messages[0], code="invalid_username", field="username") from None


def _check_password(password: str, user: User) -> None:
    try:
        password_validation.validate_password(password, user)
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages), code="weak_password", field="password") from None


@transaction.atomic
def register_user(*, username: str, password: str, role: str) -> tuple[User, str]:
    """Create a user with a role and an API token; return both.

    >>> user, token = register_user(username="ada", password="correct horse 42", role="developer")
    """
    if role not in Role.values:
        raise InvalidInput(f"role must be one of {', '.join(Role.values)}", code="invalid_role", field="role")
    _check_username(username)
    if User.objects.filter(username__iexact=username).exists():
        raise Conflict("that username is taken", code="username_taken", field="username")
    user = User(username=username)
    _check_password(password, user)
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:  # a concurrent sign-up won the race for the name
        raise Conflict("that username is taken", code="username_taken", field="username") from None
    Account.objects.create(user=user, role=role)
    token = Token.objects.create(user=user)
    return user, token.key


def token_for_credentials(*, username: str, password: str) -> str:
    """The user's API token (created if missing) for a correct username and password."""
    user = authenticate(username=username, password=password)
    if user is None or not user.is_active:
        raise InvalidCredentials("wrong username or password")
    token, _ = Token.objects.get_or_create(user=user)
    return token.key


@transaction.atomic
def rotate_token(*, user: User) -> str:
    """Replace the user's API token; the old one stops working at once."""
    Token.objects.filter(user=user).delete()
    return Token.objects.create(user=user).key


def current_token(*, user: User) -> str:
    token, _ = Token.objects.get_or_create(user=user)
    return token.key


def checksum_address_error(address: str) -> str | None:
    """Why ``address`` is not a valid EIP-55 checksummed address, or None when it is."""
    from eth_utils import is_checksum_address, is_hex_address, to_checksum_address

    if not is_hex_address(address):
        return "not an EVM address: expected 0x followed by 40 hexadecimal digits"
    if not is_checksum_address(address):
        return f"the checksum does not match; did you mean {to_checksum_address(address)}?"
    return None


@transaction.atomic
def set_payout_address(*, user: User, address: str) -> Account:
    """Set where the provider's earnings are paid; the address must carry its EIP-55 checksum."""
    address = address.strip()
    problem = checksum_address_error(address)
    if problem:
        raise InvalidInput(problem, code="invalid_address", field="payout_address")
    account_of(user)  # users made by createsuperuser get their account here
    account = Account.objects.select_for_update().get(user=user)
    account.payout_address = address
    account.save(update_fields=["payout_address"])
    return account


def account_of(user: User) -> Account:
    """The user's account; users made outside sign-up (``createsuperuser``) get a developer one."""
    account, _ = Account.objects.get_or_create(user=user, defaults={"role": Role.DEVELOPER})
    return account


def wallet_link_message(user: User, address: str) -> str:
    """What the wallet signs (EIP-191 ``personal_sign``) to prove it belongs to ``user``.

    >>> wallet_link_message(ada, "0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
    'Link wallet 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 to GPU marketplace account ada (id 3)'
    """
    return f"Link wallet {address} to GPU marketplace account {user.username} (id {user.pk})"


@transaction.atomic
def link_wallet(*, user: User, address: str, signature: str) -> Account:
    """Make ``address`` the wallet the escrow knows this user by: a developer's leases spend from
    it, a provider's leases pay it. The signature of `wallet_link_message` by that address proves it
    is the user's own (otherwise anyone could spend someone else's deposit or take their payouts)."""
    from eth_account import Account as EthAccount
    from eth_account.messages import encode_defunct

    address = address.strip()
    problem = checksum_address_error(address)
    if problem:
        raise InvalidInput(problem, code="invalid_address", field="address")
    try:
        signer = EthAccount.recover_message(encode_defunct(text=wallet_link_message(user, address)),
                                            signature=signature.strip())
    except Exception:  # noqa: BLE001 - any malformed signature: eth-account raises many types
        raise InvalidInput("the signature is not a valid 65-byte hex signature", code="invalid_signature",
                           field="signature") from None
    if signer != address:
        raise InvalidInput(f"the signature was made by {signer}, not {address}: sign the exact message with "
                           "the wallet you are linking", code="wrong_signer", field="signature")
    account_of(user)
    account = Account.objects.select_for_update().get(user=user)
    account.wallet_address, account.wallet_linked_at = address, timezone.now()
    account.save(update_fields=["wallet_address", "wallet_linked_at"])
    return account


def sign_wallet_link(user: User, private_key: str) -> tuple[str, str]:
    """The address and the link signature of a key we hold (the demo accounts, the tests)."""
    from eth_account import Account as EthAccount
    from eth_account.messages import encode_defunct

    wallet = EthAccount.from_key(private_key)
    signed = wallet.sign_message(encode_defunct(text=wallet_link_message(user, wallet.address)))
    return str(wallet.address), "0x" + bytes(signed.signature).hex()
