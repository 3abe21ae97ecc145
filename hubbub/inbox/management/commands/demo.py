from django.core.management.base import BaseCommand

from hubbub.demo import DEMO_PASSWORD, DEMO_USERS, VIPS, load_demo


class Command(BaseCommand):
    help = "Load the demo: three brands, their teams and a morning of customer posts (then run the worker)."

    def handle(self, **options):
        organizations = load_demo()
        self.stdout.write(
            f"Demo loaded: {', '.join(o.name for o in organizations)}. "
            f"Users {', '.join(u for u, _, _ in DEMO_USERS)}, password {DEMO_PASSWORD}. "
            f"VIP customers (the starter playbook's VIP rule): {', '.join(VIPS)}."
        )
