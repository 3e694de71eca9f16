"""Operations: the admin REST API (``api``), call-lifecycle webhooks (``webhooks``) and the
``zvonok rooms`` / ``zvonok kick`` commands (``cli``). Imports ``rooms`` and ``metrics``; never
``signaling`` or ``media``."""
