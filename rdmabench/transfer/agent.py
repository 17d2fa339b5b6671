"""The serve side of a transfer: `rdmabench serve` answers "xfer" messages with a LocalHost."""

from __future__ import annotations

from pathlib import Path

from ..errors import RdmabenchError
from .hosts import LocalHost

OPS = ("generate", "start_passive", "stop_passive", "move", "meter_start", "meter_stop", "cleanup")


class Agent:
    def __init__(self, root: Path, bind: str, device: str, gid_index: int | None):
        self.root, self.bind, self.device, self.gid_index = Path(root), bind, device, gid_index
        self.host: LocalHost | None = None

    def handle(self, chan, msg: dict) -> None:
        op, args = msg.get("op"), msg.get("args") or {}
        if op not in OPS:
            chan.send("error", message=f"unknown transfer operation {op!r}")
            return
        if self.host is None:
            self.host = LocalHost("storage", self.root / "storage", self.root / "work", self.bind,
                                  token=msg.get("token", "rdmabench"),
                                  options={"device": self.device, "gid_index": self.gid_index})
        if "token" in msg:
            self.host.token = msg["token"]
        try:
            value = getattr(self.host, op)(**args)
        except (RdmabenchError, OSError, ValueError) as err:
            chan.send("error", message=f"{op} on {self.bind} failed: {err}")
            return
        chan.send("xfer_result", value=value)

    def close(self) -> None:
        if self.host:
            self.host.close()
            self.host = None
