"""Collection checks: every test that starts a Celery worker carries the ``worker`` marker."""
from __future__ import annotations

import pytest

from tests.conftest import WORKER_FIXTURES, pytest_collection_modifyitems, starts_worker


def test_every_collected_test_that_starts_a_worker_is_marked_worker(request):
    """Over this session's collected tests (the whole suite when run as CI runs it)."""
    unmarked = [item.nodeid for item in request.session.items
                if starts_worker(item) and item.get_closest_marker("worker") is None]
    assert not unmarked, f"tests that start a worker without the worker marker: {unmarked}"


class _Item:
    """Just what the collection hook reads and writes of a pytest item."""

    def __init__(self, fixturenames, markers=()):
        self.fixturenames, self.markers = list(fixturenames), list(markers)

    def get_closest_marker(self, name):
        return next((m for m in self.markers if m.name == name), None)

    def add_marker(self, marker):
        self.markers.append(getattr(marker, "mark", marker))


@pytest.mark.parametrize("fixture", sorted(WORKER_FIXTURES))
def test_the_collection_hook_marks_a_test_using_a_worker_fixture(fixture):
    uses, plain, marked = _Item(["db", fixture]), _Item(["db", "client"]), _Item([fixture], [pytest.mark.worker.mark])
    pytest_collection_modifyitems(None, [uses, plain, marked])
    assert [m.name for m in uses.markers] == ["worker"]
    assert plain.markers == [] and [m.name for m in marked.markers] == ["worker"]
