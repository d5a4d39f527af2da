"""Accounts: sign-up, API tokens and the payout wallet."""
from __future__ import annotations

from django.contrib.auth import authenticate, password_validation
from django.contrib.auth.models import User
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
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
