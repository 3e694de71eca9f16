"""Fixtures shared by the media unit tests: ``each_ring`` runs a test once with the compiled
``PacketRing`` as every new producer layer's history (what a built node uses) and once with the
pure-Python ``PacketHistory`` (its reference, what a node without the extension uses)."""

from __future__ import annotations

import pytest

from zvonok.media.fastpath import native
from zvonok.media.forwarding import layers
from zvonok.media.forwarding.history import PacketHistory


@pytest.fixture(params=["compiled", "python"])
def each_ring(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The kind of ring the producers made in this test keep their packets in."""
    kind: str = request.param
    if kind == "compiled" and native is None:
        pytest.skip("the compiled fast path is not built")
    if kind == "python":
        monkeypatch.setattr(layers, "make_history", PacketHistory)
    return kind
