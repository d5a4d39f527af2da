"""Server-rendered pages for providers and developers. Views call services; forms check shape.

Every rule lives in `marketplace.services`: a view binds a form, calls one service verb, and
shows a `DomainError`'s ``detail`` next to the field it names. Objects of other users are
looked up through the services' ``*_of`` readers, whose `NotFound` becomes a 404 here.
Pages need no JavaScript: every action is a plain form, every state change a POST.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.contrib.auth.views import LoginView
from django.core.paginator import Page, Paginator
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from marketplace.api.filters import OfferFilter
from marketplace import ratelimit
from marketplace.errors import DomainError, NotFound
from marketplace.models import Job, Lease, Node, Offer, OfferStatus, Role
from marketplace.services import accounts, balances, jobs, leases, nodes, offers
from marketplace.web import commands
from marketplace.web import forms as f
from marketplace.web.format import wei_to_eth
from marketplace.web.paging import Cursor, keyset_page

View = Callable[..., HttpResponse]


class SignedInRequest(HttpRequest):
    """A request that passed `login_required`: its user is a real `User`, never anonymous."""

    user: User


LIST_PAGE_SIZE = 25
NODE_JOBS_SHOWN = 50
JOB_EVENTS_SHOWN = 200
RESERVATIONS_SHOWN = 100
#: Offer search orderings -> (column, descending); every walk ends in "id" (see web.paging).
OFFER_ORDER_COLUMNS = {"price": ("price_per_gpu_hour_wei", False), "-price": ("price_per_gpu_hour_wei", True),
                       "vram": ("vram_gb", False), "-vram": ("vram_gb", True), "-score": ("score", True)}


# --- helpers -----------------------------------------------------------------------------------

def _posted(request: HttpRequest) -> QueryDict | None:
    """The POST data to bind a form with, or None on GET (so an empty POST still shows errors)."""
    return request.POST if request.method == "POST" else None


def _no_store(response: HttpResponse) -> HttpResponse:
    """Keep a page holding a secret out of browser and proxy caches (and the back button)."""
    response["Cache-Control"] = "no-store"
    return response


def _error_page(request: HttpRequest, title: str, message: str, status: int) -> HttpResponse:
    return render(request, "web/error.html", {"title": title, "message": message}, status=status)


def role_required(role: str) -> Callable[[View], View]:
    """Only signed-in users of ``role``: anonymous users go to the login page, others get a 403 page."""

    def decorate(view: View) -> View:
        @wraps(view)
        def guarded(request: SignedInRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            mine = accounts.account_of(request.user).role
            if mine != role:
                label = Role(role).label.lower()
                return _error_page(request, f"This page is for {label}s",
                                   f"You are signed in with a {mine} account; this page belongs to {label} "
                                   "accounts.", 403)
            return view(request, *args, **kwargs)

        return login_required(guarded)

    return decorate


provider_required = role_required(Role.PROVIDER)
developer_required = role_required(Role.DEVELOPER)


def _own_node(request: SignedInRequest, node_id: int) -> Node:
    try:
        return nodes.node_of(request.user, node_id)
    except NotFound:
        raise Http404("no such node") from None


def _own_job(request: SignedInRequest, job_id: int) -> Job:
    try:
        return jobs.job_of(request.user, job_id)
    except NotFound:
        raise Http404("no such job") from None


# --- public pages and accounts -------------------------------------------------------------------

def home(request: HttpRequest) -> HttpResponse:
    """What the marketplace is, with the next step for the visitor."""
    return render(request, "web/home.html")


def signup(request: HttpRequest) -> HttpResponse:
    """Create an account with a role through `accounts.register_user`, then sign in."""
    if request.user.is_authenticated:
        return redirect("web:dashboard")
    form = f.SignupForm(_posted(request))
    if form.is_valid():
        data = form.cleaned_data
        try:
            user, _token = accounts.register_user(username=data["username"], password=data["password"],
                                                  role=data["role"])
        except DomainError as exc:
            f.apply_domain_error(form, exc)
        else:
            login(request, user)
            messages.success(request, f"Welcome, {user.username}! Your {data['role']} account is ready.")
            return redirect("web:dashboard")
    return render(request, "web/signup.html", {"form": form})


class SignInView(LoginView):
    """Django's login with the house form and template; signed-in visitors skip it."""

    template_name = "web/login.html"
    form_class = f.LoginForm
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = ratelimit.seconds_until_allowed(request)
        if wait is not None:  # password guessing: refuse before checking anything
            response = render(request, "web/error.html", {
                "title": "Too many attempts",
                "message": f"Too many failed sign-ins from your address. Try again in {wait} seconds."}, status=429)
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: Any) -> HttpResponse:
        ratelimit.count_failure(self.request)
        return super().form_invalid(form)


@login_required
def dashboard(request: SignedInRequest) -> HttpResponse:
    """Send each role to its home: providers to their nodes, developers to their jobs."""
    if accounts.account_of(request.user).is_provider:
        return redirect("web:node_list")
    return redirect("web:job_list")


def _account_page(request: SignedInRequest, payout_form: f.PayoutAddressForm | None = None,
                  wallet_form: f.WalletLinkForm | None = None) -> HttpResponse:
    account = accounts.account_of(request.user)
    wallet_form = wallet_form or f.WalletLinkForm()
    message = _link_message(request, wallet_form)
    context = {"account": account, "token": accounts.current_token(user=request.user),
               "payout_form": payout_form or f.PayoutAddressForm(initial={"payout_address": account.payout_address}),
               "wallet_form": wallet_form, "wallet_message": message,
               "sign_command": commands.sign_link_message(message) if message else "",
               "chain_id": balances.current_chain_id()}
    return _no_store(render(request, "web/account.html", context))


def _link_message(request: SignedInRequest, form: f.WalletLinkForm) -> str:
    """The exact message the wallet typed into the form signs; "" until a valid address was sent."""
    address = (form.data.get("address") or "").strip() if form.is_bound else ""
    if not address or accounts.checksum_address_error(address):
        return ""
    return accounts.wallet_link_message(request.user, address)


@login_required
def account(request: SignedInRequest) -> HttpResponse:
    """The role, the API token, the escrow wallet and the payout wallet."""
    return _account_page(request)


@login_required
@require_POST
def set_payout_address(request: SignedInRequest) -> HttpResponse:
    """Save the payout wallet; the service checks the EIP-55 checksum."""
    form = f.PayoutAddressForm(request.POST)
    if form.is_valid():
        try:
            saved = accounts.set_payout_address(user=request.user, address=form.cleaned_data["payout_address"])
        except DomainError as exc:
            f.apply_domain_error(form, exc)
        else:
            messages.success(request, f"Payouts will go to {saved.payout_address}.")
            return redirect("web:account")
    return _account_page(request, payout_form=form)


@login_required
@require_POST
def link_wallet(request: SignedInRequest) -> HttpResponse:
    """Link the wallet the escrow knows the user by, with its signature of the link message.

    Two buttons, no JavaScript: "Show the message to sign" (``step=message``) only checks the
    address and shows the exact message and a ``cast wallet sign`` command for it; "Link wallet"
    checks the signature through `accounts.link_wallet`, whose errors land next to their field.
    """
    showing = request.POST.get("step") == "message"
    form = f.WalletLinkForm(request.POST, require_signature=not showing)
    if form.is_valid():
        address = form.cleaned_data["address"]
        problem = accounts.checksum_address_error(address)
        if problem:
            form.add_error("address", problem)
        elif not showing:
            try:
                accounts.link_wallet(user=request.user, address=address, signature=form.cleaned_data["signature"])
            except DomainError as exc:
                f.apply_domain_error(form, exc)
            else:
                messages.success(request, f"Wallet {address} is linked to your account.")
                return redirect(reverse("web:account") + "#wallet")
    return _account_page(request, wallet_form=form)


@login_required
@require_POST
def rotate_token(request: SignedInRequest) -> HttpResponse:
    """Replace the API token; the old one stops working at once."""
    accounts.rotate_token(user=request.user)
    messages.success(request, "A new API token was issued; the old one no longer works.")
    return redirect("web:account")


# --- escrow: a provider's earnings, a developer's balance ---------------------------------------

def _lease_page(request: SignedInRequest, rows: QuerySet[Lease]) -> Page:
    """One page of leases, newest first, with their jobs (for links to the viewer's own)."""
    return Paginator(rows.select_related("job"), LIST_PAGE_SIZE).get_page(request.GET.get("page"))


def _provider_commands(ledger: balances.AccountLedger) -> dict[str, Any]:
    chain, position = ledger.chain, ledger.position
    if chain is None or not chain.deployed:
        return {}
    stake = chain.min_stake_wei or '"$AMOUNT"'
    return {"withdraw": commands.withdraw(chain, position.available) if position.available else "",
            "register": commands.register_provider(chain, stake), "add_stake": commands.add_stake(chain),
            "start_unbonding": commands.start_unbonding(chain),
            "complete_unbonding": commands.complete_unbonding(chain)}


@provider_required
def earnings(request: SignedInRequest) -> HttpResponse:
    """The provider's stake, earnings and leases in the escrow, and the commands to withdraw and stake."""
    ledger = balances.account_ledger(request.user)
    context = {"ledger": ledger, "chain": ledger.chain, "position": ledger.position,
               "page": _lease_page(request, ledger.leases_as_provider()),
               "commands": _provider_commands(ledger)}
    return render(request, "web/earnings.html", context)


def _developer_commands(ledger: balances.AccountLedger) -> dict[str, Any]:
    chain, position = ledger.chain, ledger.position
    if chain is None or not chain.deployed:
        return {}
    return {"deposit": commands.deposit(chain), "set_lease_cap": commands.set_lease_cap(chain),
            "withdraw": commands.withdraw(chain, position.available or '"$AMOUNT"')}


@developer_required
def balance(request: SignedInRequest) -> HttpResponse:
    """The developer's escrow balance, reservations and spend per job, and the commands to fund it."""
    ledger = balances.account_ledger(request.user)
    reservations = list(ledger.open_leases_as_tenant().select_related("job")[:RESERVATIONS_SHOWN + 1])
    context = {"ledger": ledger, "chain": ledger.chain, "position": ledger.position,
               "reservations": reservations[:RESERVATIONS_SHOWN],
               "reservations_truncated": len(reservations) > RESERVATIONS_SHOWN,
               "reservations_shown": RESERVATIONS_SHOWN, "page": _lease_page(request, ledger.leases_as_tenant()),
               "commands": _developer_commands(ledger)}
    return render(request, "web/balance.html", context)


# --- provider: nodes and offers ------------------------------------------------------------------

@provider_required
def node_list(request: SignedInRequest) -> HttpResponse:
    """The provider's nodes with their GPUs, status and number of live offers."""
    live_offers = Count("offers", filter=~Q(offers__status=OfferStatus.WITHDRAWN))
    queryset = (Node.objects.owned_by(request.user).prefetch_related("gpus")
                .annotate(live_offers=live_offers).order_by("name", "id"))
    page = Paginator(queryset, LIST_PAGE_SIZE).get_page(request.GET.get("page"))
    now = timezone.now()
    rows = [(node, node.status(now)) for node in page]
    return render(request, "web/node_list.html", {"page": page, "rows": rows})


def _gpu_declarations(formset: Any) -> list[nodes.GpuDeclaration]:
    """The GPU rows the provider filled in (blank rows are skipped)."""
    return [nodes.GpuDeclaration(model=row["model"], count=row["count"], vram_gb=row.get("vram_gb"))
            for row in formset.cleaned_data if row.get("model")]


def _join_command(request: SignedInRequest, token: str) -> str:
    api = request.build_absolute_uri("/").rstrip("/")
    return f"python -m workers.agent join --api {api} --token {token}"


@provider_required
def node_create(request: SignedInRequest) -> HttpResponse:
    """Register a node; the answer to the POST itself shows the join token, once."""
    form = f.NodeForm(_posted(request))
    gpu_formset = f.GpuFormSet(_posted(request), prefix="gpus")
    gpu_error = ""
    if request.method == "POST" and form.is_valid() and gpu_formset.is_valid():
        try:
            node, token = nodes.register_node(provider=request.user, gpus=_gpu_declarations(gpu_formset),
                                              **form.cleaned_data)
        except DomainError as exc:
            if exc.field == "gpus":
                gpu_error = exc.detail
            else:
                f.apply_domain_error(form, exc)
        else:
            # Rendered, not redirected: the token exists only in this response.
            context = {"node": node, "token": token, "command": _join_command(request, token)}
            return _no_store(render(request, "web/node_created.html", context, status=201))
    return render(request, "web/node_form.html", {"form": form, "gpu_formset": gpu_formset,
                                                  "gpu_error": gpu_error})


def _offered_per_gpu(offer_rows: list[Offer]) -> dict[int, int]:
    """GPUs of each group covered by offers that are not withdrawn (paused ones count)."""
    offered: dict[int, int] = {}
    for offer in offer_rows:
        if offer.status != OfferStatus.WITHDRAWN:
            offered[offer.gpu_id] = offered.get(offer.gpu_id, 0) + offer.gpu_count
    return offered


def _node_page(request: SignedInRequest, node: Node, form: f.OfferForm) -> HttpResponse:
    offer_rows = list(node.offers.order_by("status", "-id"))
    offered = _offered_per_gpu(offer_rows)
    gpus = [(gpu, offered.get(gpu.pk, 0)) for gpu in node.gpus.all()]
    context = {"node": node, "status": node.status(timezone.now()), "gpus": gpus, "offers": offer_rows,
               "jobs": Job.objects.filter(node=node).order_by("-id")[:NODE_JOBS_SHOWN],
               "jobs_shown": NODE_JOBS_SHOWN, "form": form}
    return render(request, "web/node_detail.html", context)


@provider_required
def node_detail(request: SignedInRequest, node_id: int) -> HttpResponse:
    """One node: GPUs, status, offers with their actions, jobs it ran, and the new-offer form."""
    node = _own_node(request, node_id)
    form = f.OfferForm(_posted(request), gpus=list(node.gpus.all()))
    if form.is_valid():
        data = form.cleaned_data
        try:
            offer = offers.create_offer(
                provider=request.user, node_id=node.pk, gpu_model=data["gpu_model"], gpu_count=data["gpu_count"],
                price_per_gpu_hour_wei=data["price_per_gpu_hour_wei"],
                min_duration_s=form.seconds("min_duration"), max_duration_s=form.seconds("max_duration"))
        except DomainError as exc:
            f.apply_domain_error(form, exc, f.OfferForm.FIELD_MAP)
        else:
            price = wei_to_eth(offer.price_per_gpu_hour_wei)
            messages.success(request, f"Offered {offer.gpu_count} × {offer.gpu_model} at "
                                      f"{offer.price_per_gpu_hour_wei} wei ({price} ETH) per GPU-hour.")
            return redirect("web:node_detail", node_id=node.pk)
    return _node_page(request, node, form)


OFFER_ACTIONS: dict[str, tuple[Callable[..., Offer], str]] = {
    "pause": (offers.pause_offer, "paused"),
    "resume": (offers.resume_offer, "resumed"),
    "withdraw": (offers.withdraw_offer, "withdrawn"),
}


@provider_required
@require_POST
def offer_action(request: SignedInRequest, offer_id: int, action: str) -> HttpResponse:
    """Pause, resume or withdraw one of the provider's offers, then go back to its node."""
    try:
        offer = offers.offer_of(request.user, offer_id)
    except NotFound:
        raise Http404("no such offer") from None
    verb, done = OFFER_ACTIONS[action]
    try:
        verb(provider=request.user, offer_id=offer.pk)
    except DomainError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"Offer {offer.pk} {done}.")
    return redirect(reverse("web:node_detail", kwargs={"node_id": offer.node_id}) + "#offers")


# --- public offer search -----------------------------------------------------------------------

def _search_cursors(form: f.OfferSearchForm) -> tuple[Cursor | None, Cursor | None]:
    """The page cursors of a valid search form; a mangled one becomes a form error."""
    try:
        after = Cursor.parse(form.cleaned_data["after"]) if form.cleaned_data.get("after") else None
        before = Cursor.parse(form.cleaned_data["before"]) if form.cleaned_data.get("before") else None
    except ValueError:
        form.add_error(None, "That page link is broken; the search starts again from the first page.")
        return None, None
    return after, before


def _search_offers(form: f.OfferSearchForm) -> tuple[Any, list[tuple[Offer, str]]]:
    """Run a valid search: the API's `OfferFilter`, then one keyset page. Returns (page, rows)."""
    filterset = OfferFilter(form.filter_data(), queryset=Offer.objects.listed().select_related("node"))
    if not filterset.is_valid():
        for field, errors in filterset.errors.items():
            for error in errors:
                form.add_error(field if field in form.fields else None, error)
        return None, []
    after, before = _search_cursors(form)
    column, descending = OFFER_ORDER_COLUMNS[form.cleaned_data.get("ordering") or "price"]
    size = form.cleaned_data.get("page_size") or f.PAGE_SIZES[0]
    page = keyset_page(filterset.qs, column=column, descending=descending, size=size, after=after, before=before)
    now = timezone.now()
    return page, [(offer, offer.node.status(now)) for offer in page.rows]


def offer_search(request: HttpRequest) -> HttpResponse:
    """The public offer search: filters as a GET form, one bounded page, Next/Previous links."""
    form = f.OfferSearchForm(request.GET)
    page, rows = _search_offers(form) if form.is_valid() else (None, [])
    return render(request, "web/offer_search.html", {"form": form, "page": page, "rows": rows})


# --- developer: jobs -----------------------------------------------------------------------------

@developer_required
def job_list(request: SignedInRequest) -> HttpResponse:
    """The developer's jobs, newest first."""
    queryset = Job.objects.owned_by(request.user).order_by("-created_at", "-id")
    page = Paginator(queryset, LIST_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "web/job_list.html", {"page": page})


@developer_required
def job_create(request: SignedInRequest) -> HttpResponse:
    """Submit a job through `jobs.submit_job` and show it."""
    form = f.JobForm(_posted(request))
    if form.is_valid():
        data = form.cleaned_data
        requirements = jobs.Requirements(gpu_model=data["gpu_model"], min_vram_gb=data["min_vram_gb"],
                                         gpus=data["gpus"])
        try:
            job = jobs.submit_job(owner=request.user, kind=data["kind"], spec=data["spec"],
                                  requirements=requirements, max_price_wei=data["max_price_wei"],
                                  budget_wei=data["budget_wei"])
        except DomainError as exc:
            f.apply_domain_error(form, exc)
        else:
            messages.success(request, f"Job {job.pk} submitted; it is {job.state}.")
            return redirect("web:job_detail", job_id=job.pk)
    return render(request, "web/job_form.html", {"form": form})


def _recent_events(job: Job) -> tuple[list[Any], bool]:
    """The job's last events in order, and whether older ones were left out."""
    newest_first = list(job.events.order_by("-id")[: JOB_EVENTS_SHOWN + 1])
    return newest_first[:JOB_EVENTS_SHOWN][::-1], len(newest_first) > JOB_EVENTS_SHOWN


@developer_required
def job_detail(request: SignedInRequest, job_id: int) -> HttpResponse:
    """One job: what it runs, what it needs, its state and its events."""
    job = _own_job(request, job_id)
    events, truncated = _recent_events(job)
    return render(request, "web/job_detail.html", {"job": job, "events": events, "events_truncated": truncated,
                                                   "events_shown": JOB_EVENTS_SHOWN,
                                                   "children": job.children.order_by("id"),
                                                   "lease": leases.job_lease(job), "chain_enabled": leases.enabled()})


@developer_required
@require_POST
def job_cancel(request: SignedInRequest, job_id: int) -> HttpResponse:
    """Cancel a job that has not finished."""
    job = _own_job(request, job_id)
    try:
        jobs.cancel_job(owner=request.user, job_id=job.pk)
    except DomainError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"Job {job.pk} cancelled.")
    return redirect("web:job_detail", job_id=job.pk)


# --- error handlers ------------------------------------------------------------------------------

def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"code": "not_found", "detail": "no such endpoint"}, status=404)
    return _error_page(request, "Not found", "There is no page here, or it belongs to someone else.", 404)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"code": "server_error", "detail": "internal error; it has been logged"}, status=500)
    # Plain text on purpose: rendering templates is what may have failed.
    return HttpResponse("Something went wrong on our side; it has been logged.", status=500,
                        content_type="text/plain; charset=utf-8")
