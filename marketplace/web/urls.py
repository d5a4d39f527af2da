"""Routes of the server-rendered pages."""
from __future__ import annotations

from django.urls import path

from marketplace.web import views

app_name = "web"
urlpatterns = [
    path("", views.home, name="home"),
]
