"""Template filters for the pages: wei in ETH, durations, pretty JSON. Display only."""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from marketplace.web.format import wei_to_eth

register = template.Library()


@register.filter
def eth(wei: int | Decimal | None) -> str:
    """``{{ offer.price_per_gpu_hour_wei|eth }}`` -> ``"0.002"``; empty for a missing amount."""
    return "" if wei is None or wei == "" else wei_to_eth(wei)


@register.filter
def wei(value: int | Decimal | None) -> str:
    """An integer amount of wei without a decimal point (Decimal columns would show ``2E+15``)."""
    return "" if value is None or value == "" else str(int(value))


@register.simple_tag
def amount(value: int | Decimal | str | None) -> SafeString:
    """``{% amount position.available %}``: the exact wei, with ETH beside it for reading."""
    if value is None or value == "":
        return format_html("{}", "—")
    return format_html('<span class="amount">{} wei <small>{} ETH</small></span>', str(int(value)),
                       wei_to_eth(int(value)))


@register.filter
def bps(value: int | None) -> str:
    """Basis points as a percentage: ``250`` -> ``"2.5 %"``."""
    return "" if value is None else f"{Decimal(int(value)) / 100:f}".rstrip("0").rstrip(".") + " %"


@register.filter
def duration(seconds: int | None) -> str:
    """``5400`` -> ``"1 h 30 min"``; whole days, hours and minutes only."""
    if seconds is None:
        return ""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n} {unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")) if n]
    return " ".join(parts) or "0 s"


@register.filter
def pretty_json(value: Any) -> str:
    """Indented JSON for a ``<pre>`` block (autoescaped by the template)."""
    return json.dumps(value, indent=2, sort_keys=True)


@register.filter
def grouped(value: Any) -> str:
    """``2056821`` -> ``"2,056,821"``; anything but an integer is shown as it is."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


EVM_ROW_FIELDS = ("number", "fork", "transactions", "gas_used", "verified", "reexecuted", "rounds", "workers",
                  "elapsed_s")


@register.filter
def evm_block_rows(result: Any) -> list[dict[str, Any]]:
    """The per-block rows of an ``evm_block`` result for its table; [] if it does not have that shape
    (the result comes from the provider's machine: the page then shows it as JSON only)."""
    blocks = result.get("blocks") if isinstance(result, dict) else None
    if not isinstance(blocks, list) or not all(isinstance(block, dict) for block in blocks):
        return []
    return [{name: block.get(name, "") for name in EVM_ROW_FIELDS} for block in blocks]
