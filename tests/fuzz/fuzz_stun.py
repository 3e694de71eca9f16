"""Atheris harness: STUN on the media port and the ICE-lite agent (``zvonok.media.transport``).

Two paths per input. (1) The datagram goes through the worker socket's demultiplexer
(``MediaUdpProtocol.datagram_received``) with one live session registered under ufrag ``zvnk``
whose ``handle_stun`` is a real ``IceLiteAgent``: nothing may escape at all, and an address may
only be bound after a check that authenticates with the session's password. (2) With the first
byte's top bit set, the rest drives a structured binding request (USERNAME, PRIORITY,
USE-CANDIDATE, ICE-CONTROLLING/CONTROLLED) signed with the right or a wrong password, so the
agent's role-conflict, nomination and restart logic is reached: ``BindingRequest.parse`` and
``IceLiteAgent.handle`` may only raise ``ValueError``, and a forged check is never accepted.
Run: ``python tests/fuzz/fuzz_stun.py [libFuzzer flags] [corpus dirs]``.
Imports atheris, aioice.stun (to build requests) and ``zvonok.media.transport`` only.
"""

from __future__ import annotations

import sys

import atheris
from aioice import stun

with atheris.instrument_imports(include=["zvonok"]):
    from zvonok.media.transport.ice import Address, BindingRequest, IceLiteAgent, IceParameters
    from zvonok.media.transport.udp import MediaUdpProtocol

LOCAL = IceParameters("zvnk", "zvonokfixturepassword1234")
ADDR: Address = ("127.0.0.1", 52397)


class AgentEndpoint:
    """A session as the socket sees it: STUN goes to a real ICE-lite agent."""

    def __init__(self) -> None:
        self.agent = IceLiteAgent(LOCAL)
        self.accepted = 0

    def handle_stun(self, request: BindingRequest, addr: Address) -> bool:
        try:
            outcome = self.agent.handle(request, addr, now=1.0)
        except ValueError:
            return False
        if outcome.accepted:
            request.verify(LOCAL.pwd)  # accepted implies authenticated
            self.accepted += 1
        return outcome.accepted

    def handle_dtls(self, data: bytes, addr: Address) -> None:
        pass

    def handle_media(self, data: bytes, addr: Address) -> None:
        pass


def through_socket(data: bytes) -> None:
    udp = MediaUdpProtocol()
    endpoint = AgentEndpoint()
    udp.register_ufrag(LOCAL.ufrag, endpoint)
    udp.datagram_received(data, ADDR)
    bound = udp.endpoint_for(ADDR) is not None
    assert bound == (endpoint.accepted > 0), "address bound without an authenticated check"


def structured(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    flags = fdp.ConsumeInt(1)
    message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    local = LOCAL.ufrag if flags & 1 else fdp.ConsumeUnicodeNoSurrogates(8)
    message.attributes["USERNAME"] = f"{local}:{fdp.ConsumeUnicodeNoSurrogates(8)}"
    message.attributes["PRIORITY"] = fdp.ConsumeInt(4) & 0xFFFFFFFF
    if flags & 2:
        message.attributes["USE-CANDIDATE"] = None
    if flags & 4:
        message.attributes["ICE-CONTROLLING"] = fdp.ConsumeInt(8) & (2**64 - 1)
    if flags & 8:
        message.attributes["ICE-CONTROLLED"] = fdp.ConsumeInt(8) & (2**64 - 1)
    pwd = LOCAL.pwd if flags & 16 else fdp.ConsumeUnicodeNoSurrogates(24)
    try:
        message.add_message_integrity(pwd.encode())
        message.add_fingerprint()
        raw = bytes(message)
    except (ValueError, UnicodeEncodeError, OverflowError):
        return  # aioice could not encode these attribute values: nothing to send
    agent = IceLiteAgent(LOCAL)
    if flags & 32:
        agent.restart()
    try:
        outcome = agent.handle(BindingRequest.parse(raw), ADDR, now=2.0)
    except ValueError:
        return
    assert pwd == LOCAL.pwd or not outcome.accepted, "forged check accepted"
    through_socket(raw)


def test_one_input(data: bytes) -> None:
    through_socket(data)
    if data and data[0] & 0x80:
        structured(data[1:])


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
