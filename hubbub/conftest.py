"""Fixtures every test gets."""

import pytest


@pytest.fixture(autouse=True)
def forget_per_process_memory():
    """Workers keep some state per process (noise memory, compiled playbooks, loaded models), keyed by
    database ids. Test databases hand the same ids out again, so each test starts with none of it."""
    from hubbub.connectors import noise
    from hubbub.listening import actions as listening
    from hubbub.playbook import actions as playbook_actions
    from hubbub.understanding import actions as understanding

    caches = [
        noise._memories,
        playbook_actions._compiled,
        understanding._loaded,
        listening._local.__dict__.setdefault("matchers", {}),
    ]
    for cache in caches:
        cache.clear()
    yield
    for cache in caches:
        cache.clear()
