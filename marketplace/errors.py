"""The one hierarchy of domain errors.

Services raise these; the API turns them into ``{"code": ..., "detail": ...}`` with the
error's HTTP status, and the web pages show ``detail`` next to the form. ``code`` is part
of the public API: never change an existing one.
"""
from __future__ import annotations


class DomainError(Exception):
    """Base of every error a user can cause. ``code`` is stable; ``detail`` is for humans."""

    code = "domain_error"
    status = 400

    def __init__(self, detail: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.field = field


class InvalidInput(DomainError):
    """The request is well-formed but a value breaks a rule (an unknown GPU model, a bad address...)."""

    code = "invalid"


class NotFound(DomainError):
    """The object does not exist or belongs to someone else (we never tell which)."""

    code = "not_found"
    status = 404


class Forbidden(DomainError):
    """The caller is known but their role may not do this."""

    code = "permission_denied"
    status = 403


class Conflict(DomainError):
    """The request clashes with the current state (a name already taken, GPUs already offered...)."""

    code = "conflict"
    status = 409


class InvalidTransition(Conflict):
    """A job was asked to move along an edge its state machine does not have."""

    code = "invalid_transition"


class PayloadTooLarge(DomainError):
    """A body or upload is bigger than the configured limit."""

    code = "payload_too_large"
    status = 413
