"""Push assignment's choice (hubbub.routing.rotation), without a database."""

from __future__ import annotations

from collections import Counter

from hubbub.routing.rotation import Agent, Waiting, plan

SERVICE = 1
SALES = 2


def agent(user_id: int, room: int = 5, departments=(SERVICE,), **skills) -> Agent:
    return Agent(
        user_id=user_id,
        departments=frozenset(departments),
        room=room,
        **{name: frozenset(values) for name, values in skills.items()},
    )


def case(case_id: int, department: int = SERVICE, network: str = "mastodon", **fields) -> Waiting:
    return Waiting(case_id=case_id, department_id=department, network=network, **fields)


def test_round_robin_takes_turns_starting_with_the_least_recently_served():
    rotation = [agent(10), agent(20), agent(30)]
    chosen = plan([case(n) for n in range(1, 8)], rotation)
    assert [c.user_id for c in chosen] == [10, 20, 30, 10, 20, 30, 10]
    assert {c.route for c in chosen} == {"push"}


def test_full_agents_are_skipped_and_room_is_used_up():
    rotation = [agent(10, room=0), agent(20, room=2), agent(30, room=1)]
    chosen = plan([case(n) for n in range(1, 6)], rotation)
    assert Counter(c.user_id for c in chosen) == {20: 2, 30: 1}
    assert [c.case_id for c in chosen] == [1, 2, 3]  # cases 4 and 5 wait: nobody has room


def test_skills_language_channel_topic_and_department():
    rotation = [
        agent(10, languages={"fr"}),
        agent(20, channels={"twitter"}),
        agent(30, topics={"purchase_intent"}, departments=(SALES,)),
    ]
    chosen = plan(
        [
            case(1, language="de"),  # nobody speaks German
            case(2, language="fr"),
            case(3, network="twitter", language="en"),
            case(4, department=SALES, intent="complaint"),  # the sales agent only takes purchase intents
            case(5, department=SALES, intent="purchase_intent"),
            case(6, language="", network="reddit"),  # unlabelled: the French speaker may; X-only agent may not
        ],
        rotation,
    )
    assert {c.case_id: c.user_id for c in chosen} == {2: 10, 3: 20, 5: 30, 6: 10}


def test_the_customers_own_agent_first_when_they_have_room():
    rotation = [agent(10), agent(20)]
    chosen = plan([case(1, last_agent=20), case(2)], rotation)
    assert [(c.case_id, c.user_id, c.route) for c in chosen] == [(1, 20, "push-sticky"), (2, 10, "push")]


def test_a_recent_customer_waits_for_their_full_agent_an_older_one_goes_to_the_next():
    rotation = [agent(10), agent(20, room=0)]
    chosen = plan([case(1, last_agent=20, recent=True), case(2, last_agent=20, recent=False)], rotation)
    assert [(c.case_id, c.user_id, c.route) for c in chosen] == [(2, 10, "push")]


def test_no_hold_for_an_agent_who_may_not_work_the_case():
    # The customer's agent is online but not certified for X: the case goes round.
    rotation = [agent(10), agent(20, channels={"mastodon"})]
    chosen = plan([case(1, network="twitter", last_agent=20, recent=True)], rotation)
    assert [(c.user_id, c.route) for c in chosen] == [(10, "push")]


def test_sticky_assignments_also_send_the_agent_to_the_back():
    rotation = [agent(10), agent(20), agent(30)]
    chosen = plan([case(1, last_agent=10), case(2), case(3), case(4)], rotation)
    assert [c.user_id for c in chosen] == [10, 20, 30, 10]
