"""Push assignment's choice, as pure code: which waiting case goes to which agent.

No database here (tested without one); hubbub.routing.actions.do_push_assign reads the agents and
the queue, calls plan(), and claims what it chose.

The rules, in order, for each case in queue order:
1. Sticky: the agent who last answered the customer takes it if they may work it and have room.
2. Held: if that agent may work it but is full, and the customer wrote within the hold window, the
   case waits for them (the same hold as "next case" gives an online agent's customer).
3. Round robin: otherwise the first agent in the rotation who may work it and has room; the
   rotation starts with whoever was handed a case least recently, and an agent who gets one goes
   to the back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class Agent:
    user_id: int
    departments: frozenset[int]
    room: int  # capacity minus the open cases they hold
    # Empty means "not restricted", as on Membership.
    languages: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    topics: frozenset[str] = frozenset()

    def may_work(self, case: Waiting) -> bool:
        # Unlabelled cases (no language or intent detected) stay workable by everyone; a public
        # channel needs a certified agent whatever the case says.
        return (
            case.department_id in self.departments
            and (not self.languages or not case.language or case.language in self.languages)
            and (not self.channels or case.network in self.channels)
            and (not self.topics or not case.intent or case.intent in self.topics)
        )


@dataclass(frozen=True)
class Waiting:
    case_id: int
    department_id: int
    network: str
    language: str = ""
    intent: str = ""
    # The agent who last answered this customer within the sticky window, if any.
    last_agent: int | None = None
    # The customer wrote within the hold window: their agent is worth waiting for.
    recent: bool = False


@dataclass(frozen=True)
class Choice:
    case_id: int
    user_id: int
    route: str  # "push-sticky" or "push"


def plan(cases: Iterable[Waiting], rotation: list[Agent]) -> list[Choice]:
    """Choose an agent for each case that can have one. `rotation` is in round-robin order
    (least recently handed a case first); the agents' room is used up as cases are given out."""
    order = list(rotation)
    by_user = {agent.user_id: agent for agent in order}
    chosen: list[Choice] = []
    for case in cases:
        sticky = by_user.get(case.last_agent) if case.last_agent is not None else None
        if sticky is not None and sticky.may_work(case):
            if sticky.room > 0:
                chosen.append(_give(case, sticky, "push-sticky", order))
                continue
            if case.recent:
                continue
        agent = next((a for a in order if a.room > 0 and a.may_work(case)), None)
        if agent is not None:
            chosen.append(_give(case, agent, "push", order))
    return chosen


def _give(case: Waiting, agent: Agent, route: str, order: list[Agent]) -> Choice:
    agent.room -= 1
    order.remove(agent)
    order.append(agent)
    return Choice(case_id=case.case_id, user_id=agent.user_id, route=route)
