"""Template filters for the agent inbox: SLA clocks, percentages, and the HTML sanitiser."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

import nh3
from django import template
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

# How close to its due time a first response counts as "soon" (amber in the queue).
SLA_SOON = dt.timedelta(minutes=15)

# Message.html is sanitised when stored; this second pass is what makes it safe to show.
_CLEANER = nh3.Cleaner(
    tags={"a", "p", "br", "b", "strong", "i", "em", "u", "ul", "ol", "li", "blockquote", "code", "pre"},
    clean_content_tags={"script", "style"},
    attributes={"a": {"href", "title"}},
    link_rel="nofollow noopener noreferrer",
    url_schemes={"http", "https", "mailto"},
)


def human_duration(delta: dt.timedelta) -> str:
    """12 min, 3 h 5 min, 2 d 4 h: minute precision is what an agent needs."""
    minutes = int(abs(delta).total_seconds() // 60)
    if minutes < 1:
        return "under a minute"
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"


@register.filter
def time_left(due: dt.datetime | None) -> str:
    """'25 min left' or 'overdue by 1 h 4 min'."""
    if due is None:
        return ""
    delta = due - timezone.now()
    if delta.total_seconds() >= 0:
        return f"{human_duration(delta)} left"
    return f"overdue by {human_duration(delta)}"


@register.filter
def sla_state(case) -> str:
    """none, met, late (answered after the due time), overdue, soon or ok."""
    due = case.first_response_due_at
    if case.first_responded_at is not None:
        return "late" if due is not None and case.first_responded_at > due else "met"
    if due is None:
        return "none"
    left = due - timezone.now()
    if left.total_seconds() < 0:
        return "overdue"
    return "soon" if left <= SLA_SOON else "ok"


@register.filter
def sla_text(case) -> str:
    state = sla_state(case)
    if state == "met":
        return "answered in time"
    if state == "late":
        return "answered late"
    if state == "none":
        return "no SLA"
    return time_left(case.first_response_due_at)


@register.filter
def percent(value) -> str:
    """0.873 -> '87%'."""
    try:
        return f"{round(float(value) * 100)}%"
    except (TypeError, ValueError):
        return ""


@register.filter
def http_url(value) -> str:
    """The URL if it is http(s), else nothing: a stored link never becomes javascript:."""
    value = str(value or "")
    try:
        scheme = urlsplit(value).scheme.lower()
    except ValueError:
        return ""
    return value if scheme in ("http", "https") else ""


@register.filter
def user_label(user) -> str:
    if user is None:
        return ""
    return user.get_full_name() or user.get_username()


@register.filter
def sanitize(html) -> SafeString:
    """Stored HTML through nh3 with a small allowlist; links get rel="nofollow noopener noreferrer"."""
    if not html:
        return mark_safe("")  # noqa: S308 - an empty string
    return mark_safe(_CLEANER.clean(str(html)))  # noqa: S308 - nh3 output, allowlisted tags only
