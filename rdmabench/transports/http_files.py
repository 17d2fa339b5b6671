"""rdmabench's extension of Lotus's fetch endpoint: a directory item's files, one request each.

Lotus serves a cache directory only as one tar stream (``GET /remote/{type}/{id}``), so its
client moves a directory over one TCP connection. To move the files of a directory at once
(``[transfer] parallel``) or one file over several connections (``streams``), the server
answers two more routes, under the same bearer token (http_server checks it, the type and the
sector id, and confines the item under the root before it calls ``answer``):

- ``GET /remote/{type}/{id}/``: the listing, ``application/json``:
  ``{"files": [{"name": "p_aux", "size": 64}, ...]}``: the item's top-level regular files,
  sorted by name, exactly what the tar route would carry (symlinks and subdirectories are left out);
- ``GET|HEAD /remote/{type}/{id}/{name}``: that one file, as a file item is served
  (Content-Length, a single Range, sendfile).

``name`` is taken as it comes (never percent-decoded) and must be a plain file name
(``[A-Za-z0-9_][A-Za-z0-9_.-]*``, at most 255 bytes: no slash, no ``..``, nothing hidden), else 400. It is
opened relative to the directory with ``O_NOFOLLOW`` (a symlink is refused with 400, whatever it
points to, and cannot be swapped in between a check and the open) and ``O_NONBLOCK`` (a FIFO
planted in the directory cannot stall the server); anything but a regular file is 400, a name
that is not there 404. A file item (not a directory) has no files: 400.
Lotus's own client never uses these routes; rdmabench's uses them only when parallel > 1 or
streams > 1 (transports/http_parallel.py).
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat

NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")  # used with fullmatch: no trailing newline slips by


def plain_name(name: str) -> bool:
    """A bare file name as Lotus's cache holds them; nothing that could name another place."""
    return bool(NAME.fullmatch(name)) and name not in (".", "..")


def listing(path: str) -> list[dict]:
    """The top-level regular files of a directory (no symlinks, no subdirectories), sorted by name."""
    out = []
    with os.scandir(path) as it:
        for e in it:
            if e.is_file(follow_symlinks=False):
                out.append({"name": e.name, "size": e.stat(follow_symlinks=False).st_size})
    return sorted(out, key=lambda f: f["name"])


def answer(handler, target: str, name: str, head: bool) -> None:
    """Serve ``name`` ("" for the listing) of the directory item at ``target`` (resolved and confined)."""
    if not os.path.isdir(target):
        if not os.path.exists(target):
            return handler._error(404, "no such item here")
        return handler._error(400, "bad request: not a directory item; only a directory's files are served one by one")
    if name == "":
        body = json.dumps({"files": listing(target)}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if not head:
            handler.wfile.write(body)
        return None
    if not plain_name(name):
        return handler._error(400, "bad request: a file of a directory item must be a plain file name")
    try:
        dfd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return handler._error(404, "no such item here")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
    except OSError as err:
        if err.errno == errno.ENOENT:
            return handler._error(404, "no such file in this directory item")
        if err.errno == errno.ELOOP:
            return handler._error(400, "bad request: a symlink, refused")
        return handler._error(400, f"bad request: cannot open it ({err.strerror})")
    finally:
        os.close(dfd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return handler._error(400, "bad request: not a regular file")
    with os.fdopen(fd, "rb") as f:
        return handler._send_open(f, st.st_size, head)
