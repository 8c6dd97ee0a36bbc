"""Mosquitto-compatible password hashing, so provisioning needs no ``mosquitto_passwd``.

Mosquitto 2.x stores one ``username:$7$<iterations>$<b64 salt>$<b64 hash>``
line per user: PBKDF2-HMAC-SHA512, 101 iterations, a 12-byte salt and a
64-byte derived key, both in standard base64 with padding (checked against
``mosquitto_passwd -b`` of Mosquitto 2.0.11). Writing the file ourselves lets
``camperhub broker add-camper`` and the test fixtures run where only the
broker binary is installed, and keeps the password off any command line
(where ``ps`` would show it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

#: Mosquitto's default PBKDF2 iteration count (``mosquitto_passwd`` 2.x).
DEFAULT_ITERATIONS = 101
SALT_BYTES = 12
HASH_BYTES = 64
#: Mode of the password file: the broker (often running as root, or with the
#: file's group) reads it; nobody else should see even the hashes.
PASSWD_FILE_MODE = 0o640


def hash_password(password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None) -> str:
    """The ``$7$...`` hash of ``password`` (without the ``username:`` prefix).

    A fresh random salt is drawn unless one is given (tests pass one to get
    a reproducible string).
    """
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, HASH_BYTES)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded`` (a hash, or a whole ``user:hash`` line).

    Accepts Mosquitto's ``$7$`` (PBKDF2-SHA512) and legacy ``$6$`` (salted
    SHA512) forms; anything malformed is simply False. The final comparison
    is constant-time so that timing does not reveal how much of a guess matched.
    """
    encoded = encoded.strip()
    if not encoded.startswith("$") and ":" in encoded:
        encoded = encoded.split(":", 1)[1]
    parts = encoded.split("$")
    try:
        if len(parts) == 5 and parts[0] == "" and parts[1] == "7":
            iterations = int(parts[2])
            salt, expected = _unb64(parts[3]), _unb64(parts[4])
            if iterations < 1 or not expected:
                return False
            actual = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, len(expected))
        elif len(parts) == 4 and parts[0] == "" and parts[1] == "6":
            salt, expected = _unb64(parts[2]), _unb64(parts[3])
            actual = hashlib.sha512(password.encode("utf-8") + salt).digest()
        else:
            return False
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(actual, expected)


def generate_password() -> str:
    """A new random password: 18 bytes from ``secrets``, 24 URL-safe characters.

    URL-safe so that it can sit in ``mqtt://user:pass@host`` without escaping.
    """
    return secrets.token_urlsafe(18)


def set_password_line(passwd_file: Path, username: str, password: str) -> None:
    """Add ``username`` to ``passwd_file`` or replace its line, atomically.

    The new content is written to a temporary file in the same folder and
    renamed over the old one, so the broker never reads half a file. Other
    users' lines are kept as they are. The password itself is never logged.
    """
    _check_username(username)
    passwd_file = Path(passwd_file)
    line = f"{username}:{hash_password(password)}"
    lines: list[str] = []
    if passwd_file.exists():
        lines = [
            old
            for old in passwd_file.read_text(encoding="utf-8").splitlines()
            if old.strip() and old.split(":", 1)[0] != username
        ]
    lines.append(line)
    write_atomic(passwd_file, "\n".join(lines) + "\n", PASSWD_FILE_MODE)


def write_atomic(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` with ``text`` via a same-folder temp file and rename, with ``mode``.

    Ownership of an existing file is kept when we may (root provisioning a
    file owned by the ``mosquitto`` group), so the broker can still read it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, mode)
        if path.exists():
            st = path.stat()
            try:
                os.chown(tmp_name, st.st_uid, st.st_gid)
            except PermissionError:
                pass
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _check_username(username: str) -> None:
    # A colon or line break would corrupt the file; Mosquitto forbids both.
    if not username or any(c in username for c in ":\r\n") or username != username.strip():
        raise ValueError(f"invalid MQTT username {username!r}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)
