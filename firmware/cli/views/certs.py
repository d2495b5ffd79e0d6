"""Text for `certs list` and `certs renew`: subject, issuer, not-after, days left, backend."""

from __future__ import annotations

from argparse import Namespace
from typing import Any

from firmware.cli import render

_HEADERS = ("NAME", "SUBJECT", "ISSUER", "NOT AFTER", "DAYS LEFT", "BACKEND", "STATUS")


def _row(cert: dict[str, Any]) -> tuple[object, ...]:
    return (
        cert.get("name"),
        cert.get("subject"),
        cert.get("issuer"),
        cert.get("notAfter"),
        cert.get("daysLeft"),
        cert.get("backend"),
        cert.get("status"),
    )


def render_certificates(answer: dict[str, Any], args: Namespace) -> str:
    certs = answer.get("certificates") or []
    if not certs:
        return "no certificates"
    return render.table(_HEADERS, (_row(cert) for cert in certs), render.columns_of(args))


def render_renewed(answer: dict[str, Any], args: Namespace) -> str:
    return (
        f"renewed {answer.get('name')}: valid until {answer.get('notAfter')} "
        f"({answer.get('daysLeft')} days), key in {answer.get('backend')}"
    )
