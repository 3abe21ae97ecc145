from hubbub.connectors.models import InboundEvent
from hubbub.demo import load_demo
from hubbub.inbox.models import Case, Direction, Message, Visibility
from hubbub.worker import Worker


def test_demo_fills_every_kind_of_queue_and_loads_once(db):
    organizations = load_demo()
    Worker(poll=False).drain()
    assert len(organizations) == 3
    departments = set(Case.objects.values_list("department__slug", flat=True))
    assert {"customer-service", "legal", "sales", "marketing"} <= departments
    found = {kind for kinds in Case.objects.values_list("private_data", flat=True) for kind in kinds}
    assert {"account_number", "card_number"} <= found
    # The demo's VIP is recognised on their first post: the starter playbook's VIP rule takes them.
    vip_rule = Case.objects.filter(playbook_rule="VIP customers")
    assert vip_rule.exists() and not vip_rule.exclude(customer__tier="vip").exists()
    # Brand replies and private follow-ups are threaded into their cases.
    assert Message.objects.filter(direction=Direction.OUTBOUND).exists()
    assert Message.objects.filter(direction=Direction.INBOUND, visibility=Visibility.PRIVATE).exists()
    events = InboundEvent.objects.count()
    load_demo()
    assert InboundEvent.objects.count() == events


def test_a_newcomer_clicks_through_every_page_of_the_demo(client, db):
    """What `make run` shows: every page of the main menu answers for the demo supervisor and agent."""
    from django.contrib.auth.models import User
    from django.urls import reverse

    from hubbub.playbook.models import HandOff

    load_demo()
    Worker(poll=False).drain()
    everyone = ["inbox:queue", "inbox:accounts", "routing:home", "listening:list", "playbook:list"]
    everyone += ["playbook:handoffs", "playbook:intake_detail", "crisis:home"]
    supervisors = ["inbox:dead_letters", "routing:board", "publishing:approvals"]
    client.force_login(User.objects.get(username="supervisor"))
    for name in everyone + supervisors:
        assert client.get(reverse(name)).status_code == 200, name
    client.force_login(User.objects.get(username="agent"))
    for name in everyone:
        assert client.get(reverse(name)).status_code == 200, name
    client.force_login(User.objects.get(username="supervisor"))
    case = Case.objects.filter(department__slug="legal").first()
    assert client.get(reverse("inbox:case", args=[case.pk])).status_code == 200
    # The starter playbook hands legal threats to marketing too: the demo shows a hand-off.
    assert HandOff.objects.filter(department__slug="marketing").exists()
