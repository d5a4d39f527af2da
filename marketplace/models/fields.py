"""Field types shared by the models."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

UINT256_MAX = 2**256 - 1
WEI_DIGITS = 78  # len(str(UINT256_MAX))


class WeiField(models.Field):
    """An amount of wei: a non-negative integer that fits a Solidity ``uint256``; Python sees ``int``.

    PostgreSQL stores it as ``numeric(78, 0)``: every digit kept, compared and summed as a number.
    SQLite has no exact type that wide (its NUMERIC keeps 15 significant digits, silently), so
    there it is stored as 78 zero-padded digits: exact, and ordered and compared correctly as
    text because every value has the same length. Arithmetic in SQL (SUM) is PostgreSQL-only.
    """

    description = "An amount of wei (a uint256)"

    def db_type(self, connection: Any) -> str:
        return f"varchar({WEI_DIGITS})" if connection.vendor == "sqlite" else f"numeric({WEI_DIGITS}, 0)"

    def get_internal_type(self) -> str:
        return "WeiField"

    def to_python(self, value: Any) -> int | None:
        if value is None or isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            if isinstance(value, str):
                number = int(value.strip())
            elif isinstance(value, (Decimal, float)) and value == int(value):
                number = int(value)
            else:
                raise ValueError
        except (ValueError, ArithmeticError):
            raise ValidationError(f"{value!r} is not an integer amount of wei", code="invalid") from None
        return number

    def get_prep_value(self, value: Any) -> int | None:
        return self.to_python(super().get_prep_value(value))

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if not prepared:
            value = self.get_prep_value(value)
        if value is None:
            return None
        if not 0 <= value <= UINT256_MAX:
            raise ValueError(f"{value} wei is outside 0..2**256-1")
        return f"{value:0{WEI_DIGITS}d}" if connection.vendor == "sqlite" else Decimal(value)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> int | None:
        return None if value is None else int(value)

    def validate(self, value: Any, model_instance: Any) -> None:
        super().validate(value, model_instance)
        if value is not None and not 0 <= value <= UINT256_MAX:
            raise ValidationError("wei amounts must be between 0 and 2**256-1", code="out_of_range")

