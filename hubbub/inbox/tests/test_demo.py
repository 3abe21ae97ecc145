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
    # Brand replies and private follow-ups are threaded into their cases.
    assert Message.objects.filter(direction=Direction.OUTBOUND).exists()
    assert Message.objects.filter(direction=Direction.INBOUND, visibility=Visibility.PRIVATE).exists()
    events = InboundEvent.objects.count()
    load_demo()
    assert InboundEvent.objects.count() == events
