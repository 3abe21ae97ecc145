"""A playbook's validated data as rows a page can show: the structured view beside the YAML."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hubbub.accounts.models import Organization
from hubbub.connectors.models import Network, SocialAccount
from hubbub.lib.playbook import account_key
from hubbub.lib.playbook_form import Choices
from hubbub.listening.models import ListeningQuery


@dataclass(frozen=True)
class RuleRow:
    name: str
    when: list[str]
    then: list[str]


@dataclass(frozen=True)
class Described:
    default: list[str]
    rules: list[RuleRow]
    templates: list[tuple[str, str]]


def describe(data: dict[str, Any]) -> Described:
    """`data` has passed parse_yaml(), so its shape is known."""
    rules = [
        RuleRow(
            name=str(rule.get("name") or f"rule {i + 1}"),
            when=_conditions(rule.get("when") or {}) or ["always"],
            then=_pairs(rule.get("then") or {}),
        )
        for i, rule in enumerate(data.get("rules") or [])
    ]
    templates = [(str(name), str(text)) for name, text in (data.get("templates") or {}).items()]
    return Described(default=_pairs(data.get("default") or {}), rules=rules, templates=templates)


def _conditions(when: dict[str, Any]) -> list[str]:
    # "business_hours: no" reads as if the playbook had none; say what the rule asks instead.
    return [
        ("in business hours" if value else "outside business hours") if key == "business_hours" else _pair(key, value)
        for key, value in when.items()
    ]


def _pair(key: str, value: Any) -> str:
    return f"{key}: {_value(value)}"


def _pairs(mapping: dict[str, Any]) -> list[str]:
    return [_pair(key, value) for key, value in mapping.items()]


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def form_choices(organization: Organization) -> Choices:
    """What the structured form's selects offer: the organization's departments, networks, brand
    accounts and listening queries (the playbook's own templates come from its YAML)."""
    accounts = SocialAccount.objects.filter(organization=organization).order_by("network", "handle")
    network_names = dict(Network.choices)
    return Choices(
        departments=list(organization.departments.order_by("name").values_list("slug", "name")),
        channels=list(Network.choices),
        accounts=[
            (f"{network}:{account_key(handle)}", f"{handle} ({network_names.get(network, network)})")
            for network, handle in accounts.values_list("network", "handle")
        ],
        listening=[
            (name, name)
            for name in ListeningQuery.objects.filter(organization=organization)
            .order_by("name")
            .values_list("name", flat=True)
        ],
    )
