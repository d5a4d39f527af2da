"""Routes of the server-rendered pages."""
from __future__ import annotations

from django.contrib.auth.views import LogoutView
from django.urls import path, register_converter

from marketplace.web import views


class IdConverter:
    """A positive row id that fits a bigint; longer digit strings are simply not found (no 500)."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")

app_name = "web"
urlpatterns = [
    path("", views.home, name="home"),
    path("signup/", views.signup, name="signup"),
    path("login/", views.SignInView.as_view(), name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),  # POST only (Django 5)
    path("dashboard/", views.dashboard, name="dashboard"),
    path("account/", views.account, name="account"),
    path("account/payout/", views.set_payout_address, name="set_payout_address"),
    path("account/token/", views.rotate_token, name="rotate_token"),
    path("account/wallet/", views.link_wallet, name="link_wallet"),
    path("earnings/", views.earnings, name="earnings"),
    path("balance/", views.balance, name="balance"),
    path("offers/", views.offer_search, name="offer_search"),
    path("nodes/", views.node_list, name="node_list"),
    path("nodes/new/", views.node_create, name="node_create"),
    path("nodes/<id:node_id>/", views.node_detail, name="node_detail"),
    path("my-offers/<id:offer_id>/pause/", views.offer_action, {"action": "pause"}, name="offer_pause"),
    path("my-offers/<id:offer_id>/resume/", views.offer_action, {"action": "resume"}, name="offer_resume"),
    path("my-offers/<id:offer_id>/withdraw/", views.offer_action, {"action": "withdraw"}, name="offer_withdraw"),
    path("jobs/", views.job_list, name="job_list"),
    path("jobs/new/", views.job_create, name="job_create"),
    path("jobs/<id:job_id>/", views.job_detail, name="job_detail"),
    path("jobs/<id:job_id>/cancel/", views.job_cancel, name="job_cancel"),
]
