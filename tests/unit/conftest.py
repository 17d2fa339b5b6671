import pytest


def pytest_collection_modifyitems(items):
    """The tests marked slow first, the rest in their order (a stable sort). `make test-unit` runs this suite
    with pytest -n 2, which deals the first tests out one to each worker in turn: the long ones start at
    once, spread over both, and the short ones fill in after, instead of the run ending on one worker
    still in a 45 s test while the other sits idle."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def fake_sysfs(tmp_path):
    """Build /sys/class/infiniband-shaped trees: make(name, link_layer, gids=[(gid, type, ndev)]).

    Optional, for the line-rate and doctor checks: ``rate`` (the port's rate file), ``pcie=(speed, width)``
    with ``pcie_max`` (the PCI device's current_/max_link_speed and _width, as in sysfs-bus-pci),
    ``driver`` (device/driver links to it: "mlx5_core"; None: no bus device, as rxe has none),
    ``numa`` (device/numa_node). ``make.netdev(name, mtu, speed)`` makes /sys/class/net/NAME under
    ``make.net`` (speed -1: unknown, as virtio and dummy report)."""
    root = tmp_path / "infiniband"
    root.mkdir()
    net = tmp_path / "net"
    net.mkdir()

    def make(name, link_layer="Ethernet", gids=(), state="4: ACTIVE", fw="16.35.2000", rate="100 Gb/sec (4X EDR)",
             pcie=None, pcie_max=None, driver=None, numa=None, phys_state="5: LinkUp"):
        port = root / name / "ports" / "1"
        for sub in ("gids", "gid_attrs/types", "gid_attrs/ndevs"):
            (port / sub).mkdir(parents=True)
        (root / name / "fw_ver").write_text(fw + "\n")
        (root / name / "node_guid").write_text("b859:9f03:00d4:1a2e\n")
        (port / "state").write_text(state + "\n")
        (port / "phys_state").write_text(phys_state + "\n")
        (port / "link_layer").write_text(link_layer + "\n")
        (port / "rate").write_text(rate + "\n")
        for i in range(4):  # unused slots read as the zero GID
            (port / "gids" / str(i)).write_text("0000:0000:0000:0000:0000:0000:0000:0000\n")
        for i, (gid, gtype, ndev) in enumerate(gids):
            (port / "gids" / str(i)).write_text(gid + "\n")
            (port / "gid_attrs" / "types" / str(i)).write_text(gtype + "\n")
            (port / "gid_attrs" / "ndevs" / str(i)).write_text(ndev + "\n")
        if driver or pcie or numa is not None:
            dev = root / name / "device"
            dev.mkdir()
            if driver:
                (tmp_path / "drivers" / driver).mkdir(parents=True, exist_ok=True)
                (dev / "driver").symlink_to(tmp_path / "drivers" / driver)
            if pcie:
                (dev / "current_link_speed").write_text(f"{pcie[0]}\n")
                (dev / "current_link_width").write_text(f"{pcie[1]}\n")
                top = pcie_max or pcie
                (dev / "max_link_speed").write_text(f"{top[0]}\n")
                (dev / "max_link_width").write_text(f"{top[1]}\n")
            if numa is not None:
                (dev / "numa_node").write_text(f"{numa}\n")
        return root / name

    def netdev(name, mtu=1500, speed=-1):
        d = net / name
        d.mkdir(exist_ok=True)
        (d / "mtu").write_text(f"{mtu}\n")
        (d / "speed").write_text(f"{speed}\n")
        return d

    make.root = root
    make.net = net
    make.netdev = netdev
    return make



@pytest.fixture
def sysfs_with(monkeypatch, fake_sysfs):
    """Point rdmabench.devices at a fake sysfs tree (returns the tree builder)."""
    from rdmabench import devices

    root = fake_sysfs.root
    monkeypatch.setattr(devices, "SYSFS_ROOT", root)
    monkeypatch.setattr(devices, "NET_ROOT", fake_sysfs.net)
    for fn in (devices.describe, devices.discover, devices.require, devices.device_names):
        monkeypatch.setattr(fn, "__defaults__", (root,))
    monkeypatch.setattr(devices.choose, "__defaults__", (None, True, root))
    return fake_sysfs
