"""Parameter types and parsers the commands share: sizes, test names, HOST[:PORT]."""

from __future__ import annotations

import click

from .units import parse_size


class SizeType(click.ParamType):
    """A size as people write it (4096, 64K, 1MiB, 4G): bytes, or a message saying what is accepted."""

    name = "size"

    def convert(self, value, param, ctx):
        try:
            return parse_size(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


SIZE = SizeType()


def names_option(known, all_word: str | None = None):
    """A click callback for -t/--tests: repeat the option, or separate names with commas, or both.
    ``known``: the names, or a function giving them (read when the option is parsed)."""

    def parse(ctx, param, values):
        names_known = known() if callable(known) else known
        names = [n.strip() for v in (values if isinstance(values, (list, tuple)) else [values])
                 for n in str(v).split(",") if n.strip()]
        unknown = [n for n in names if n not in names_known and n != all_word]
        if unknown or not names:
            raise click.BadParameter(f"{', '.join(unknown) or 'nothing'}: choose from {', '.join(names_known)}"
                                     + (f" or {all_word}" if all_word else ""), ctx, param)
        chosen = list(names_known) if all_word in names else names
        return list(dict.fromkeys(chosen))  # in the order given, each once

    return parse


def parse_peer(text: str) -> tuple[str, int]:
    from .wire import DEFAULT_PORT

    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if not host:
        host, port = text, ""
    try:
        return host, int(port) if port else DEFAULT_PORT
    except ValueError:
        raise click.BadParameter(f"{text!r}: use HOST or HOST:PORT", param_hint="--peer") from None
