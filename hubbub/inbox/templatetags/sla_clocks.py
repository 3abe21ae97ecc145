"""Template filters for the case page's SLA panel."""

from __future__ import annotations

import datetime as dt

from django import template

from hubbub.inbox.models import Priority
from hubbub.inbox.templatetags.inbox import human_duration

register = template.Library()


@register.filter
def duration_text(delta: dt.timedelta | None) -> str:
    """3 h 5 min."""
    return human_duration(delta) if delta else ""


@register.filter
def priority_name(value) -> str:
    try:
        return Priority(int(value)).label
    except (TypeError, ValueError):
        return ""
