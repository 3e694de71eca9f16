"""The real-client test harness: a real zvonok server, headless Chromium, Firefox ESR and aiortc
as call participants, and checks that media really arrives (see conftest.py for the fixtures).

Imports nothing at package level; the modules import only the standard library, pytest, the
client drivers (playwright, aiortc, websockets) and each other, never zvonok.
"""
