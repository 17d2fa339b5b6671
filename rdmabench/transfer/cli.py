"""The body of `rdmabench run --config`: load, connect, run with progress, save, print."""

from __future__ import annotations

import dataclasses
import socket
import sys
from pathlib import Path

import click

from .. import config, devices, transports
from ..workloads import sector
from ..errors import RdmabenchError
from ..wire import Channel
from . import efficiency, runner
from .hosts import LocalHost, RemoteHost


def needing(scenario: config.Scenario, capability: str) -> list[str]:
    """The scenario's transports that declare ``capability`` (e.g. "needs_device")."""
    return [t for t in scenario.transports if getattr(transports.capabilities(t), capability)]


def _device(name: str | None, gid_index: int | None) -> dict:
    """The RDMA device for the transports that need one (the capability needs_device)."""
    dev = devices.choose(name, required=False)  # two devices and none named: an error, as for `run`
    if dev is None:
        return {}
    return {"device": dev.name, "gid_index": gid_index if gid_index is not None else dev.ports[0].recommended_gid_index}


def run_opts(opts: dict, peer, transfer: dict | None = None) -> dict:
    """The options every transfer of the run gets: the device's, the [transfer] table's, where the peer is."""
    return {**(transfer or {}), **opts, "peer": f"{peer[0]}:{peer[1]}" if peer else "local", "host": socket.gethostname()}


def overridden(scenario: config.Scenario, scale: str | None, repetitions: int | None,
               folder: Path | None) -> config.Scenario:
    """The scenario with the command line's --scale (multiplies each shape's), --repetitions and --dir."""
    changes = {}
    if scale is not None:
        try:
            factor = sector.parse_scale(scale)
        except sector.WorkloadError as err:
            raise click.BadParameter(str(err), param_hint="--scale") from None
        changes["shapes"] = tuple(dataclasses.replace(s, scale=s.scale * factor) for s in scenario.shapes)
    if repetitions is not None:
        changes["repetitions"] = repetitions
    if folder is not None:
        changes.update(storage_dir=Path(folder) / "storage", work_dir=Path(folder) / "work")
    return dataclasses.replace(scenario, **changes) if changes else scenario


def run_scenario(path: Path, device: str | None, gid_index: int | None, peer: tuple[str, int] | None,
                 wait: float, output: Path | None, scale: str | None = None, repetitions: int | None = None,
                 folder: Path | None = None) -> None:
    scenario = overridden(config.load(path), scale, repetitions, folder)  # a bad file is refused before anything runs
    rdma = needing(scenario, "needs_device")
    opts = _device(device, gid_index) if (rdma or device) else {}
    if rdma and not opts:
        raise RdmabenchError(f"{path}: transports {', '.join(rdma)} need an RDMA device and this host has none")
    chan = None
    try:
        if peer:
            chan = Channel.connect(*peer, "transfer", timeout=10, wait=wait)
            hello = chan.greeting
            peer_ctx = hello["context"]
            bind = chan.sock.getsockname()[0]  # this host's address on the path to the storage host
            storage = RemoteHost(chan, scenario.token)
            if needing(scenario, "needs_export"):
                # the storage host exports its serve root (`rdmabench.nfs.server start --export ROOT`)
                opts.update(server=peer[0], nfs_export=hello.get("root"))
        else:
            peer_ctx = None
            bind = scenario.http_bind
            storage = LocalHost("storage", scenario.storage_dir / "storage", scenario.storage_dir / "work", bind,
                                scenario.token, opts)
        worker = LocalHost("worker", scenario.work_dir / "storage", scenario.work_dir / "work", bind, scenario.token,
                           opts)
        total = len(scenario.plan())
        options = run_opts(opts, peer, scenario.transfer)
        # before any transfer, on a quiet link: the raw bandwidth the rdma rows are held against
        raw = efficiency.measure(efficiency.planned((t for _, _, t, _, _ in scenario.plan()), options),
                                 opts.get("device"), opts.get("gid_index"), peer, wait=wait,
                                 progress=lambda msg: click.echo(f"[raw] {msg}", err=True))
        for note in raw.failed.values():
            click.echo(f"warning: {note}; the rdma rows will have no raw figure", err=True)
        for note in raw.stalled_once.values():
            click.echo(f"warning: {note}", err=True)
        if sys.stderr.isatty():
            with click.progressbar(length=total, label="transfers", file=sys.stderr, show_pos=True,
                                   item_show_func=lambda x: x) as bar:
                result = runner.run(scenario, worker, storage, device=opts.get("device"), peer_context=peer_ctx,
                                    options=options, raw=raw, progress=lambda msg, i, n: bar.update(1 if i else 0, msg))
        else:  # a log, CI, the lab's console: one line per transfer
            result = runner.run(scenario, worker, storage, device=opts.get("device"), peer_context=peer_ctx,
                                options=options, raw=raw,
                                progress=lambda msg, i, n: click.echo(f"[{i + 1}/{n}] {msg}", err=True))
        if chan:
            chan.send("bye")
    finally:
        if chan:
            chan.close()
    out = result.publish(output)
    click.echo(runner.render(result.rows))
    click.echo(f"\nenvironment: {result.context['environment']}")
    click.echo(f"result file: {out}")
