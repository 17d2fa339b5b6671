"""Parameter types the commands share."""

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
