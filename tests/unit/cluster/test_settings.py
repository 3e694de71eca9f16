"""Cluster settings (issue 14): the default needs no Redis, the ``redis`` backend needs a URL or
Sentinels with a master name, a URL's password never shows, and ``node_id`` defaults to
hostname + HTTP port."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from pydantic import ValidationError

from zvonok.cluster.settings import SENTINEL_PORT, parse_sentinel, redact_url
from zvonok.config import Settings

SECRET = "s3cr3t-pass"


def test_the_default_is_local_and_loads_no_redis_client() -> None:
    settings = Settings()
    assert settings.cluster_backend == "local"
    probe = "import sys, zvonok.config; zvonok.config.Settings(); print('redis' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_redis_needs_a_url_or_sentinels() -> None:
    with pytest.raises(ValidationError, match="needs redis_url"):
        Settings(cluster_backend="redis")
    with pytest.raises(ValidationError, match="needs redis_master_name"):
        Settings(cluster_backend="redis", redis_sentinels=["127.0.0.1:26379"])
    with pytest.raises(ValidationError, match="not both"):
        Settings(
            redis_url="redis://127.0.0.1:6379/0",
            redis_sentinels=["127.0.0.1:26379"],
            redis_master_name="m",
        )
    ok = Settings(
        cluster_backend="redis", redis_sentinels=["10.0.0.1", "[::1]:26380"], redis_master_name="m"
    )
    assert [parse_sentinel(s) for s in ok.redis_sentinels] == [
        ("10.0.0.1", SENTINEL_PORT),
        ("::1", 26380),
    ]


@pytest.mark.parametrize(
    "url",
    ["http://h:1/", "redis://", f"redis://:{SECRET}@h:99999/0", f"redis://:{SECRET}@h/zero"],
)
def test_a_bad_url_is_refused_without_showing_it(url: str) -> None:
    with pytest.raises(ValidationError) as error:
        Settings(cluster_backend="redis", redis_url=url)
    assert SECRET not in str(error.value)
    assert "redis_url" in str(error.value)


def test_a_password_never_shows() -> None:
    url = f"rediss://user:{SECRET}@redis.internal:6380/2"
    settings = Settings(cluster_backend="redis", redis_url=url)
    assert settings.redis_url == url
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    assert redact_url(url) == "rediss://user:***@redis.internal:6380/2"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"
    sentinel = Settings(redis_sentinels=["h:1"], redis_master_name="m", redis_password=SECRET)
    assert SECRET not in repr(sentinel)
    with pytest.raises(ValidationError, match="redis_password is for redis_sentinels"):
        Settings(redis_url="redis://h:1/0", redis_password=SECRET)


@pytest.mark.parametrize("entry", ["", "h:port", "h:0", "[::1", "a b:1"])
def test_a_bad_sentinel_is_refused(entry: str) -> None:
    with pytest.raises(ValidationError, match="redis_sentinels entry"):
        Settings(redis_sentinels=[entry], redis_master_name="m")


def test_node_id_defaults_to_hostname_and_port() -> None:
    assert Settings(port=8082).cluster_node_id.endswith(":8082")
    assert Settings(port=8082).cluster_node_id.startswith(socket.gethostname()[:20].split(".")[0])
    assert Settings(node_id="n1").cluster_node_id == "n1"
    with pytest.raises(ValidationError, match="node_id"):
        Settings(node_id="has space")
