"""Raw HTTP/1.1 for tests of our servers and the Lotus stand-in: a request sent exactly as written (paths
never normalised, any method, any header), its answer split, and a chunked body undone."""

import socket


def ask(port: int, method: str, path: str, headers: str = "") -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection (`headers`: extra header lines, each ending in CRLF);
    returns (status, headers with lower-case names, body as sent)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(1 << 16):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    return int(lines[0].split()[1]), {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}, body


def dechunk(body: bytes) -> bytes:
    out, i = b"", 0
    while True:
        j = body.index(b"\r\n", i)
        n = int(body[i:j], 16)
        if n == 0:
            return out
        out, i = out + body[j + 2:j + 2 + n], j + 2 + n + 2
