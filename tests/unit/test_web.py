"""The demo page, SDK and development routes of ``zvonok.web`` with fake callables."""

from __future__ import annotations

import re

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from zvonok.errors import StoreUnavailable
from zvonok.web import parse_room, parse_user_id, static_text, web_routes


class FakeDev:
    """Fake ``issue_dev_token`` / ``dev_ensure_member`` that record their calls."""

    def __init__(self) -> None:
        self.issued: list[str] = []
        self.members: list[tuple[str, str, str]] = []
        self.fail: Exception | None = None

    def issue(self, user_id: str) -> str:
        if isinstance(self.fail, ValueError):
            raise self.fail
        self.issued.append(user_id)
        return f"token-for-{user_id}"

    async def ensure(self, kind: str, room_id: str, user_id: str) -> None:
        if self.fail is not None:
            raise self.fail
        self.members.append((kind, room_id, user_id))


def client(dev_mode: bool, fake: FakeDev | None = None) -> TestClient:
    fake = fake or FakeDev()
    routes = web_routes(
        dev_mode=dev_mode,
        issue_dev_token=fake.issue if dev_mode else None,
        dev_ensure_member=fake.ensure if dev_mode else None,
    )
    return TestClient(Starlette(routes=routes), base_url="http://127.0.0.1:8080")


def test_sdk_is_served_as_javascript() -> None:
    response = client(False).get("/sdk/zvonok.js")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "export class ZvonokCall" in response.text


def test_page_and_static_files() -> None:
    c = client(False)
    page = c.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/demo.js">' in page.text
    script = c.get("/static/demo.js")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert 'from "/sdk/zvonok.js"' in script.text
    assert c.get("/static/demo.css").headers["content-type"] == "text/css; charset=utf-8"
    assert c.get("/static/index.html").status_code == 404
    assert c.get("/static/..%2Fweb.py").status_code == 404


def test_page_uses_no_external_resources() -> None:
    external = re.compile(r"""(src=|href=|url\(|from |import\(|@import)\s*["']?(https?:)?//""")
    for name in ("index.html", "demo.js", "demo.css", "zvonok.js"):
        text = static_text(name)
        assert external.search(text) is None, name
        assert 'fetch("http' not in text and "//fonts." not in text, name


def test_config_tells_the_mode() -> None:
    assert client(True).get("/demo/config").json() == {"mode": "dev"}
    assert client(False).get("/demo/config").json() == {"mode": "prod"}


def test_dev_token() -> None:
    fake = FakeDev()
    response = client(True, fake).post("/dev/token", json={"userId": "alice"})
    assert response.status_code == 200
    assert response.json() == {"token": "token-for-alice"}
    assert fake.issued == ["alice"]


def test_dev_join_ensures_membership() -> None:
    fake = FakeDev()
    c = client(True, fake)
    response = c.post("/dev/join", json={"userId": "bob", "kind": "chat", "roomId": "7"})
    assert response.status_code == 200
    assert response.json() == {"userId": "bob", "kind": "chat", "roomId": "7"}
    assert c.post("/dev/join", json={"userId": "bob", "kind": "group", "roomId": 12}).is_success
    assert fake.members == [("chat", "7", "bob"), ("group", "12", "bob")]


def test_dev_join_conflict_and_store_down() -> None:
    fake = FakeDev()
    c = client(True, fake)
    fake.fail = ValueError("chat 1 already has two members")
    response = c.post("/dev/join", json={"userId": "carol", "kind": "chat", "roomId": "1"})
    assert response.status_code == 409
    assert response.json() == {"error": "conflict", "message": "chat 1 already has two members"}
    fake.fail = StoreUnavailable("down")
    response = c.post("/dev/join", json={"userId": "carol", "kind": "chat", "roomId": "1"})
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/dev/token", {}, "userId must be"),
        ("/dev/token", {"userId": ""}, "userId must be"),
        ("/dev/token", {"userId": "a" * 65}, "userId must be"),
        ("/dev/token", {"userId": "al ice"}, "userId must be"),
        ("/dev/token", {"userId": 5}, "userId must be"),
        ("/dev/join", {"userId": "a", "kind": "room", "roomId": "1"}, "kind must be"),
        ("/dev/join", {"userId": "a", "kind": "chat", "roomId": "a.b"}, "roomId must be"),
        ("/dev/join", {"userId": "a", "kind": "chat", "roomId": ""}, "roomId must be"),
        ("/dev/join", {"userId": "a", "kind": "chat", "roomId": True}, "roomId must be"),
        ("/dev/join", {"userId": "a", "kind": "chat"}, "roomId must be"),
        ("/dev/join", ["a"], "body must be a JSON object"),
    ],
)
def test_dev_bad_input_is_400(path: str, body: object, message: str) -> None:
    fake = FakeDev()
    response = client(True, fake).post(path, json=body)
    assert response.status_code == 400
    assert response.json()["error"] == "bad-request"
    assert message in response.json()["message"]
    assert fake.issued == [] and fake.members == []


def test_dev_body_not_json_or_too_large() -> None:
    c = client(True)
    json_type = {"Content-Type": "application/json"}
    response = c.post("/dev/token", content=b"{nope", headers=json_type)
    assert response.status_code == 400
    assert response.json()["message"] == "body is not JSON"
    response = c.post("/dev/token", content=b"{" + b" " * 5000 + b"}", headers=json_type)
    assert response.status_code == 400
    assert "larger than" in response.json()["message"]


def test_production_mode_has_no_dev_routes() -> None:
    c = client(False)
    assert c.post("/dev/token", json={"userId": "alice"}).status_code == 404
    assert (
        c.post("/dev/join", json={"userId": "a", "kind": "chat", "roomId": "1"}).status_code == 404
    )
    assert c.get("/").status_code == 200


def test_dev_mode_needs_its_callables() -> None:
    with pytest.raises(ValueError, match="dev_mode needs issue_dev_token and dev_ensure_member"):
        web_routes(dev_mode=True, issue_dev_token=None, dev_ensure_member=None)


def test_parsers() -> None:
    assert parse_user_id({"userId": "a.b-c_1"}) == "a.b-c_1"
    assert parse_room({"kind": "group", "roomId": 3}) == ("group", "3")
    with pytest.raises(ValueError, match="kind must be 'chat' or 'group'"):
        parse_room({"kind": None, "roomId": "1"})


def test_unknown_static_file() -> None:
    with pytest.raises(ValueError, match="unknown static file 'x.js'"):
        static_text("x.js")


def test_dev_token_without_a_secret_is_503() -> None:
    fake = FakeDev()
    fake.fail = ValueError("dev tokens need an HS256 secret")
    response = client(True, fake).post("/dev/token", json={"userId": "alice"})
    assert response.status_code == 503
    assert response.json() == {"error": "unavailable", "message": "dev tokens need an HS256 secret"}


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
     "multipart/form-data; boundary=x", "application/jsonx", "application/json-patch+json"],
)  # fmt: skip
def test_dev_endpoints_need_a_json_content_type(content_type: str | None) -> None:
    """A cross-site form or ``fetch`` with a CORS-simple type (no preflight) is refused: 415."""
    fake = FakeDev()
    headers = {"Content-Type": content_type} if content_type else {}
    c = client(True, fake)
    for path, body in (("/dev/token", b'{"userId": "eve"}'), ("/dev/join", b'{"userId": "eve"}')):
        response = c.post(path, content=body, headers=headers)
        assert response.status_code == 415, (path, content_type)
        assert response.json()["error"] == "unsupported-media-type"
    assert fake.issued == [] and fake.members == []


def test_dev_endpoints_accept_json_with_parameters() -> None:
    headers = {"Content-Type": "Application/JSON; charset=utf-8"}
    response = client(True).post("/dev/token", content=b'{"userId": "al"}', headers=headers)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "host",
    ["attacker.example", "attacker.example:8080", "127.0.0.1.nip.io:8080", "localhost.evil",
     "192.168.1.5:8080", "0.0.0.0:8080", "", "127.0.0.1@evil:80", "[::2]:8080"],
)  # fmt: skip
def test_dev_endpoints_refuse_a_foreign_host(host: str) -> None:
    """DNS rebinding: the browser sends the attacker's name as ``Host``; refused with 403."""
    fake = FakeDev()
    response = client(True, fake).post("/dev/token", json={"userId": "eve"}, headers={"Host": host})
    assert response.status_code == 403
    assert response.json() == {
        "error": "forbidden",
        "message": "the Host header is not a loopback name or address",
    }
    assert fake.issued == []


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:8080", "localhost:8080", "LOCALHOST", "127.1.2.3", "[::1]:8080", "localhost."],
)
def test_dev_endpoints_take_any_loopback_host(host: str) -> None:
    response = client(True).post("/dev/token", json={"userId": "al"}, headers={"Host": host})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("host", "origin", "status"),
    [
        ("127.0.0.1:8080", "http://127.0.0.1:8080", 200),
        ("localhost:8080", "http://localhost:8080", 200),
        ("[::1]:8080", "http://[::1]:8080", 200),
        ("localhost", "http://localhost", 200),
        ("127.0.0.1:8080", "https://attacker.example", 403),
        ("127.0.0.1:8080", "http://attacker.example:8080", 403),
        ("127.0.0.1:8080", "null", 403),
        ("127.0.0.1:8080", "http://localhost:8080", 403),  # another origin, though loopback
        ("127.0.0.1:8080", "http://127.0.0.1:9999", 403),  # another local app's page
        ("127.0.0.1:8080", "file://", 403),
        ("127.0.0.1:8080", "http://127.0.0.1:notaport", 403),
    ],
)
def test_dev_endpoints_refuse_a_cross_site_origin(host: str, origin: str, status: int) -> None:
    fake = FakeDev()
    response = client(True, fake).post(
        "/dev/join",
        json={"userId": "eve", "kind": "chat", "roomId": "1"},
        headers={"Host": host, "Origin": origin},
    )
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["message"] == "cross-site Origin"
        assert fake.members == []


def test_the_public_routes_are_not_guarded() -> None:
    c = client(True)
    headers = {"Host": "attacker.example", "Origin": "https://attacker.example"}
    assert c.get("/", headers=headers).status_code == 200
    assert c.get("/demo/config", headers=headers).json() == {"mode": "dev"}
