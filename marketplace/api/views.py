"""API views: parse with a serializer, call one service, answer with a serializer. No rules here."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.api import serializers as s
from marketplace.api.filters import JobFilter, MyOfferFilter, OfferFilter, OfferOrdering
from marketplace.api.node_auth import NodeTokenAuthentication
from marketplace.api.pagination import BoundedLimitOffsetPagination, OfferCursorPagination
from marketplace.api.throttles import AuthRateThrottle, JobCreateThrottle, NodeHeartbeatThrottle
from marketplace.catalog import GPU_CATALOG
from marketplace.errors import InvalidInput, NotFound
from marketplace.models import Artifact, ChainTx, Job, JobState, Node, Offer, OfferStatus
from marketplace.services import accounts, artifacts, balances, jobs, nodes, offers
from workers.runtime import kinds
from workers.runtime.resources import node_resources

ERRORS = {code: OpenApiResponse(s.ErrorSerializer, description=text) for code, text in {
    400: "Bad input", 401: "Not authenticated", 403: "Not allowed for this role", 404: "Not found",
    409: "Conflicts with the current state", 413: "Too large", 429: "Throttled"}.items()}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: ERRORS[code] for code in codes}


def valid(serializer_class: type[serializers.Serializer], request: Request, **kwargs: Any) -> dict[str, Any]:
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


# --- accounts ----------------------------------------------------------------------------------

class RegisterView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    throttle_classes = [AuthRateThrottle]

    @extend_schema(request=s.RegisterSerializer, responses={201: s.TokenSerializer, **errors(400, 409, 429)},
                   summary="Sign up as a provider or developer; returns an API token")
    def post(self, request: Request) -> Response:
        data = valid(s.RegisterSerializer, request)
        user, token = accounts.register_user(**data)
        return Response({"token": token, "username": user.username, "role": data["role"]},
                        status=status.HTTP_201_CREATED)


class TokenView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    throttle_classes = [AuthRateThrottle]

    @extend_schema(request=s.CredentialsSerializer, responses={200: s.TokenSerializer, **errors(400, 429)},
                   summary="Exchange a username and password for the API token")
    def post(self, request: Request) -> Response:
        data = valid(s.CredentialsSerializer, request)
        token = accounts.token_for_credentials(**data)
        user = accounts.User.objects.get(username=data["username"])
        return Response({"token": token, "username": user.username, "role": accounts.account_of(user).role})


class RotateTokenView(APIView):
    throttle_classes = [AuthRateThrottle]

    @extend_schema(request=None, responses={200: s.TokenSerializer, **errors(401, 429)},
                   summary="Replace your API token; the old one stops working")
    def post(self, request: Request) -> Response:
        token = accounts.rotate_token(user=request.user)
        return Response({"token": token, "username": request.user.username,
                         "role": accounts.account_of(request.user).role})


class MeView(APIView):

    def _body(self, request: Request) -> dict[str, Any]:
        account = accounts.account_of(request.user)
        return {"username": request.user.username, "role": account.role, "payout_address": account.payout_address}

    @extend_schema(responses={200: s.MeSerializer, **errors(401)}, summary="Your account")
    def get(self, request: Request) -> Response:
        return Response(self._body(request))

    @extend_schema(request=s.MeSerializer, responses={200: s.MeSerializer, **errors(400, 401)},
                   summary="Set your payout wallet (an EIP-55 checksummed address)")
    def patch(self, request: Request) -> Response:
        data = valid(s.MeSerializer, request, partial=True)
        if "payout_address" in data:
            accounts.set_payout_address(user=request.user, address=data["payout_address"])
        return Response(self._body(request))


# --- catalog -----------------------------------------------------------------------------------

class GpuCatalogView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses={200: s.GpuCatalogSerializer(many=True)}, summary="GPU models a node may declare")
    def get(self, request: Request) -> Response:
        return Response(s.GpuCatalogSerializer(GPU_CATALOG.values(), many=True).data)


class JobKindsView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses={200: s.JobKindSerializer(many=True)}, summary="Job kinds and their spec schemas")
    def get(self, request: Request) -> Response:
        return Response(s.JobKindSerializer(kinds.all_kinds(), many=True).data)


# --- nodes -------------------------------------------------------------------------------------

@extend_schema_view(
    list=extend_schema(summary="Your nodes", responses={200: s.NodeSerializer(many=True), **errors(401, 403)}),
    retrieve=extend_schema(summary="One of your nodes", responses={200: s.NodeSerializer, **errors(401, 403, 404)}),
)
class NodeViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = s.NodeSerializer
    queryset = Node.objects.none()

    def get_queryset(self) -> QuerySet[Node]:
        if getattr(self, "swagger_fake_view", False):
            return Node.objects.none()
        nodes.require_provider(self.request.user)
        return Node.objects.owned_by(self.request.user).prefetch_related("gpus").order_by("id")

    def get_object(self) -> Node:
        return get_object_or_404(self.get_queryset(), pk=_int_id(self.kwargs["pk"]))

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "now": timezone.now()}

    @extend_schema(request=s.NodeCreateSerializer, responses={201: s.NodeCreatedSerializer, **errors(400, 401, 403,
                   409)}, summary="Register a node; the response holds its join token, shown this once")
    def create(self, request: Request) -> Response:
        data = valid(s.NodeCreateSerializer, request)
        gpus = [nodes.GpuDeclaration(**gpu) for gpu in data.pop("gpus")]
        node, token = nodes.register_node(provider=request.user, gpus=gpus, **data)
        body = s.NodeSerializer(node, context=self.get_serializer_context()).data
        response = Response({**body, "join_token": token}, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(request=s.NodeUpdateSerializer, responses={200: s.NodeSerializer, **errors(400, 401, 403, 404,
                   409)}, summary="Rename a node or change its region")
    def partial_update(self, request: Request, pk: str) -> Response:
        data = valid(s.NodeUpdateSerializer, request)
        node = nodes.update_node(provider=request.user, node_id=_int_id(pk), **data)
        return Response(s.NodeSerializer(node, context=self.get_serializer_context()).data)

    @extend_schema(responses={200: s.NodeJobSerializer(many=True), **errors(401, 403, 404)},
                   summary="Jobs this node ran")
    @action(detail=True, methods=["get"])
    def jobs(self, request: Request, pk: str) -> Response:
        node = self.get_object()
        page = self.paginate_queryset(Job.objects.filter(node=node).order_by("-id"))
        return self.get_paginated_response(s.NodeJobSerializer(page, many=True).data)

    @extend_schema(request=s.HeartbeatSerializer, responses={200: s.HeartbeatReplySerializer,
                   **errors(400, 401, 429)}, summary="Heartbeat from a node's agent (Authorization: Node <join token>)")
    @action(detail=False, methods=["post"], authentication_classes=[NodeTokenAuthentication],
            permission_classes=[IsAuthenticated], throttle_classes=[NodeHeartbeatThrottle], url_path="heartbeat")
    def heartbeat(self, request: Request) -> Response:
        data = valid(s.HeartbeatSerializer, request)
        node = nodes.record_heartbeat(node=request.auth, draining=data["draining"])
        context = {**self.get_serializer_context(), "active_jobs": nodes.active_job_count(node)}
        return Response(s.HeartbeatReplySerializer(node, context=context).data)

    @extend_schema(request=s.JoinSerializer, responses={200: s.JoinReplySerializer, **errors(400, 401, 429)},
                   summary="A node's agent joins: its detected GPUs verify the declared ones; the answer says "
                           "which Ray cluster to join with which resources (Authorization: Node <join token>)")
    @action(detail=False, methods=["post"], authentication_classes=[NodeTokenAuthentication],
            permission_classes=[IsAuthenticated], throttle_classes=[NodeHeartbeatThrottle], url_path="join")
    def join(self, request: Request) -> Response:
        data = valid(s.JoinSerializer, request)
        detected = [nodes.GpuDeclaration(model=gpu["model"], count=gpu["count"], vram_gb=gpu["vram_gb"])
                    for gpu in data["gpus"]]
        node = nodes.join_node(node=request.auth, detected=detected, hostname=data.get("hostname", ""))
        gpus = list(node.gpus.order_by("model"))
        return Response(s.JoinReplySerializer({
            "node_id": node.pk, "name": node.name, "ray_address": settings.RAY_ADDRESS,
            "resources": node_resources(node.pk, {gpu.model: gpu.count for gpu in gpus}),
            "heartbeat_interval_s": settings.NODE_HEARTBEAT_INTERVAL_S, "gpus": gpus}).data)


def _int_id(pk: str) -> int:
    """A path id as an int; anything else is simply not found.

    Only plain ASCII digits name a row: ``int()`` alone would also take " 7", "+7", "0_7" and
    "٧" (an Arabic-Indic seven), so one object would answer at many URLs.
    """
    if not (isinstance(pk, str) and pk.isascii() and pk.isdigit()):
        raise NotFound("not found")
    value = int(pk)
    if not 0 < value < 2**63:
        raise NotFound("not found")
    return value


# --- offers ------------------------------------------------------------------------------------

class IsOfferReaderOrProvider(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return view.action in {"list", "retrieve"} or bool(request.user and request.user.is_authenticated)


@extend_schema_view(
    list=extend_schema(summary="Search offers (public); ?mine=true lists your own in any status",
                       responses={200: s.OfferSerializer(many=True), **errors(400)}),
    retrieve=extend_schema(summary="One offer", responses={200: s.OfferSerializer, **errors(404)}),
)
class OfferViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = s.OfferSerializer
    permission_classes = [IsOfferReaderOrProvider]
    pagination_class = OfferCursorPagination
    filter_backends = [OfferOrdering, *viewsets.GenericViewSet.filter_backends]
    queryset = Offer.objects.none()

    def _mine(self) -> bool:
        return self.request.query_params.get("mine", "").lower() in {"1", "true"}

    @property
    def filterset_class(self) -> type:
        """Providers filtering their own offers may also filter by status."""
        return MyOfferFilter if self._mine() else OfferFilter

    def get_queryset(self) -> QuerySet[Offer]:
        if getattr(self, "swagger_fake_view", False):
            return Offer.objects.none()
        base = Offer.objects.select_related("node")
        user = self.request.user
        if self._mine():
            if not user.is_authenticated:
                self.permission_denied(self.request)
            nodes.require_provider(user)
            return base.owned_by(user)
        if self.action == "retrieve" and user.is_authenticated:
            return base.filter(Q(status=OfferStatus.ACTIVE) | Q(provider=user))  # owners see paused ones
        return base.listed()

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "now": timezone.now()}

    def get_object(self) -> Offer:
        return get_object_or_404(self.get_queryset(), pk=_int_id(self.kwargs["pk"]))

    def _answer(self, offer: Offer, code: int = status.HTTP_200_OK) -> Response:
        return Response(s.OfferSerializer(offer, context=self.get_serializer_context()).data, status=code)

    @extend_schema(request=s.OfferCreateSerializer, responses={201: s.OfferSerializer, **errors(400, 401, 403,
                   404, 409)}, summary="Offer GPUs of one of your nodes")
    def create(self, request: Request) -> Response:
        data = valid(s.OfferCreateSerializer, request)
        offer = offers.create_offer(provider=request.user, node_id=data.pop("node"), **data)
        return self._answer(offer, status.HTTP_201_CREATED)

    @extend_schema(request=s.OfferUpdateSerializer, responses={200: s.OfferSerializer, **errors(400, 401, 403,
                   404, 409)}, summary="Change an offer's price, GPU count or lease durations")
    def partial_update(self, request: Request, pk: str) -> Response:
        data = valid(s.OfferUpdateSerializer, request)
        nodes.require_provider(request.user)
        return self._answer(offers.update_offer(provider=request.user, offer_id=_int_id(pk), **data))

    @extend_schema(request=None, responses={200: s.OfferSerializer, **errors(401, 403, 404, 409)},
                   summary="Withdraw an offer for good")
    def destroy(self, request: Request, pk: str) -> Response:
        nodes.require_provider(request.user)
        return self._answer(offers.withdraw_offer(provider=request.user, offer_id=_int_id(pk)))

    @extend_schema(request=None, responses={200: s.OfferSerializer, **errors(401, 403, 404, 409)},
                   summary="Pause an offer: no new jobs are matched to it")
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str) -> Response:
        nodes.require_provider(request.user)
        return self._answer(offers.pause_offer(provider=request.user, offer_id=_int_id(pk)))

    @extend_schema(request=None, responses={200: s.OfferSerializer, **errors(401, 403, 404, 409)},
                   summary="Resume a paused offer")
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str) -> Response:
        nodes.require_provider(request.user)
        return self._answer(offers.resume_offer(provider=request.user, offer_id=_int_id(pk)))


# --- artifacts ---------------------------------------------------------------------------------

@extend_schema_view(
    list=extend_schema(summary="Your artifacts", responses={200: s.ArtifactSerializer(many=True), **errors(401)}),
    retrieve=extend_schema(summary="One of your artifacts", responses={200: s.ArtifactSerializer,
                                                                        **errors(401, 404)}),
)
class ArtifactViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = s.ArtifactSerializer
    parser_classes = [MultiPartParser]  # the only body this viewset takes is an upload
    queryset = Artifact.objects.none()

    def get_queryset(self) -> QuerySet[Artifact]:
        if getattr(self, "swagger_fake_view", False):
            return Artifact.objects.none()
        return Artifact.objects.owned_by(self.request.user).order_by("-id")

    def get_object(self) -> Artifact:
        return artifacts.artifact_of(self.request.user, _int_id(self.kwargs["pk"]))

    @extend_schema(request={"multipart/form-data": s.ArtifactUploadSerializer},
                   responses={201: s.ArtifactSerializer, 200: s.ArtifactSerializer, **errors(400, 401, 413)},
                   summary="Upload a file (multipart field 'file'); identical bytes return the same artifact")
    def create(self, request: Request) -> Response:
        data = valid(s.ArtifactUploadSerializer, request)
        upload = data["file"]
        artifact, created = artifacts.store_artifact(
            owner=request.user, chunks=upload.chunks(), name=upload.name,
            content_type=upload.content_type or "application/octet-stream")
        return Response(s.ArtifactSerializer(artifact).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(description="The bytes"),
                              **errors(401, 404)}, summary="Download an artifact's bytes")
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str) -> FileResponse:
        artifact = self.get_object()
        response = FileResponse(artifacts.open_blob(artifact), as_attachment=True, filename=artifact.name,
                                content_type=artifact.content_type)
        response["ETag"] = f'"{artifact.sha256}"'
        return response


# --- jobs --------------------------------------------------------------------------------------

@extend_schema_view(
    list=extend_schema(summary="Your jobs, newest first", responses={200: s.JobSerializer(many=True),
                                                                     **errors(400, 401)}),
    retrieve=extend_schema(summary="One of your jobs", responses={200: s.JobSerializer, **errors(401, 404)}),
)
class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = s.JobSerializer
    filterset_class = JobFilter
    throttle_classes = [JobCreateThrottle]
    queryset = Job.objects.none()

    def get_queryset(self) -> QuerySet[Job]:
        if getattr(self, "swagger_fake_view", False):
            return Job.objects.none()
        # Whether each job asked for a lease, in the list's one query: jobs without one (all of them
        # when there is no chain) then cost no lease lookups.
        asked = ChainTx.objects.filter(job=OuterRef("pk"), function="openLease")
        return (Job.objects.owned_by(self.request.user).prefetch_related("children")
                .annotate(asked_for_lease=Exists(asked)).order_by("-created_at", "-id"))

    def get_object(self) -> Job:
        return jobs.job_of(self.request.user, _int_id(self.kwargs["pk"]))

    @extend_schema(request=s.JobCreateSerializer, responses={201: s.JobSerializer, **errors(400, 401, 413, 429)},
                   summary="Submit a job; it starts in 'queued'")
    def create(self, request: Request) -> Response:
        data = valid(s.JobCreateSerializer, request)
        requirements = jobs.Requirements(**data.pop("requirements", {}) or {})
        job = jobs.submit_job(owner=request.user, requirements=requirements, **data)
        return Response(s.JobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: s.JobSerializer, **errors(401, 404, 409)},
                   summary="Cancel a job that has not finished")
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        job = jobs.cancel_job(owner=request.user, job_id=_int_id(pk))
        return Response(s.JobSerializer(job).data)

    @extend_schema(responses={200: s.JobEventSerializer(many=True), **errors(401, 404)},
                   summary="The job's events: state changes with reasons, progress, logs")
    @action(detail=True, methods=["get"])
    def events(self, request: Request, pk: str) -> Response:
        job = self.get_object()
        page = self.paginate_queryset(job.events.order_by("id"))
        return self.get_paginated_response(s.JobEventSerializer(page, many=True).data)

    @extend_schema(responses={200: s.JobAttemptSerializer(many=True), **errors(401, 404)},
                   summary="The job's attempts: where each ran and how it ended")
    @action(detail=True, methods=["get"])
    def attempts(self, request: Request, pk: str) -> Response:
        job = self.get_object()
        page = self.paginate_queryset(job.attempt_rows.order_by("number"))
        return self.get_paginated_response(s.JobAttemptSerializer(page, many=True).data)

    @extend_schema(responses={200: s.JobResultSerializer, **errors(401, 404, 409)},
                   summary="The job's result, once it has succeeded")
    @action(detail=True, methods=["get"])
    def result(self, request: Request, pk: str) -> Response:
        job = self.get_object()
        if job.state != JobState.SUCCEEDED:
            return Response({"code": "result_not_ready", "detail": f"job {job.pk} is {job.state}"},
                            status=status.HTTP_409_CONFLICT)
        return Response({"state": job.state, "result": job.result, "result_artifact": job.result_artifact_id})



# --- wallet and escrow ledger --------------------------------------------------------------------

class WalletView(APIView):
    """The wallet the escrow knows you by, and linking one with a signature from it."""

    def _body(self, request: Request, message_for: str | None = None) -> dict[str, Any]:
        address, linked_at = balances.linked_wallet(request.user)
        message = accounts.wallet_link_message(request.user, message_for) if message_for else None
        return {"address": address or None, "linked_at": linked_at, "message_to_sign": message,
                "chain_id": balances.current_chain_id()}

    @extend_schema(
        parameters=[OpenApiParameter("address", str, description="A wallet you want to link: the answer holds "
                                     "the exact message it must sign (EIP-55 checksummed address)")],
        responses={200: s.WalletSerializer, **errors(400, 401)},
        summary="Your linked wallet, the chain id, and the message a wallet signs to be linked")
    def get(self, request: Request) -> Response:
        wanted = request.query_params.get("address")
        if wanted is not None:
            wanted = wanted.strip()
            problem = accounts.checksum_address_error(wanted)
            if problem:
                raise InvalidInput(problem, code="invalid_address", field="address")
        return Response(s.WalletSerializer(self._body(request, wanted)).data)

    @extend_schema(request=s.WalletLinkSerializer, responses={200: s.WalletSerializer, **errors(400, 401)},
                   summary="Link a wallet: its address and its signature of message_to_sign (400 invalid_address, "
                           "invalid_signature or wrong_signer)")
    def post(self, request: Request) -> Response:
        data = valid(s.WalletLinkSerializer, request)
        accounts.link_wallet(user=request.user, address=data["address"], signature=data["signature"])
        return Response(s.WalletSerializer(self._body(request)).data)


class LedgerView(APIView):
    """Your position in the escrow, read from the ledger the chain's events built.

    Without a chain (``CHAIN_URL`` empty, or no escrow deployed yet) the answer is still 200:
    ``"chain": null``, every amount ``"0"`` and no leases (the same shape, so clients need one code
    path; see `services.balances`).
    """

    pagination_class = BoundedLimitOffsetPagination

    @extend_schema(
        parameters=[OpenApiParameter("limit", int, description="Leases per page (at most 100)"),
                    OpenApiParameter("offset", int, description="Leases to skip")],
        responses={200: s.LedgerSerializer, **errors(400, 401)},
        summary="Your escrow balances (wei, as decimal strings) and your wallet's leases, newest first")
    def get(self, request: Request) -> Response:
        ledger = balances.account_ledger(request.user)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(ledger.leases(), request, view=self)
        leases = {"count": paginator.count, "next": paginator.get_next_link(),
                  "previous": paginator.get_previous_link(),
                  "results": s.LedgerLeaseSerializer(page, many=True, context={"address": ledger.address}).data}
        position = ledger.position
        body = {**{name: getattr(position, name) for name in s.LedgerSerializer.POSITION_FIELDS},
                "chain": ledger.chain, "address": ledger.address or None,
                "pending_reservations": ledger.pending_reservations, "leases": leases}
        return Response(s.LedgerSerializer(body).data)
