import pytest


@pytest.fixture
def fake_sysfs(tmp_path):
    """Build /sys/class/infiniband-shaped trees: make(name, link_layer, gids=[(gid, type, ndev)])."""
    root = tmp_path / "infiniband"
    root.mkdir()

    def make(name, link_layer="Ethernet", gids=(), state="4: ACTIVE", fw="16.35.2000"):
        port = root / name / "ports" / "1"
        for sub in ("gids", "gid_attrs/types", "gid_attrs/ndevs"):
            (port / sub).mkdir(parents=True)
        (root / name / "fw_ver").write_text(fw + "\n")
        (root / name / "node_guid").write_text("b859:9f03:00d4:1a2e\n")
        (port / "state").write_text(state + "\n")
        (port / "phys_state").write_text("5: LinkUp\n")
        (port / "link_layer").write_text(link_layer + "\n")
        (port / "rate").write_text("100 Gb/sec (4X EDR)\n")
        for i in range(4):  # unused slots read as the zero GID
            (port / "gids" / str(i)).write_text("0000:0000:0000:0000:0000:0000:0000:0000\n")
        for i, (gid, gtype, ndev) in enumerate(gids):
            (port / "gids" / str(i)).write_text(gid + "\n")
            (port / "gid_attrs" / "types" / str(i)).write_text(gtype + "\n")
            (port / "gid_attrs" / "ndevs" / str(i)).write_text(ndev + "\n")
        return root / name

    make.root = root
    return make



@pytest.fixture
def sysfs_with(monkeypatch, fake_sysfs):
    """Point rdmabench.devices at a fake sysfs tree (returns the tree builder)."""
    from rdmabench import devices

    root = fake_sysfs.root
    monkeypatch.setattr(devices, "SYSFS_ROOT", root)
    for fn in (devices.describe, devices.discover, devices.require, devices.device_names):
        monkeypatch.setattr(fn, "__defaults__", (root,))
    monkeypatch.setattr(devices.choose, "__defaults__", (None, True, root))
    return fake_sysfs
