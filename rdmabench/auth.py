"""Who may talk to our listeners: one shared secret, proven by an HMAC challenge-response.

Every listener rdmabench runs (`rdmabench serve`, the rdma transports' passive ends, the verbs
peer) asks each new connection to prove that it holds the cluster's shared secret before it
acts on anything that connection says. The secret itself never travels: each side proves it
knows it by an HMAC-SHA256 over two fresh nonces, so a recorded exchange is worth nothing.

    server -> client   {"type": "auth_challenge", "scheme": SCHEME, "nonce": SN}
    client -> server   {"type": "auth", "nonce": CN, "proof": HMAC(secret, "client|SN|CN")}
    server -> client   {"type": "auth_ok", "proof": HMAC(secret, "server|SN|CN")}
                       or {"type": "error", "message": ...} and the connection is closed

The client checks the server's proof too, so a client pointed at an impostor learns it at once.
Proofs are compared in constant time (``hmac.compare_digest``).

Where the secret comes from, first match wins:
    RDMABENCH_SECRET        the secret itself (an environment variable: `ps` does not show it)
    RDMABENCH_SECRET_FILE   a file holding it
    ~/.config/rdmabench/secret
It is never taken from the command line and never written into results. `rdmabench secret init`
writes a new random one (mode 0600); copy that file to every host of the cluster. A secret file
that others may read is refused, as ssh refuses such a key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Callable

from .errors import RdmabenchError

SCHEME = "rdmabench-hmac-sha256-1"
ENV_SECRET = "RDMABENCH_SECRET"
ENV_SECRET_FILE = "RDMABENCH_SECRET_FILE"
DEFAULT_FILE = Path("~/.config/rdmabench/secret")
MIN_SECRET = 16  # bytes
WAIT_S = 10.0  # how long a listener waits for a new connection's proof
_NONCE = re.compile(r"^[0-9a-f]{32}$")
_PROOF = re.compile(r"^[0-9a-f]{64}$")
HOW_TO = (f"set {ENV_SECRET}, point {ENV_SECRET_FILE} at a file holding it, or run `rdmabench secret init` "
          f"(writes {DEFAULT_FILE}) and copy that file to every host")


class AuthError(RdmabenchError):
    """No usable secret here, or the peer did not prove it holds ours."""


def default_file() -> Path:
    return DEFAULT_FILE.expanduser()


def load_secret() -> bytes:
    """The shared secret, from the environment or its file; AuthError saying how to set one if none."""
    value = os.environ.get(ENV_SECRET)
    if value is not None:
        return _checked(value.strip().encode(), f"${ENV_SECRET}")
    path = Path(os.environ[ENV_SECRET_FILE]).expanduser() if os.environ.get(ENV_SECRET_FILE) else default_file()
    if not os.environ.get(ENV_SECRET_FILE) and not path.exists():
        raise AuthError(f"no shared secret: rdmabench's listeners only talk to peers that hold one; {HOW_TO}")
    data = read_private(path, "shared secret" if not os.environ.get(ENV_SECRET_FILE)
                        else f"shared secret ({ENV_SECRET_FILE})")
    return _checked(data.strip(), str(path))


def read_private(path: Path, what: str, error: type[Exception] = AuthError) -> bytes:
    """A secret's file (``what`` names it in errors): a regular file only its owner can read, or ``error``
    saying what is wrong and how to fix it."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise error(f"the {what} {path} is not a file")
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"the {what} {path} does not exist") from None
    except OSError as err:
        raise error(f"cannot read the {what} {path}: {err.strerror or err}") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise error(f"the {what} {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
                    f"run `chmod 600 {path}`")
    return data


def _checked(secret: bytes, where: str) -> bytes:
    if len(secret) < MIN_SECRET:
        raise AuthError(f"the shared secret in {where} is {len(secret)} bytes; it needs at least {MIN_SECRET} "
                        "(`rdmabench secret init` makes a good one)")
    return secret


def new_secret() -> str:
    return secrets.token_hex(32)


def write_secret(path: Path, force: bool = False) -> Path:
    """Write a new random secret to ``path`` (mode 0600, temporary name then rename)."""
    path = Path(path).expanduser()
    if path.exists() and not force:
        raise AuthError(f"{path} exists already; keep it (every host must hold the same one) or pass --force")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (new_secret() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def _proof(secret: bytes, side: str, server_nonce: str, client_nonce: str) -> str:
    msg = f"{SCHEME}|{side}|{server_nonce}|{client_nonce}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def _matches(claimed, expected: str) -> bool:
    """Constant-time comparison of a proof that came off the wire (anything) with the expected one."""
    if not isinstance(claimed, str) or not _PROOF.match(claimed):
        return False
    return hmac.compare_digest(claimed.encode(), expected.encode())


def serve_handshake(send: Callable[[dict], None], recv: Callable[[], dict], secret: bytes, peer: str) -> None:
    """The listener's half: challenge, check the proof, prove ourselves. AuthError if the peer fails.

    On failure the peer has been told why (an ``error`` message); the caller closes the connection.
    ``recv`` must be bounded in time and size (the wire's own limits apply before any of this runs).
    """
    server_nonce = secrets.token_hex(16)
    send({"type": "auth_challenge", "scheme": SCHEME, "nonce": server_nonce})
    msg = recv()
    client_nonce = msg.get("nonce") if isinstance(msg, dict) else None
    if not isinstance(msg, dict) or msg.get("type") != "auth" or not isinstance(client_nonce, str) \
            or not _NONCE.match(client_nonce):
        kind = msg.get("type") if isinstance(msg, dict) else type(msg).__name__
        _refuse(send, f"the first message must be 'auth' (the shared-secret proof), not {kind!r}: "
                      "is the client an older rdmabench?")
        raise AuthError(f"{peer} did not authenticate (it opened with {kind!r}); connection refused")
    if not _matches(msg.get("proof"), _proof(secret, "client", server_nonce, client_nonce)):
        _refuse(send, f"authentication failed: your shared secret is not this host's ({HOW_TO})")
        raise AuthError(f"{peer} failed authentication (wrong or no shared secret); connection refused")
    send({"type": "auth_ok", "proof": _proof(secret, "server", server_nonce, client_nonce)})


def client_handshake(send: Callable[[dict], None], recv: Callable[[], dict], secret: bytes, peer: str) -> None:
    """The connecting side's half. AuthError if the listener refuses us or cannot prove itself."""
    msg = recv()
    if msg.get("type") == "error":
        raise AuthError(f"{peer} refused the connection: {msg.get('message')}")
    if msg.get("type") != "auth_challenge" or msg.get("scheme") != SCHEME or not isinstance(msg.get("nonce"), str):
        raise AuthError(f"{peer} did not ask for authentication ({msg.get('type')!r}): "
                        "use the same rdmabench version at both ends")
    client_nonce = secrets.token_hex(16)
    send({"type": "auth", "nonce": client_nonce, "proof": _proof(secret, "client", msg["nonce"], client_nonce)})
    reply = recv()
    if reply.get("type") == "error":
        raise AuthError(f"{peer} refused the connection: {reply.get('message')}")
    if reply.get("type") != "auth_ok" or not _matches(reply.get("proof"),
                                                      _proof(secret, "server", msg["nonce"], client_nonce)):
        raise AuthError(f"{peer} could not prove it holds our shared secret: it is not our rdmabench peer, "
                        f"or the two hosts hold different secrets ({HOW_TO})")


def _refuse(send: Callable[[dict], None], message: str) -> None:
    try:
        send({"type": "error", "message": message})
    except (OSError, RdmabenchError):
        pass  # it has gone already: nothing to tell
