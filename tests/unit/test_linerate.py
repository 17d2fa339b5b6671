"""The path's physical limit (rdmabench.linerate) on sysfs trees shaped like real NICs.

Where each shape comes from:
- ConnectX-5 MCX516A-CCAT: NVIDIA's product brief for the card: 100 GbE dual-port QSFP28, PCIe 3.0 x16.
  mlx5 shows the port's rate as "100 Gb/sec (4X EDR)" and the PCI device's link as "8.0 GT/s PCIe" and "16"
  (the kernel's Documentation/ABI/testing/sysfs-class-infiniband: ports/N/rate; sysfs-bus-pci:
  current_link_speed, current_link_width, max_link_speed, max_link_width).
- The same card in a slot wired x8 (a common riser): current_link_width "8", max_link_width "16".
- ConnectX-4 Lx MCX4121A-ACAT: its product brief: 25 GbE dual-port SFP28, PCIe 3.0 x8; rate "25 Gb/sec (1X EDR)".
- rxe over virtio-net, as in rdmabench's lab: no bus device of its own, the netdev's speed file reads -1
  (virtio and dummy report no speed: SPEED_UNKNOWN), and rxe's rate is the kernel's fallback "2.5 Gb/sec (1X SDR)".
"""

import pytest

from rdmabench import devices, linerate
from rdmabench.perf import table
from rdmabench.perf.client import with_line_rate
from rdmabench.results import row

MAPPED = "0000:0000:0000:0000:0000:ffff:0a00:0001"  # 10.0.0.1


def cx5(make, name="mlx5_0", width=16, rate="100 Gb/sec (4X EDR)", netdev="ens1f0np0", speed=100000, mtu=9000):
    make.netdev(netdev, mtu=mtu, speed=speed)
    make(name, gids=[(MAPPED, "RoCE v2", netdev)], rate=rate, pcie=("8.0 GT/s PCIe", width),
         pcie_max=("8.0 GT/s PCIe", 16 if width == 16 else 8 if rate.startswith("25") else 16), driver="mlx5_core")
    return devices.describe(name)


def test_the_82_byte_overhead_and_anchor_figures():
    assert linerate.PACKET_OVERHEAD == 82
    assert linerate.roce_goodput(100, 4096) == pytest.approx(98.04, abs=0.005)  # docs/anchors: 98.04 Gb/s
    assert linerate.roce_goodput(100, 1024) == pytest.approx(92.59, abs=0.005)  # and 92.59 Gb/s
    assert linerate.parse_rate("25 Gb/sec (1X EDR)") == 25.0 and linerate.parse_rate("garbage") is None
    assert [linerate.active_mtu_from_netdev(m) for m in (1500, 9000, 4200, 1000, None)] == [1024, 4096, 4096, 512, None]


def test_connectx5_gen3_x16_is_limited_by_roce_goodput(sysfs_with):
    dev = cx5(sysfs_with)
    dev.ports[0].active_mtu = 4096  # what verbs reports on a 9000-byte netdev
    line = linerate.of(dev, ib_root=sysfs_with.root, net_root=sysfs_with.net)
    assert line["port_gbps"] == 100.0 and line["netdev_gbps"] == 100.0
    assert line["roce_goodput_gbps"] == pytest.approx(98.037, abs=0.001)
    assert line["pcie"]["encoded_gbps"] == pytest.approx(126.03, abs=0.01)  # 8 GT/s x 16 x 128/130
    assert line["pcie_gbps"] == pytest.approx(115.2, abs=0.1)  # x 256/280, the TLP estimate
    assert (line["limited_by"], line["limit_gbps"]) == ("roce_goodput", line["roce_goodput_gbps"])
    assert line["mtu_from"] == "active MTU (verbs)"


def test_connectx5_in_an_x8_slot_is_limited_by_pcie(sysfs_with):
    line = linerate.of(cx5(sysfs_with, width=8), ib_root=sysfs_with.root, net_root=sysfs_with.net)
    assert line["mtu"] == 4096 and line["mtu_from"] == "inferred from netdev MTU 9000"
    assert line["pcie"]["encoded_gbps"] == pytest.approx(63.015, abs=0.001)  # the ~63 Gb/s usually quoted
    assert line["limited_by"] == "pcie" and line["limit_gbps"] == pytest.approx(57.6, abs=0.1)
    assert "PCIe 8 GT/s x8" in linerate.describe(line)


def test_connectx4_lx_25g_at_mtu_1500(sysfs_with):
    dev = cx5(sysfs_with, "mlx5_2", width=8, rate="25 Gb/sec (1X EDR)", netdev="ens2f0", speed=25000, mtu=1500)
    line = linerate.of(dev, ib_root=sysfs_with.root, net_root=sysfs_with.net)
    assert line["port_gbps"] == 25.0 and line["mtu"] == 1024
    assert line["limited_by"] == "roce_goodput" and line["limit_gbps"] == pytest.approx(25 * 1024 / 1106, abs=0.001)


def test_rxe_over_virtio_knows_no_limit(sysfs_with):
    sysfs_with.netdev("eth0", mtu=9000, speed=-1)
    sysfs_with("rxe0", gids=[(MAPPED, "RoCE v2", "eth0")], rate="2.5 Gb/sec (1X SDR)")
    dev = devices.describe("rxe0")
    line = linerate.of(dev, ib_root=sysfs_with.root, net_root=sysfs_with.net)
    assert line["soft_roce"] and line["port_gbps"] is None  # the kernel's made-up rate is not used
    assert line["limit_gbps"] is None and line["limited_by"] is None and line["pcie"] is None
    assert "reports no speed" in line["note"]
    sysfs_with.netdev("eth0", mtu=9000, speed=10000)  # a netdev that does report one: that is the limit
    line = linerate.of(dev, ib_root=sysfs_with.root, net_root=sysfs_with.net)
    assert line["limited_by"] == "roce_goodput" and line["limit_gbps"] == pytest.approx(10 * 4096 / 4178, abs=0.001)


def test_path_takes_the_slower_end_and_rows_carry_the_share(sysfs_with):
    fast = linerate.of(cx5(sysfs_with), ib_root=sysfs_with.root, net_root=sysfs_with.net)
    slow = linerate.of(cx5(sysfs_with, "mlx5_1", width=8, netdev="ens2"), ib_root=sysfs_with.root,
                       net_root=sysfs_with.net)
    path = linerate.path(fast, slow)
    assert path["limited_by"] == "server pcie" and path["limit_gbps"] == slow["limit_gbps"]
    assert linerate.describe(path).startswith("server end: limit 57.6")
    r = row.make({"test": "write_bw", "size": 65536}, "bw_avg_MiBps", 5000.0,
                 detail={"bw_avg_MiBps": 5000.0, "bw_avg_Gbps": 5000 * 8 * 2**20 / 1e9, "msg_rate_Mpps": 0.08,
                         "iterations": 100, "engine": "native", "connect": "oob", "bidir": False})
    with_line_rate(r, path)
    assert r["detail"]["share_of_line_rate"] == pytest.approx(41.94 / 57.6, abs=0.002)
    assert r["detail"]["line_rate"] is path
    out = table.render([r])
    assert "% of line" in out.splitlines()[1] and f"{r['detail']['share_of_line_rate'] * 100:.1f}%" in out
    r["detail"]["bidir"] = True  # both directions at once: against both directions' limits
    assert with_line_rate(r, path)["detail"]["share_of_line_rate"] == pytest.approx(41.94 / 57.6 / 2, abs=0.002)
    unknown = linerate.path({"limit_gbps": None, "note": "soft-RoCE"}, None)
    assert with_line_rate(r, unknown)["detail"]["share_of_line_rate"] is None
    assert table.render([r]).splitlines()[-1].rstrip().endswith("-")
    lat = row.make({"test": "write_lat", "size": 2}, "lat_p50_us", 3.0, detail={})
    assert "line_rate" not in with_line_rate(lat, path)["detail"]  # latency rows have no line rate


def test_report_bandwidth_tables_show_the_share(tmp_path):
    from data import crafted
    from rdmabench.results import frames, plots

    a, b = crafted.verbs_a(), crafted.verbs_b()  # b: a file from before line rates were recorded
    line = {"limit_gbps": 98.037, "limited_by": "client roce_goodput", "client": None, "server": None}
    for r in a.rows:
        with_line_rate(r, line)
    paths = [a.save(tmp_path / "a.json"), b.save(tmp_path / "b.json")]
    (write_bw, *_) = plots.bandwidth_vs_size(frames.load(paths))
    tb = write_bw.table
    assert tb.header == ["message size", "a: MiB/s", "a: % of line", "b: MiB/s", "b: % of line"]
    share_64k = 1000 * 2**20 * 8 / 1e9 / 98.037  # the mean of 1000, 1010 and 990 MiB/s
    assert tb.body[0][2] == f"{share_64k * 100:.1f}%" and tb.body[0][4] == "-"
    assert "physical limit" in tb.caption
    (only_b, *_) = plots.bandwidth_vs_size(frames.load([paths[1]]))
    assert only_b.table.header == ["message size", "b: MiB/s"]  # nothing known: no empty column


def test_crosscheck_shows_both_tools_share():
    from rdmabench.perf import crosscheck
    from rdmabench.results.model import Result

    line = {"limit_gbps": 10.0, "limited_by": "client roce_goodput", "client": None, "server": None}
    mib = 10e9 / 8 / 2**20  # 10 Gb/s in MiB/s
    rows = []
    for rep, (ref, ours) in enumerate([(0.5, 0.45), (0.6, 0.55), (0.7, 0.65)]):
        rows += [row.make({"tool": "perftest", "test": "write_bw", "size": 65536}, "bw_avg_MiBps", ref * mib,
                          repetition=rep),
                 row.make({"tool": "rdmabench", "test": "write_bw", "size": 65536}, "bw_avg_MiBps", ours * mib,
                          repetition=rep, detail={"line_rate": line})]
    rows += [row.make({"tool": t, "test": "write_lat", "size": 2}, m, 3.0) for t, m in
             (("perftest", "t_typical_us"), ("rdmabench", "lat_p50_us"))]
    out = crosscheck.ratios(Result(kind="crosscheck", context={}, options={}, rows=rows))
    assert out[0]["share_of_line_rate"] == pytest.approx({"perftest": 0.6, "rdmabench": 0.55})
    assert out[1]["share_of_line_rate"] is None
    text = crosscheck.render(out).splitlines()
    assert "% of line (perftest/ours)" in text[0] and text[1].endswith("60.0/55.0") and text[2].endswith("-")
