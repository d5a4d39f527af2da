"""Forms of the pages. They check shape only (types, lengths, ranges a column can hold);
every rule lives in `marketplace.services`, whose `DomainError`s `apply_domain_error` shows
next to the field they name.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm

from marketplace.catalog import GPU_MODEL_CHOICES
from marketplace.errors import DomainError
from marketplace.models import NodeGpu, Role
from marketplace.models.fields import UINT256_MAX
from marketplace.web.format import wei_to_eth
from workers.runtime import kinds

PAGE_SIZES = (25, 50, 100)  # the offer search never shows more than 100 rows a page
ANY_MODEL = [("", "Any model")]
OFFER_ORDERINGS = [("price", "Cheapest first"), ("-price", "Most expensive first"),
                   ("vram", "Least VRAM first"), ("-vram", "Most VRAM first"),
                   ("-score", "Best benchmark score")]
DURATION_UNITS = {"hours": 3600, "minutes": 60}


def apply_domain_error(form: forms.BaseForm, exc: DomainError, field_map: Mapping[str, str] | None = None) -> None:
    """Show a service's error next to the field it names, or above the form when it names none."""
    field = (field_map or {}).get(exc.field or "", exc.field)
    form.add_error(field if field in form.fields else None, exc.detail)


class WeiField(forms.Field):
    """An integer amount of wei typed as digits (a text input: number inputs round big values)."""

    default_error_messages = {"invalid": "Enter a whole number of wei (digits only, e.g. 2000000000000000)."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.TextInput(attrs={"inputmode": "numeric", "pattern": "[0-9]*",
                                                           "maxlength": "80", "autocomplete": "off"}))
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> int | None:
        # Separators people type in long numbers are fine; anything else is not a wei amount.
        text = str(value or "").strip().replace("_", "").replace(",", "")
        if not text:
            return None
        if not (text.isascii() and text.isdigit()) or len(text) > 78 or int(text) > UINT256_MAX:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return int(text)


# --- accounts ----------------------------------------------------------------------------------

class SignupForm(forms.Form):
    username = forms.CharField(max_length=150, widget=forms.TextInput(attrs={"autocomplete": "username",
                                                                            "autofocus": True}))
    password = forms.CharField(max_length=128, strip=False, help_text="At least 10 characters, not too common.",
                               widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))
    password_confirm = forms.CharField(label="Password (again)", max_length=128, strip=False,
                                       widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))
    role = forms.ChoiceField(choices=[(Role.PROVIDER, "Provider: I rent out GPU machines"),
                                      (Role.DEVELOPER, "Developer: I run jobs on rented GPUs")],
                             widget=forms.RadioSelect, label="I am a")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("password") and data.get("password_confirm") and data["password"] != data["password_confirm"]:
            self.add_error("password_confirm", "The two passwords differ.")
        return data


class LoginForm(AuthenticationForm):
    """Django's login form with a plainer error message."""

    error_messages = {**AuthenticationForm.error_messages, "invalid_login": "Wrong username or password."}


class PayoutAddressForm(forms.Form):
    payout_address = forms.CharField(
        label="Payout wallet", max_length=42, strip=True,
        help_text="The EVM address (EIP-55 checksummed, 0x…) your earnings are paid to.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", "size": 44,
                                      "placeholder": "0x…"}),
    )


class WalletLinkForm(forms.Form):
    """A wallet's address and its signature of the link message (the service checks both)."""

    address = forms.CharField(
        label="Wallet address", max_length=42, strip=True,
        help_text="The EVM address (EIP-55 checksummed, 0x…) you deposit, stake and get paid from.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", "size": 44,
                                      "placeholder": "0x…", "class": "mono"}),
    )
    signature = forms.CharField(
        label="Signature", max_length=200, strip=True, required=False,
        help_text="0x followed by 130 hexadecimal digits: the message shown above, signed by that wallet.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", "size": 70,
                                      "placeholder": "0x…", "class": "mono"}),
    )

    def __init__(self, *args: Any, require_signature: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.require_signature = require_signature

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.require_signature and not data.get("signature") and "signature" not in self.errors:
            self.add_error("signature", "Sign the message shown above with this wallet and paste the signature "
                                        "here.")
        return data


# --- nodes and offers --------------------------------------------------------------------------

class NodeForm(forms.Form):
    name = forms.RegexField(regex=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", max_length=64,
                            error_messages={"invalid": "Use letters, digits, '.', '_' and '-' only."},
                            help_text="Unique among your nodes, e.g. rig-1.")
    region = forms.RegexField(regex=r"^[a-z0-9][a-z0-9-]{0,31}$", max_length=32,
                              error_messages={"invalid": "Use lower-case letters, digits and '-' only."},
                              help_text="Where the machine is, e.g. eu-west.")
    cpu_cores = forms.IntegerField(label="CPU cores", min_value=1, max_value=4096)
    ram_gb = forms.IntegerField(label="RAM (GB)", min_value=1, max_value=65536)


class GpuRowForm(forms.Form):
    """One GPU group of a new node; a row left blank is ignored."""

    model = forms.ChoiceField(choices=[("", "—")] + GPU_MODEL_CHOICES, required=False, label="GPU model")
    count = forms.IntegerField(min_value=1, max_value=64, required=False)
    # Optional: blank means the catalog's value (the table header says so; rows carry no help text).
    vram_gb = forms.IntegerField(label="VRAM (GB)", min_value=1, max_value=1024, required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("model") and (data.get("count") or data.get("vram_gb")):
            self.add_error("model", "Choose a GPU model for this row.")
        elif data.get("model") and not data.get("count") and "count" not in self.errors:
            self.add_error("count", "How many of them?")
        return data


GpuFormSet = forms.formset_factory(GpuRowForm, extra=3, max_num=16, absolute_max=16)


class OfferForm(forms.Form):
    gpu_model = forms.ChoiceField(label="GPU model")
    gpu_count = forms.IntegerField(label="GPUs", min_value=1, max_value=64, initial=1)
    price_per_gpu_hour_wei = WeiField(label="Price per GPU-hour (wei)",
                                      help_text="1 ETH = 10^18 wei; 2000000000000000 wei = 0.002 ETH.")
    min_duration = forms.IntegerField(label="Shortest lease", min_value=1, max_value=10**6, initial=1)
    max_duration = forms.IntegerField(label="Longest lease", min_value=1, max_value=10**6, initial=24)
    duration_unit = forms.ChoiceField(label="Lease durations in", choices=[(u, u) for u in DURATION_UNITS],
                                      initial="hours")

    #: Service field names -> this form's.
    FIELD_MAP = {"min_duration_s": "min_duration", "max_duration_s": "max_duration"}

    def __init__(self, *args: Any, gpus: list[NodeGpu], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["gpu_model"]).choices = [(g.model, g.model) for g in gpus]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        price = data.get("price_per_gpu_hour_wei")
        if price is not None:  # echo the value in ETH so a typo in the zeros is visible
            self.fields["price_per_gpu_hour_wei"].help_text = f"= {wei_to_eth(price)} ETH per GPU-hour."
        return data

    def seconds(self, name: str) -> int:
        """A cleaned duration field in seconds."""
        return int(self.cleaned_data[name]) * DURATION_UNITS[self.cleaned_data["duration_unit"]]


class OfferSearchForm(forms.Form):
    """The public search: the API's filters, as a GET form. Every field is optional."""

    gpu_model = forms.ChoiceField(label="GPU model", choices=ANY_MODEL + GPU_MODEL_CHOICES, required=False)
    min_vram_gb = forms.IntegerField(label="Min VRAM (GB)", min_value=0, max_value=4096, required=False)
    min_gpus = forms.IntegerField(label="Min free GPUs", min_value=1, max_value=64, required=False)
    max_price_wei = WeiField(label="Max price (wei/GPU-h)", required=False)
    region = forms.CharField(max_length=32, required=False)
    available = forms.BooleanField(label="Only available now", required=False)
    ordering = forms.ChoiceField(choices=OFFER_ORDERINGS, required=False, label="Sort")
    page_size = forms.TypedChoiceField(label="Per page", choices=[(n, n) for n in PAGE_SIZES], coerce=int,
                                       required=False, empty_value=None)
    after = forms.CharField(required=False, max_length=200, widget=forms.HiddenInput)
    before = forms.CharField(required=False, max_length=200, widget=forms.HiddenInput)

    def filter_data(self) -> dict[str, str]:
        """The cleaned filters in the shape `marketplace.api.filters.OfferFilter` reads."""
        data: dict[str, str] = {}
        for name in ("gpu_model", "min_vram_gb", "min_gpus", "max_price_wei", "region"):
            value = self.cleaned_data.get(name)
            if value not in (None, ""):
                data[name] = str(value)
        if self.cleaned_data.get("available"):
            data["available"] = "true"  # unticked means "don't care", never "only unavailable"
        return data


# --- jobs --------------------------------------------------------------------------------------

def submittable_kinds() -> list[kinds.JobKind]:
    """Job kinds that can be submitted now (reserved ones are left out)."""
    return [kind for kind in kinds.all_kinds() if kind.available]


class JobForm(forms.Form):
    kind = forms.ChoiceField()
    spec = forms.CharField(widget=forms.Textarea(attrs={"rows": 6, "cols": 60, "spellcheck": "false"}),
                           initial="{}", required=False, max_length=settings.JOB_SPEC_MAX_BYTES,
                           help_text='A JSON object, e.g. {"measurements": ["cpu_gflops"]} for a benchmark.')
    gpu_model = forms.ChoiceField(label="GPU model", choices=ANY_MODEL + GPU_MODEL_CHOICES, required=False)
    gpus = forms.IntegerField(label="GPUs", min_value=1, max_value=64, initial=1)
    min_vram_gb = forms.IntegerField(label="Min VRAM (GB)", min_value=0, max_value=1024, initial=0)
    max_price_wei = WeiField(label="Max price (wei/GPU-h)", required=False,
                             help_text="Optional; blank accepts any price.")
    budget_wei = WeiField(label="Budget (wei)", required=False,
                          help_text=f"Optional; blank means {wei_to_eth(settings.JOB_DEFAULT_BUDGET_WEI)} ETH.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        available = submittable_kinds()  # read per form: kinds register at import time
        cast(forms.ChoiceField, self.fields["kind"]).choices = [(kind.name, kind.name) for kind in available]
        self.fields["kind"].help_text = " ".join(f"{kind.name}: {kind.description}" for kind in available)

    def clean_spec(self) -> Any:
        text = (self.cleaned_data.get("spec") or "").strip() or "{}"
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).",
                                        code="invalid_json") from None
