"""Field types shared by the models."""
from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

UINT256_MAX = 2**256 - 1


class WeiField(models.DecimalField):
    """An amount of wei: a non-negative integer that fits a Solidity ``uint256``.

    Stored as ``numeric(78, 0)`` so PostgreSQL keeps every digit; Python sees ``Decimal``
    with no fractional part (use ``int(value)`` before arithmetic).
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("max_digits", 78)
        kwargs.setdefault("decimal_places", 0)
        kwargs.setdefault("validators", [MinValueValidator(0), MaxValueValidator(UINT256_MAX)])
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def deconstruct(self):  # type: ignore[no-untyped-def]
        name, path, args, kwargs = super().deconstruct()
        for key in ("max_digits", "decimal_places", "validators"):
            kwargs.pop(key, None)
        return name, path, args, kwargs
