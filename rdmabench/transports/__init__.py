"""Ways of moving sector data, one module each, all behind transports.base.Transport."""

from .base import (KNOWN, Capabilities, Context, Item, PassiveEnd, TransferRecord, Transport, TransportError,
                   capabilities, get, known, lookup, names, register)

__all__ = ["KNOWN", "Capabilities", "Context", "Item", "PassiveEnd", "TransferRecord", "Transport", "TransportError",
           "capabilities", "get", "known", "lookup", "names", "register"]
