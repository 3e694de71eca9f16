"""Authentication: JWT verification (``tokens``), the node's development secret (``secret``) and
time-limited TURN credentials for clients (``turn``).

Imports nothing above it (no ``signaling``, ``rooms``, ``media``, ``store``, ``cluster``); only
``auth.tokens`` imports PyJWT.
"""
