"""`rdmabench doctor` on fake sysfs trees shaped like the real thing. Where each shape comes from:

- ConnectX-5 MCX516A-CCAT (NVIDIA's product brief: 100 GbE, PCIe 3.0 x16) under mlx5: the kernel's
  Documentation/ABI/testing/sysfs-class-infiniband (ports/1/state "4: ACTIVE", phys_state "5: LinkUp", rate,
  link_layer, gids/N, gid_attrs/types/N "RoCE v2", gid_attrs/ndevs/N, fw_ver "16.35.2000", the form mlx5 prints)
  and sysfs-bus-pci (device/current_link_speed "8.0 GT/s PCIe", current_link_width, max_*, numa_node). The
  GID table is mlx5's for a port with one IPv4 address: link-local v1 and v2, then the IPv4-mapped v1 and v2.
- `dcb pfc show dev N`: iproute2's dcb-pfc(8) output ("pfc-cap 8 macsec-bypass off delay 0" then
  "prio-pfc 0:off ... 3:on ..."); on a netdev without DCB (dummy, virtio) it prints "Attribute read: Operation
  not supported" and exits 1 (seen on this machine's lo).
- `ethtool -S N` on mlx5: the kernel's Documentation/networking/device_drivers/ethernet/mellanox/mlx5/counters.rst
  (rx_prio3_pause, tx_prio3_pause, rx_pause_ctrl_phy, tx_pause_ctrl_phy).
- /sys/class/net/N/ecn/roce_rp/enable/P and roce_np/enable/P: the DCQCN switches NVIDIA's MLNX_OFED mlx5 driver
  documents (the inbox driver has none: then ECN "cannot tell").
- rxe in rdmabench's lab (docs/lab.md): rxe0 on a dummy netdev d0 with MTU 9000 and speed -1, no bus device,
  GID 1 the IPv4-mapped RoCE v2 one; under TCG the guest's clock source is hpet and there is no cpufreq.
"""

import json

import pytest
from click.testing import CliRunner

from rdmabench import devices, doctor
from rdmabench.cli import cli

LINK_LOCAL = "fe80:0000:0000:0000:ba59:9fff:fed4:1a2e"
MAPPED = "0000:0000:0000:0000:0000:ffff:0a00:0001"  # 10.0.0.1
NETDEV = "ens1f0np0"
DCB_ON = "pfc-cap 8 macsec-bypass off delay 0\nprio-pfc 0:off 1:off 2:off 3:on 4:off 5:off 6:off 7:off"
DCB_OFF = DCB_ON.replace("3:on", "3:off")
ETHTOOL = "NIC statistics:\n     rx_prio3_pause: 1024\n     tx_prio3_pause: 0\n     rx_pause_ctrl_phy: 0\n"


@pytest.fixture
def host(sysfs_with, tmp_path, monkeypatch):
    """A bare-metal host: two NUMA nodes, governor, clock source; the active MTU verbs would report."""
    state = {"active_mtu": 4096, "commands": {"dcb": (0, DCB_ON), "ethtool": (0, ETHTOOL)}}
    monkeypatch.setattr(devices, "verbs_facts", lambda name: {"ports": {1: {"active_mtu": state["active_mtu"]}}})
    cpu, nodes, clock = tmp_path / "cpu", tmp_path / "node", tmp_path / "clocksource0"
    for n in ("node0", "node1"):
        (nodes / n).mkdir(parents=True)
    clock.mkdir()

    def system(governor="performance", clocksource="tsc", cpus=4):
        for i in range(cpus):
            (cpu / f"cpu{i}" / "cpufreq").mkdir(parents=True, exist_ok=True)
            gov = cpu / f"cpu{i}" / "cpufreq" / "scaling_governor"
            gov.write_text(governor + "\n") if governor else gov.unlink(missing_ok=True)
        (clock / "current_clocksource").write_text(clocksource + "\n")
        (clock / "available_clocksource").write_text("tsc hpet acpi_pm \n" if clocksource == "tsc" else "hpet acpi_pm \n")

    def run(argv):
        return state["commands"].get(argv[0])

    system()
    state["system"] = system
    env = doctor.Env  # the real one: tests below put this fake in its place for the CLI
    state["env"] = lambda virt="none": env(cpu_root=cpu, node_root=nodes, clock_dir=clock, virt=virt, run=run)
    state["make"] = sysfs_with
    return state


def cx5(make, name="mlx5_0", mtu=9000, width=16, state="4: ACTIVE", gids=None, ecn=True):
    make.netdev(NETDEV, mtu=mtu, speed=100000)
    if ecn:
        for point in ("roce_rp", "roce_np"):
            (make.net / NETDEV / "ecn" / point / "enable").mkdir(parents=True, exist_ok=True)
            for prio in range(8):
                (make.net / NETDEV / "ecn" / point / "enable" / str(prio)).write_text("1\n" if prio == 3 else "0\n")
    if gids is None:
        gids = [(LINK_LOCAL, "IB/RoCE v1", NETDEV), (LINK_LOCAL, "RoCE v2", NETDEV),
                (MAPPED, "IB/RoCE v1", NETDEV), (MAPPED, "RoCE v2", NETDEV)]
    make(name, gids=gids, state=state, phys_state="5: LinkUp" if "ACTIVE" in state else "3: Disabled",
         pcie=("8.0 GT/s PCIe", width), pcie_max=("8.0 GT/s PCIe", 16), driver="mlx5_core", numa=0)
    (make.root / name / "device" / "net" / NETDEV).mkdir(parents=True)  # the PCI function's netdev, as in sysfs


def by_name(results):
    return {c.name: c for c in results}


def test_a_healthy_connectx5_passes_everything(host):
    cx5(host["make"])
    name, results = doctor.run(None, host["env"]())
    assert name == "mlx5_0"
    assert {c.name: c.status for c in results} == {n: "PASS" for n in (
        "driver", "machine", "port", "link layer", "MTU", "GID", "PFC", "ECN", "pause frames", "PCIe", "firmware",
        "NUMA", "CPU governor", "clock source")}
    c = by_name(results)
    assert "index 3: RoCE v2 ::ffff:10.0.0.1" in c["GID"].found and "priority 3" in c["PFC"].found
    assert "rx_prio3_pause=1024" in c["pause frames"].found and "node 0 of 2" in c["NUMA"].found
    assert "8 GT/s x16 ~115.2 Gb/s" in c["PCIe"].found and not doctor.failed(results)


@pytest.mark.parametrize("shape, check, status, words", [
    (dict(state="1: DOWN"), "port", "FAIL", "DOWN"),
    (dict(mtu=1500, active=4096), "MTU", "FAIL", "needs netdev MTU >= 4192"),
    (dict(mtu=1500, active=1024), "MTU", "WARN", "active MTU 1024"),
    (dict(gids=[(LINK_LOCAL, "IB/RoCE v1", NETDEV), (LINK_LOCAL, "RoCE v2", NETDEV)]), "GID", "FAIL",
     "none with an IPv4 address"),
    (dict(gids=[]), "GID", "FAIL", "no GID at all"),
    (dict(width=8), "PCIe", "WARN", "below the port's 98.0 Gb/s"),
    (dict(governor="powersave"), "CPU governor", "WARN", "powersave on 4 CPU(s)"),
    (dict(governor=None), "CPU governor", "WARN", "cannot tell"),
    (dict(clocksource="hpet"), "clock source", "WARN", "hpet"),
    (dict(dcb=(0, DCB_OFF)), "PFC", "WARN", "PFC off on every priority"),
    (dict(dcb=(1, "Attribute read: Operation not supported")), "PFC", "WARN", "cannot tell"),
    (dict(dcb=None), "PFC", "WARN", "dcb is not installed"),
    (dict(ethtool=None), "pause frames", "WARN", "ethtool is not installed"),
    (dict(ecn=False), "ECN", "WARN", "cannot tell"),
    (dict(virt="kvm"), "machine", "WARN", "virtual machine (kvm)"),
])
def test_each_problem_is_named_with_its_fix(host, shape, check, status, words):
    shape = dict(shape)
    host["active_mtu"] = shape.pop("active", 4096)
    host["system"](**{k: shape.pop(k) for k in ("governor", "clocksource") if k in shape})
    for tool in ("dcb", "ethtool"):
        if tool in shape:
            host["commands"][tool] = shape.pop(tool)
    env = host["env"](shape.pop("virt", "none"))
    cx5(host["make"], **shape)
    results = by_name(doctor.run(None, env)[1])
    c = results[check]
    assert c.status == status and words in c.found, c
    assert c.fix  # never a WARN or FAIL without the fix
    others = [x for x in results.values() if x.name != check and x.status != "PASS"]
    assert not others or check == "port", others  # one problem, one line (a port that is down is only that)
    assert doctor.failed(list(results.values())) == (status == "FAIL")


def test_the_lab_shape_warns_but_does_not_fail(host):
    """rxe on a dummy netdev under TCG: soft-RoCE and emulation are WARNs, what does not apply is SKIP."""
    make = host["make"]
    make.netdev("d0", mtu=9000, speed=-1)
    make("rxe0", gids=[(LINK_LOCAL, "RoCE v2", "d0"), (MAPPED, "RoCE v2", "d0")], rate="2.5 Gb/sec (1X SDR)",
         fw="0.0.0")
    host["system"](governor=None, clocksource="hpet")
    host["commands"] = {}  # no dcb, no ethtool
    results = by_name(doctor.run("rxe0", host["env"]("tcg"))[1])
    assert results["driver"].status == "WARN" and "soft-RoCE: not a hardware figure" in results["driver"].found
    assert results["machine"].status == "WARN" and "emulation" in results["machine"].found
    assert {n: results[n].status for n in ("port", "MTU", "GID")} == {"port": "PASS", "MTU": "PASS", "GID": "PASS"}
    assert {n for n, c in results.items() if c.status == "SKIP"} == {"PFC", "ECN", "pause frames", "PCIe",
                                                                     "firmware", "NUMA"}
    assert not doctor.failed(list(results.values()))
    make("rxe1", gids=[], state="1: DOWN")  # really broken soft-RoCE still fails
    results = by_name(doctor.run("rxe1", host["env"]("tcg"))[1])
    assert results["port"].status == "FAIL" and results["GID"].status == "FAIL"


def test_cli_exit_codes_json_and_wrong_device(host, monkeypatch):
    cx5(host["make"])
    monkeypatch.setattr(doctor, "Env", lambda: host["env"]())
    runner = CliRunner()
    out = runner.invoke(cli, ["doctor"])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[1].startswith("PASS  driver") and "14 PASS: nothing fails" in out.output
    out = runner.invoke(cli, ["doctor", "--json"])
    data = json.loads(out.output)
    assert data["ok"] is True and data["device"] == "mlx5_0" and len(data["checks"]) == 14
    out = runner.invoke(cli, ["doctor", "-d", "mlx5_7"])
    assert out.exit_code == 1 and "devices on this host: mlx5_0" in out.output
    cx5(host["make"], "mlx5_1", state="1: DOWN")
    out = runner.invoke(cli, ["doctor", "-d", "mlx5_1"])
    assert out.exit_code == 1 and "FAIL  port" in out.output and "fix: ip link set" in out.output
    assert "FAILED" in out.output.splitlines()[-1]
    out = runner.invoke(cli, ["doctor", "--help"])
    assert "PASS, WARN or FAIL" in out.output and "rdmabench doctor -d mlx5_0 --peer 10.0.0.1" in out.output


def test_no_device_fails(tmp_path):
    name, results = doctor.run(None, doctor.Env(ib_root=tmp_path / "none"))
    assert name is None and results[0].status == "FAIL" and "modprobe mlx5_ib" in results[0].fix


@pytest.mark.slow
def test_peer_checks_come_through_the_authenticated_service(host, monkeypatch):
    """The far end's checks travel over `rdmabench serve`'s "doctor" service (the shared secret proven first);
    the round trip is verbs.peer's and is stubbed here (the lab runs the real one)."""
    from rdmabench import cli_doctor
    from rdmabench.verbs import peer
    from rdmabench.wire import Server

    cx5(host["make"])
    monkeypatch.setattr(doctor, "Env", lambda: host["env"]())
    server = Server("127.0.0.1", 0, {"doctor": (doctor.service(None), dict)}, log=lambda m: None)
    calls = []
    monkeypatch.setattr(peer, "check", lambda *a, **k: calls.append((a, k)) or {
        "ok": True, "write_us": 50.0, "read_us": 60.0, "device": "mlx5_0",
        "write_verified": True, "server_verified": True, "read_verified": True})
    try:
        out = CliRunner().invoke(cli, ["doctor", "--peer", f"127.0.0.1:{server.port}"])
        assert out.exit_code == 0, out.output
        assert "PASS  peer: GID" in out.output and "PASS  round trip" in out.output and "verified" in out.output
        assert calls[0][0][:2] == ("127.0.0.1", server.port)
        monkeypatch.setattr(peer, "check", lambda *a, **k: {"ok": False, "write_us": 1.0, "read_us": 1.0})
        out = CliRunner().invoke(cli, ["doctor", "--peer", f"127.0.0.1:{server.port}"])
        assert out.exit_code == 1 and "did NOT verify" in out.output
    finally:
        server.close()
    _, dead = cli_doctor._peer_checks("127.0.0.1", server.port)
    assert dead[0].status == "FAIL" and "rdmabench serve" in dead[0].fix
