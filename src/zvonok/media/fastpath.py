"""Chooses between the compiled forwarding loop and its pure-Python reference.

Owns ``native``: the ``zvonok.media._fastpath`` extension module (``SendTarget``, ``Forwarder``,
``Fanout``; rewriting, SRTP protection and one ``sendmmsg`` per fan-out, see its C source), or
None when it is not built or ``ZVONOK_PURE_PYTHON=1`` is set. The pure-Python reference lives in
``forwarding/forwarder.py`` and ``transport/target.py``; both behave byte for byte the same and
the tests compare them. ``_fastpath.pyi`` types the compiled module. Must not import anything
from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations

import os
from types import ModuleType

from .packets.rtp import rewrite_rtp

#: ``ZVONOK_PURE_PYTHON=1``: the pure-Python reference on purpose, even when the module is built.
PURE_PYTHON = os.environ.get("ZVONOK_PURE_PYTHON", "") not in ("", "0")


def _load() -> ModuleType | None:
    if PURE_PYTHON:
        return None
    try:
        from . import _fastpath
    except ImportError:
        return None
    _fastpath.set_slow_rewrite(rewrite_rtp)
    module: ModuleType = _fastpath
    return module


#: The compiled module, or None (pure Python).
native: ModuleType | None = _load()
