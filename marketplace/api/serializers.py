"""API shapes. Serializers check types and shape only; every rule lives in the services."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from marketplace.catalog import GPU_MODEL_CHOICES
from marketplace.models import Artifact, Job, JobAttempt, JobEvent, JobState, Lease, LeaseState, Node, NodeGpu, Offer, Role
from marketplace.models.fields import UINT256_MAX
from marketplace.services import balances, leases
from marketplace.web.format import wei_to_eth

WEI_PATTERN = r"^[0-9]{1,78}$"


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, or may not change (a typo must not be silently ignored)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            errors = {name: [serializers.ErrorDetail("unknown field", code="unknown_field")]
                      for name in sorted(set(data) - set(self.fields))}
            errors.update({name: [serializers.ErrorDetail("this field cannot be changed", code="read_only_field")]
                           for name in sorted(set(data) & set(self.fields)) if self.fields[name].read_only})
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


@extend_schema_field({"oneOf": [{"type": "string", "pattern": WEI_PATTERN},
                                {"type": "integer", "minimum": 0}],
                      "description": "An amount of wei, as an integer or a decimal string (responses: string)."})
class WeiField(serializers.Field):
    """Integer wei: accepts a JSON integer or a string of digits, answers a string (JSON numbers
    lose precision past 2**53 in most clients)."""

    default_error_messages = {
        "invalid": "expected an integer number of wei (a JSON integer or a string of digits)",
        "range": "must be between 0 and 2**256-1",
    }

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, (int, str)):
            self.fail("invalid")
        if isinstance(data, str):
            if not data.isascii() or not data.isdigit() or len(data) > 78:
                self.fail("invalid")
            data = int(data)
        if not 0 <= data <= UINT256_MAX:
            self.fail("range")
        return int(data)

    def to_representation(self, value: Decimal | int) -> str:
        return str(int(value))


class GpuModelField(serializers.ChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("error_messages", {"invalid_choice": "unknown GPU model {input!r}; see /api/v1/catalog/gpus/"})
        super().__init__(choices=GPU_MODEL_CHOICES, **kwargs)


# --- accounts ----------------------------------------------------------------------------------

class RegisterSerializer(StrictSerializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False, write_only=True)
    role = serializers.ChoiceField(choices=Role.choices)


class CredentialsSerializer(StrictSerializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False, write_only=True)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    username = serializers.CharField()
    role = serializers.CharField()


class MeSerializer(StrictSerializer):
    username = serializers.CharField(read_only=True)
    role = serializers.CharField(read_only=True)
    payout_address = serializers.CharField(max_length=42, allow_blank=False)


# --- catalog and kinds -------------------------------------------------------------------------

class GpuCatalogSerializer(serializers.Serializer):
    name = serializers.CharField()
    vendor = serializers.CharField()
    vram_gb = serializers.IntegerField()


class JobKindSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    available = serializers.BooleanField()
    spec_schema = serializers.JSONField()


# --- nodes -------------------------------------------------------------------------------------

class GpuDeclarationSerializer(StrictSerializer):
    model = GpuModelField()
    count = serializers.IntegerField(min_value=1, max_value=64)
    vram_gb = serializers.IntegerField(min_value=1, max_value=1024, required=False)


class NodeGpuSerializer(serializers.ModelSerializer):
    class Meta:
        model = NodeGpu
        fields = ["model", "vram_gb", "count", "verified"]


class NodeSerializer(serializers.ModelSerializer):
    gpus = NodeGpuSerializer(many=True, read_only=True)
    status = serializers.SerializerMethodField()

    class Meta:
        model = Node
        fields = ["id", "name", "region", "cpu_cores", "ram_gb", "gpus", "status", "last_heartbeat_at",
                  "created_at"]

    def get_status(self, node: Node) -> str:
        return node.status(self.context.get("now") or timezone.now())


def node_name_field(**kwargs: Any) -> serializers.RegexField:
    return serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", max_length=64,
                                  error_messages={"invalid": "letters, digits, '.', '_' and '-' only"}, **kwargs)


def region_field(**kwargs: Any) -> serializers.RegexField:
    return serializers.RegexField(r"^[a-z0-9][a-z0-9-]{0,31}$", max_length=32,
                                  error_messages={"invalid": "lower-case letters, digits and '-' only"}, **kwargs)


class NodeCreateSerializer(StrictSerializer):
    name = node_name_field()
    region = region_field()
    cpu_cores = serializers.IntegerField(min_value=1, max_value=4096)
    ram_gb = serializers.IntegerField(min_value=1, max_value=65536)
    gpus = GpuDeclarationSerializer(many=True, allow_empty=False, max_length=16)


class NodeCreatedSerializer(NodeSerializer):
    join_token = serializers.CharField(help_text="Shown once; only its hash is stored.")

    class Meta(NodeSerializer.Meta):
        fields = [*NodeSerializer.Meta.fields, "join_token"]


class NodeUpdateSerializer(StrictSerializer):
    name = node_name_field(required=False)
    region = region_field(required=False)


class HeartbeatSerializer(StrictSerializer):
    draining = serializers.BooleanField(default=False)


class HeartbeatReplySerializer(NodeSerializer):
    """The node as the heartbeat left it, and how many jobs it still holds (a drain ends at 0)."""

    active_jobs = serializers.SerializerMethodField()

    class Meta(NodeSerializer.Meta):
        fields = [*NodeSerializer.Meta.fields, "active_jobs"]

    def get_active_jobs(self, node: Node) -> int:
        return int(self.context["active_jobs"])


class DetectedGpuSerializer(StrictSerializer):
    """A GPU group as the agent's NVML detection reports it: any model name, not only the catalog's."""

    model = serializers.CharField(max_length=128)
    vram_gb = serializers.IntegerField(min_value=0, max_value=4096)
    count = serializers.IntegerField(min_value=1, max_value=64)


class JoinSerializer(StrictSerializer):
    gpus = DetectedGpuSerializer(many=True, max_length=64, help_text="What the agent detected; [] for none")
    hostname = serializers.CharField(max_length=255, required=False, allow_blank=True)


class JoinReplySerializer(serializers.Serializer):
    node_id = serializers.IntegerField()
    name = serializers.CharField()
    ray_address = serializers.CharField(help_text="The Ray head the node joins (host:port)")
    resources = serializers.DictField(child=serializers.FloatField(),
                                      help_text="Ray custom resources the node starts with")
    heartbeat_interval_s = serializers.IntegerField()
    gpus = NodeGpuSerializer(many=True, help_text="The declared GPUs, verified or not by this join")


class NodeJobSerializer(serializers.ModelSerializer):
    """What a provider may see of a job its node ran: not the developer's spec or result."""

    class Meta:
        model = Job
        fields = ["id", "kind", "state", "gpus", "created_at", "finished_at"]


# --- offers ------------------------------------------------------------------------------------

class OfferSerializer(serializers.ModelSerializer):
    price_per_gpu_hour_wei = WeiField()
    price_per_gpu_hour_eth = serializers.SerializerMethodField()
    free_gpus = serializers.IntegerField(read_only=True)
    node_status = serializers.SerializerMethodField()

    class Meta:
        model = Offer
        fields = ["id", "node", "gpu_model", "vram_gb", "region", "gpu_count", "free_gpus",
                  "price_per_gpu_hour_wei", "price_per_gpu_hour_eth", "min_duration_s", "max_duration_s",
                  "status", "node_status", "score", "benchmarked_at", "created_at"]

    def get_price_per_gpu_hour_eth(self, offer: Offer) -> str:
        return wei_to_eth(offer.price_per_gpu_hour_wei)

    def get_node_status(self, offer: Offer) -> str:
        return offer.node.status(self.context.get("now") or timezone.now())


class OfferCreateSerializer(StrictSerializer):
    node = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    gpu_model = GpuModelField()
    gpu_count = serializers.IntegerField(min_value=1, max_value=64)
    price_per_gpu_hour_wei = WeiField()
    min_duration_s = serializers.IntegerField(min_value=60, max_value=90 * 24 * 3600, default=60)
    max_duration_s = serializers.IntegerField(min_value=60, max_value=90 * 24 * 3600, default=24 * 3600)


class OfferUpdateSerializer(StrictSerializer):
    gpu_count = serializers.IntegerField(min_value=1, max_value=64, required=False)
    price_per_gpu_hour_wei = WeiField(required=False)
    min_duration_s = serializers.IntegerField(min_value=60, max_value=90 * 24 * 3600, required=False)
    max_duration_s = serializers.IntegerField(min_value=60, max_value=90 * 24 * 3600, required=False)


# --- artifacts ---------------------------------------------------------------------------------

class ArtifactSerializer(serializers.ModelSerializer):
    class Meta:
        model = Artifact
        fields = ["id", "sha256", "size", "name", "content_type", "created_at"]


class ArtifactUploadSerializer(StrictSerializer):
    file = serializers.FileField(allow_empty_file=True)


# --- jobs --------------------------------------------------------------------------------------

class RequirementsSerializer(StrictSerializer):
    gpu_model = GpuModelField(required=False, allow_blank=True)
    min_vram_gb = serializers.IntegerField(min_value=0, max_value=1024, default=0)
    gpus = serializers.IntegerField(min_value=1, max_value=64, default=1)


class JobCreateSerializer(StrictSerializer):
    kind = serializers.CharField(max_length=32)
    spec = serializers.JSONField(required=False, default=dict)
    requirements = RequirementsSerializer(required=False)
    max_price_wei = WeiField(required=False, allow_null=True)
    budget_wei = WeiField(required=False)
    queue_timeout_s = serializers.IntegerField(min_value=1, max_value=30 * 24 * 3600, required=False,
                                               allow_null=True, help_text="Fail if unmatched this long")


#: A lease as `services.leases.job_lease` reports it: the chain's states, and before the chain has it
#: ``opening`` (the call is on its way), ``not_opened`` (the contract refused it) or ``withdrawn``.
JOB_LEASE_STATES = [*LeaseState.values, "opening", "not_opened", "withdrawn"]


class JobLeaseSerializer(serializers.Serializer):
    """The escrow lease of a job's latest leased attempt (shape of `services.leases.job_lease`)."""

    id = serializers.IntegerField(help_text="The lease id on chain (the attempt's id)")
    # A string, not an enum: a second choice set named "state" (besides the job's) would make
    # drf-spectacular name both by hash; ENUM_NAME_OVERRIDES in the settings could name it instead.
    state = serializers.CharField(help_text="One of: " + ", ".join(JOB_LEASE_STATES))
    open_tx = serializers.CharField(allow_null=True, help_text="Hash of the transaction that opened it")
    settle_tx = serializers.CharField(allow_null=True, help_text="Hash of the transaction that closed it "
                                                                "(settled, released, reclaimed or slashed)")
    tenant = serializers.CharField(help_text="The developer's wallet that pays")
    provider = serializers.CharField(help_text="The provider's wallet that is paid")
    rate_per_hour_wei = WeiField()
    reserved_wei = WeiField()
    payment_wei = WeiField(help_text="Paid to the provider, fee included")
    fee_wei = WeiField()
    refund_wei = WeiField()
    slashed_wei = WeiField(help_text="Provider stake paid to the developer for a result proven wrong")
    result_hash = serializers.CharField(allow_null=True)
    deadline = serializers.DateTimeField(allow_null=True)
    used_seconds = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_null=True, help_text="Why the chain refused the last call, if it did")


class JobSerializer(serializers.ModelSerializer):
    requirements = serializers.SerializerMethodField()
    max_price_wei = WeiField(allow_null=True)
    budget_wei = WeiField()
    children = serializers.SerializerMethodField(help_text="The jobs this one was split into (ids, in block order)")
    lease = serializers.SerializerMethodField(help_text="The escrow lease paying for the latest run; null when "
                                                        "none was asked for (no chain, or not matched yet)")

    class Meta:
        model = Job
        fields = ["id", "kind", "state", "spec", "requirements", "max_price_wei", "budget_wei", "queue_timeout_s",
                  "offer", "node", "attempts", "progress", "progress_message", "wait_reason", "lease",
                  "result_artifact", "parent", "children", "created_at", "updated_at", "finished_at"]
        extra_kwargs = {"parent": {"help_text": "The job this one is a part of, if it was split"},
                        "wait_reason": {"help_text": "Why a queued job is not running yet although an offer "
                                                     "fits (e.g. too little escrow balance); empty otherwise"}}

    @extend_schema_field(JobLeaseSerializer(allow_null=True))
    def get_lease(self, job: Job) -> dict[str, Any] | None:
        if getattr(job, "asked_for_lease", True) is False:  # annotated by the list: skip the lookups
            return None
        lease = leases.job_lease(job)
        # One shape whatever the lease's progress (a lease not on chain yet has no used_seconds).
        return None if lease is None else {"used_seconds": None, **lease}

    @extend_schema_field(serializers.ListField(child=serializers.IntegerField()))
    def get_children(self, job: Job) -> list[int]:
        return sorted(child.pk for child in job.children.all())  # all(): prefetched in lists

    @extend_schema_field(RequirementsSerializer)
    def get_requirements(self, job: Job) -> dict[str, Any]:
        return {"gpu_model": job.gpu_model, "min_vram_gb": job.min_vram_gb, "gpus": job.gpus}


class JobEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobEvent
        fields = ["id", "type", "from_state", "to_state", "reason", "created_at"]


class JobAttemptSerializer(serializers.ModelSerializer):
    price_per_gpu_hour_wei = WeiField()

    class Meta:
        model = JobAttempt
        fields = ["number", "node", "offer", "gpus", "price_per_gpu_hour_wei", "outcome", "reason", "created_at",
                  "started_at", "finished_at"]


class JobResultSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=JobState.choices)
    result = serializers.JSONField(allow_null=True)
    result_artifact = serializers.IntegerField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()
    errors = serializers.JSONField(required=False)



# --- wallet and ledger -------------------------------------------------------------------------

class WalletSerializer(serializers.Serializer):
    address = serializers.CharField(allow_null=True, help_text="Your linked wallet (EIP-55), null when none")
    linked_at = serializers.DateTimeField(allow_null=True)
    message_to_sign = serializers.CharField(
        allow_null=True, help_text="What the wallet given as ?address= signs (EIP-191 personal_sign, e.g. "
                                   "`cast wallet sign`) to be linked; null without ?address=")
    chain_id = serializers.IntegerField(allow_null=True, help_text="The chain the escrow is on; null: no chain, "
                                                                   "or no escrow deployed yet")


class WalletLinkSerializer(StrictSerializer):
    # Generous bounds: the service explains a wrong address or signature with its own codes.
    address = serializers.CharField(max_length=100, help_text="The wallet to link (EIP-55 checksummed)")
    signature = serializers.CharField(max_length=200, help_text="0x + 65 bytes hex: message_to_sign signed "
                                                                "by that wallet")


class ChainInfoSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="chain_id")
    escrow = serializers.CharField(allow_null=True, help_text="LeaseEscrow's address; null if not deployed")
    token = serializers.CharField(allow_null=True, help_text="The ERC-20 the escrow holds; null if not deployed")
    min_stake_wei = WeiField(allow_null=True)
    fee_bps = serializers.IntegerField(allow_null=True)
    paused = serializers.BooleanField()

    def to_representation(self, instance: Any) -> dict[str, Any]:
        body = super().to_representation(instance)
        return {**body, "escrow": body["escrow"] or None, "token": body["token"] or None}


class LedgerLeaseSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(source="lease_id", help_text="The lease id on chain")
    job = serializers.IntegerField(source="job_id", allow_null=True, help_text="The job it paid for")
    role = serializers.SerializerMethodField(help_text="What your wallet was in it: tenant, provider or both")
    rate_per_hour_wei = WeiField()
    reserved_wei = WeiField()
    payment_wei = WeiField(help_text="Paid to the provider, fee included")
    fee_wei = WeiField()
    refund_wei = WeiField()
    slashed_wei = WeiField()
    used_seconds = serializers.IntegerField(allow_null=True, help_text="Seconds paid for (settled leases)")
    state = serializers.CharField(help_text="One of: " + ", ".join(LeaseState.values))
    close_tx = serializers.SerializerMethodField(help_text="Hash of the transaction that closed it")
    result_hash = serializers.SerializerMethodField()

    class Meta:
        model = Lease
        fields = ["id", "job", "role", "state", "tenant", "provider", "rate_per_hour_wei", "reserved_wei",
                  "payment_wei", "fee_wei", "refund_wei", "slashed_wei", "used_seconds", "open_tx", "close_tx",
                  "result_hash", "deadline", "opened_at", "closed_at"]

    @extend_schema_field(serializers.ChoiceField(choices=["tenant", "provider", "both"]))
    def get_role(self, lease: Lease) -> str:
        return balances.lease_role(lease, self.context["address"])

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_close_tx(self, lease: Lease) -> str | None:
        return lease.close_tx or None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_result_hash(self, lease: Lease) -> str | None:
        return lease.result_hash or None


class LedgerLeasePageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = LedgerLeaseSerializer(many=True)


class LedgerSerializer(serializers.Serializer):
    POSITION_FIELDS = ("available", "reserved", "stake", "lease_cap", "deposited", "withdrawn", "earned", "spent",
                       "fees", "compensated", "slashed", "registered", "unbonding_at", "open_leases")

    chain = ChainInfoSerializer(allow_null=True, help_text="The chain in use; null when the marketplace runs "
                                                           "without one (CHAIN_URL empty) or has not deployed its "
                                                           "escrow yet: every amount is then 0")
    address = serializers.CharField(allow_null=True, help_text="Your linked wallet; null: link one first")
    available = WeiField(help_text="Withdrawable now")
    reserved = WeiField(help_text="Held by your open leases, as tenant")
    pending_reservations = WeiField(help_text="What lease openings still on their way to the chain will reserve")
    stake = WeiField()
    lease_cap = WeiField(help_text="The most one lease may reserve (you set it with setLeaseCap)")
    deposited = WeiField()
    withdrawn = WeiField()
    earned = WeiField(help_text="Lease payments received, after fees")
    spent = WeiField(help_text="Lease payments made, fees included")
    fees = WeiField(help_text="Fees received, as treasury")
    compensated = WeiField(help_text="Slashed provider stake paid to you")
    slashed = WeiField(help_text="Your stake lost to slashing, as provider")
    registered = serializers.BooleanField(help_text="Registered as a provider in the escrow")
    unbonding_at = serializers.DateTimeField(allow_null=True, help_text="When your stake may be withdrawn, "
                                                                        "if you started unbonding")
    open_leases = serializers.IntegerField(help_text="Open leases paying you, as provider")
    leases = serializers.SerializerMethodField(help_text="Your wallet's leases as tenant or provider, newest "
                                                         "first (?limit=&offset=)")

    @extend_schema_field(LedgerLeasePageSerializer)
    def get_leases(self, instance: dict[str, Any]) -> dict[str, Any]:
        return dict(instance["leases"])  # one page, serialized by the view with its links
