"""zvonok: a calls server for messengers — WebSocket signaling plus a WebRTC SFU.

Layers import one way: ``signaling`` → ``rooms`` → ``media``. ``auth``, ``store`` and
``cluster`` are interfaces chosen at start-up in ``app``.
"""

__version__ = "0.1.0"
