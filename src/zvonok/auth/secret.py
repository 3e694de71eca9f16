"""The node's own HMAC secret for development setups: ``<data_dir>/jwt-secret``.

Owns ``load_or_create_secret``. Imports nothing from zvonok. The file is created atomically
(``O_CREAT | O_EXCL``) with mode 0600 so no other local user can read it, holding 48 random bytes
encoded as URL-safe base64 (RFC 4648 §5), more than RFC 7518 §3.2 asks of an HS256 key.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from pathlib import Path

#: The name of the secret file inside the data dir.
SECRET_FILE = "jwt-secret"
#: How many random bytes a new secret holds.
SECRET_BYTES = 48
#: How often an empty file is re-read before giving up (20 ms apart).
READ_ATTEMPTS = 10


def load_or_create_secret(data_dir: Path) -> str:
    """Return the secret stored in ``data_dir``, creating the dir (0700) and file (0600) if needed.

    Raises ``ValueError`` if the file exists but is empty.
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = data_dir / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")
    with os.fdopen(fd, "w") as file:
        file.write(secret + "\n")
    return secret


def _read(path: Path) -> str:
    # Another process may have created the file an instant ago and not written it yet.
    for _ in range(READ_ATTEMPTS):
        secret = path.read_text().strip()
        if secret:
            return secret
        time.sleep(0.02)
    raise ValueError(f"{path} is empty; delete it to have a new secret created")
