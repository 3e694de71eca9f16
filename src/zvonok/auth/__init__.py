"""Authentication: JWT verification (``tokens``) and the node's development secret (``secret``).

Imports nothing above it (no ``signaling``, ``rooms``, ``media``, ``store``, ``cluster``); only
``auth.tokens`` imports PyJWT.
"""
