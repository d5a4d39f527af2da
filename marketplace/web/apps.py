"""The web pages as their own (model-less) Django app.

Registering ``marketplace.web`` as an app is what lets Django find its templates, its static
files and its template tags next to the views that use them, without extra settings.
"""
from __future__ import annotations

from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "marketplace.web"
    label = "web"
    verbose_name = "GPU marketplace pages"
