import json

import pytest
from click.testing import CliRunner

from rdmabench import cli as cli_mod
from rdmabench import devices
from rdmabench.errors import DeviceNotFound, NoDevices

LINK_LOCAL = "fe80:0000:0000:0000:ba59:9fff:fed4:1a2e"
MAPPED = "0000:0000:0000:0000:0000:ffff:0a4d:0001"  # 10.77.0.1


def roce(make, name="mlx5_0"):
    return make(name, gids=[(LINK_LOCAL, "IB/RoCE v1", "ens1"), (LINK_LOCAL, "RoCE v2", "ens1"),
                            (MAPPED, "IB/RoCE v1", "ens1"), (MAPPED, "RoCE v2", "ens1")])


def test_roce_port_facts_and_recommended_gid(fake_sysfs):
    roce(fake_sysfs)
    (dev,) = devices.discover(fake_sysfs.root)
    assert dev.name == "mlx5_0" and dev.fw_ver == "16.35.2000"
    port = dev.ports[0]
    assert (port.state, port.phys_state, port.link_layer) == ("ACTIVE", "LinkUp", "Ethernet")
    assert [g.index for g in port.gids] == [0, 1, 2, 3]  # zero GIDs are unused slots, not listed
    assert port.gids[3].ipv4 == "10.77.0.1" and port.gids[3].compact == "::ffff:10.77.0.1"
    assert port.recommended_gid_index == 3  # RoCE v2 and IPv4-mapped, not the v1 one at 2


def test_infiniband_port_recommends_index_0(fake_sysfs):
    fake_sysfs("mlx5_1", link_layer="InfiniBand", gids=[(LINK_LOCAL, "IB/RoCE v1", "")])
    assert devices.discover(fake_sysfs.root)[0].ports[0].recommended_gid_index == 0


def test_roce_without_ipv4_falls_back_to_first_v2():
    gids = [devices.Gid(0, LINK_LOCAL, "IB/RoCE v1", "d0", None), devices.Gid(1, LINK_LOCAL, "RoCE v2", "d0", None)]
    assert devices.recommend_gid_index("Ethernet", gids) == 1
    assert devices.recommend_gid_index("Ethernet", []) is None


def test_no_devices_says_how_to_use_the_lab(tmp_path):
    with pytest.raises(NoDevices) as err:
        devices.discover(tmp_path / "absent")
    assert "rdmabench lab -- rdmabench devices" in str(err.value)


def test_unknown_device_lists_the_real_ones(fake_sysfs):
    roce(fake_sysfs, "mlx5_0")
    roce(fake_sysfs, "mlx5_1")
    with pytest.raises(DeviceNotFound) as err:
        devices.require("mlx5_9", fake_sysfs.root)
    assert "mlx5_9" in str(err.value) and "mlx5_0, mlx5_1" in str(err.value)


@pytest.fixture
def cli_on(sysfs_with):
    return sysfs_with


def test_cli_devices_table_and_json(cli_on):
    roce(cli_on)
    runner = CliRunner()
    out = runner.invoke(cli_mod.cli, ["devices"])
    assert out.exit_code == 0, out.output
    assert "mlx5_0" in out.output and "RoCE v2" in out.output and "recommended GID index: 3" in out.output
    out = runner.invoke(cli_mod.cli, ["devices", "--json"])
    data = json.loads(out.output)
    assert data[0]["ports"][0]["recommended_gid_index"] == 3
    assert data[0]["ports"][0]["gids"][3]["type"] == "RoCE v2"


def test_cli_devices_errors(cli_on):
    runner = CliRunner()
    out = runner.invoke(cli_mod.cli, ["devices"])
    assert out.exit_code == 1 and "No RDMA devices" in out.output and "rdmabench lab" in out.output
    roce(cli_on)
    out = runner.invoke(cli_mod.cli, ["devices", "--device", "mlx5_7"])
    assert out.exit_code == 1 and "devices on this host: mlx5_0" in out.output
    out = runner.invoke(cli_mod.cli, ["roundtrip", "--device", "mlx5_7"])
    assert out.exit_code == 1 and "devices on this host: mlx5_0" in out.output


def test_one_device_choice_for_every_command(sysfs_with, tmp_path):
    """`run --config` took the first of two devices where `run` refused: one rule, one error, everywhere."""
    from rdmabench import devices
    from rdmabench.errors import RdmabenchError
    from rdmabench.transfer.cli import _device
    from rdmabench.transports.base import TransportError
    from rdmabench.transports.rdma_common import default_device

    gid = ("0000:0000:0000:0000:0000:ffff:0a00:0001", "RoCE v2", "eth0")
    sysfs_with("mlx5_0", gids=[gid])
    assert devices.choose().name == "mlx5_0" and _device(None, None)["device"] == "mlx5_0"
    sysfs_with("mlx5_1", gids=[gid])
    for pick in (lambda: devices.choose(), lambda: _device(None, None)):
        with pytest.raises(RdmabenchError, match=r"several RDMA devices here \(mlx5_0, mlx5_1\): choose one with --device"):
            pick()
    with pytest.raises(TransportError, match="several RDMA devices here"):
        default_device({})
    assert devices.choose("mlx5_1").name == "mlx5_1" and _device("mlx5_1", None)["device"] == "mlx5_1"
