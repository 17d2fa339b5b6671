"""The far end of a local run, as test_far_end starts it: rdmabench.perf.far_end.main in a process of its
own, on the test's fake sysfs tree and with test_perf_protocol's stand-in engine (no RDMA here).

usage: python far_end_stub.py SYSFS_ROOT NET_ROOT --device NAME [--gid-index N]"""
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from rdmabench import devices  # noqa: E402
from rdmabench.perf import engine, far_end  # noqa: E402
from test_perf_protocol import FakeEndpoint  # noqa: E402

root, net = Path(sys.argv[1]), Path(sys.argv[2])
devices.SYSFS_ROOT, devices.NET_ROOT = root, net  # as conftest's sysfs_with does in a test's own process
for fn in (devices.describe, devices.discover, devices.require, devices.device_names):
    fn.__defaults__ = (root,)
devices.choose.__defaults__ = (None, True, root)
engine.module = lambda name: types.SimpleNamespace(open_endpoint=lambda **spec: FakeEndpoint(**spec))
sys.exit(far_end.main(sys.argv[3:]))
