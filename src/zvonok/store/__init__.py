"""Membership backends: who may enter ``chat:<id>`` / ``group:<id>``.

``base`` holds the ``MembershipStore`` protocol and ``create_store``; ``sql``, ``http`` and
``claims`` are the three backends. Imports ``auth.tokens.Grants`` only; never ``signaling``,
``rooms``, ``media`` or ``cluster``.
"""
