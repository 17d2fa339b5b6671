"""Go's time.Duration strings (what Lotus's job tracker writes) to seconds, and seconds back to text.

Go prints a Duration as `72h3m0.5s`, `2m1.638826486s`, `12.745323ms`, `688.697µs`, `15ns`, or `0s`, and
time.ParseDuration reads any sequence of `<decimal><unit>` with units ns, us, µs (U+00B5), μs (U+03BC),
ms, s, m, h. A job never lasts a negative time, so a sign-led duration is malformed here, unlike in Go.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
       "m": 60_000_000_000, "h": 3_600_000_000_000}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string; ValueError naming the text otherwise."""
    s = text.strip()
    if s == "0":  # Go's one unit-less form
        return 0.0
    if not s:
        raise ValueError("empty duration")
    if s[0] in "+-":
        raise ValueError(f"{text!r}: a job duration cannot be signed")
    pos, total = 0, Decimal(0)
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m:
            raise ValueError(f"{text!r} is not a Go duration (like 2m1.5s, 12.7ms, 688.697µs, 1h2m3s)")
        try:
            total += Decimal(m.group(1)) * _NS[m.group(2)]
        except InvalidOperation:  # pragma: no cover: the regex admits only decimals
            raise ValueError(f"{text!r}: bad number {m.group(1)!r}") from None
        pos = m.end()
    return float(total / Decimal(1_000_000_000))


def format_seconds(seconds: float) -> str:
    """A duration as people read it: 3h02m, 12m05s, 2m01.6s, 7.25s, 12.7ms, 688µs."""
    if seconds != seconds:  # NaN
        return "-"
    if seconds < 0:
        return "-" + format_seconds(-seconds)
    if seconds == 0:
        return "0s"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g}µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    if seconds < 600:
        m, s = divmod(seconds, 60)
        return f"{int(m)}m{s:04.1f}s"
    if seconds < 3600:
        m, s = divmod(round(seconds), 60)
        return f"{m}m{s:02d}s"
    h, rest = divmod(round(seconds), 3600)
    return f"{h}h{rest // 60:02d}m"
