"""The token a running Lotus or Curio asks for on ``/remote``: where `rdmabench live` takes it from.

What both check (read from their source): every ``/remote`` request passes go-jsonrpc's ``auth.Handler``,
which takes ``Authorization: Bearer <JWT>`` and verifies it as an HS256 JWT; then the handler refuses with
401 unless the JWT's ``Allow`` claim holds ``"admin"``. Only the secret differs:

- Lotus (miner and lotus-worker): the miner's API secret (its keystore entry ``MF2XI2BNNJ3XILLQOJUXMYLUMU``,
  JSON ``{"Type": "jwt-hmac-secret", "PrivateKey": "<base64>"}``). ``lotus-miner auth create-token --perm
  admin`` prints such a token, with ``Allow: ["read", "write", "sign", "admin"]``; the miner's own
  ``$LOTUS_MINER_PATH/token`` is one too. A worker verifies with the miner, so the same token opens both.
- Curio: ``[Apis] StorageRPCSecret`` (base64) of its base config layer, which every Curio node shares.
  Curio has no command that prints a token; its nodes sign ``Allow: ["admin"]`` with that secret
  themselves. rdmabench does the same from ``--secret-file`` (see ``sign``).

Where the token comes from, in this order: ``--token-file PATH``; ``--secret-file PATH`` (a base64 secret, or
Lotus's keystore file itself: the token is then signed here, in memory, and never written anywhere);
``$RDMABENCH_LIVE_TOKEN``. Never from the command line, where ``ps`` shows it. A file that others may read
is refused, as Lotus keeps its own (mode 0600). A token file may hold the token alone or the
``TOKEN:/ip4/...`` form ``lotus-miner auth api-info --perm admin`` prints.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .auth import read_private
from .errors import RdmabenchError

ENV_TOKEN = "RDMABENCH_LIVE_TOKEN"
# what a token made by each carries: lotus-miner auth create-token --perm admin; Curio's deps.StorageAuth
ALLOW = {"lotus": ["read", "write", "sign", "admin"], "curio": ["admin"]}
_JWT = re.compile(r"\A[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\Z")
MIN_SECRET = 16  # bytes; Lotus's and Curio's are 32
HOW = {"lotus": "on the miner: `lotus-miner auth create-token --perm admin > ~/lotus-remote.token; "
                "chmod 600 ~/lotus-remote.token`, then --token-file ~/lotus-remote.token",
       "curio": "`curio config get base` shows [Apis] StorageRPCSecret: save that base64 value alone in a file "
                "(chmod 600) and give it as --secret-file"}


class TokenError(RdmabenchError):
    """No usable token; the message says how to make one and never shows the token or the secret."""


@dataclass(frozen=True)
class Credentials:
    token: str = field(repr=False)
    origin: str  # where it came from, for the record: never the token itself

    def scrub(self, text: str) -> str:
        """``text`` with the token (should it ever appear) replaced by <token>."""
        return text.replace(self.token, "<token>") if self.token else text


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(secret: bytes, allow: list[str]) -> str:
    """An HS256 JWT ``{"Allow": allow}`` signed with ``secret``, as Lotus's AuthNew and Curio's StorageAuth make one."""
    head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64url(json.dumps({"Allow": allow}, separators=(",", ":")).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64url(mac)}"


def _private_file(path: Path, what: str) -> bytes:
    return read_private(path, what, TokenError)


def _token(text: str, where: str, kind: str) -> str:
    value = text.strip()
    if ":/" in value:  # lotus-miner auth api-info: TOKEN:/ip4/10.0.0.5/tcp/2345/http
        value = value.split(":/", 1)[0]
    if not _JWT.match(value):
        raise TokenError(f"{where} does not hold a token (a JWT: three base64url parts joined by dots); "
                         f"make one {HOW[kind]}")
    return value


def _secret(data: bytes, path: Path) -> bytes:
    text = data.strip()
    if text.startswith(b"{"):  # Lotus's keystore entry itself
        try:
            text = json.loads(text)["PrivateKey"].encode()
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TokenError(f"{path} is JSON without a \"PrivateKey\" (Lotus's keystore entry has one)") from None
    try:
        secret = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise TokenError(f"{path} does not hold a base64 secret (Curio's StorageRPCSecret, or the PrivateKey of "
                         "Lotus's keystore entry MF2XI2BNNJ3XILLQOJUXMYLUMU)") from None
    if len(secret) < MIN_SECRET:
        raise TokenError(f"the secret in {path} is {len(secret)} bytes; Lotus's and Curio's are 32")
    return secret


def load(kind: str, token_file: Path | None = None, secret_file: Path | None = None,
         env: dict | None = None) -> Credentials:
    """The token for a ``kind`` ("lotus" or "curio") source, from the first place that has one (see above)."""
    env = os.environ if env is None else env
    if token_file and secret_file:
        raise TokenError("give --token-file or --secret-file, not both")
    if token_file:
        path = Path(token_file).expanduser()
        return Credentials(_token(_private_file(path, "token file").decode(errors="replace"), str(path), kind),
                           "--token-file")
    if secret_file:
        path = Path(secret_file).expanduser()
        return Credentials(sign(_secret(_private_file(path, "secret file"), path), ALLOW[kind]),
                           f"signed here from --secret-file, Allow {ALLOW[kind]}")
    if env.get(ENV_TOKEN):
        return Credentials(_token(env[ENV_TOKEN], f"${ENV_TOKEN}", kind), f"${ENV_TOKEN}")
    raise TokenError(f"no token for the {kind} /remote endpoint: set {ENV_TOKEN}, or give --token-file or "
                     f"--secret-file (never the token itself on the command line); make one {HOW[kind]}")
