"""/proc/mounts parsing, option extraction and protocol checks of rdmabench.nfs.mounts, on lines
as the lab's kernel (Debian 6.1) printed them."""

import pytest

from rdmabench.nfs import mounts
from rdmabench.nfs.mounts import NfsMountError

# Real lines from the lab guest (NFS server and client on 10.77.0.1), plus an escaped path.
PROC_MOUNTS = """\
/dev/root / 9p ro,sync,dirsync,relatime,access=any,msize=512000,trans=virtio 0 0
virtme_rw_overlay7 /tmp overlay rw,relatime,lowerdir=/tmp,upperdir=/run/tmp/virtme_rw_overlay7/upper,workdir=/run/tmp/virtme_rw_overlay7/work 0 0
tmpfs /var/lib/nfs tmpfs rw,relatime,inode64 0 0
nfsd /proc/fs/nfsd nfsd rw,relatime 0 0
10.77.0.1:/srv/nfsexp /tmp/m1 nfs rw,relatime,vers=3,rsize=262144,wsize=262144,namlen=255,soft,nolock,proto=rdma,port=20049,timeo=50,retrans=2,sec=sys,mountaddr=10.77.0.1,mountvers=3,mountproto=tcp,local_lock=all,addr=10.77.0.1 0 0
10.77.0.1:/ /tmp/m2 nfs4 rw,relatime,vers=4.2,rsize=262144,wsize=262144,namlen=255,soft,proto=tcp,timeo=50,retrans=2,sec=sys,clientaddr=10.77.0.1,local_lock=none,addr=10.77.0.1 0 0
10.77.2.1:/ /mnt/v4rdma nfs4 rw,relatime,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,hard,proto=rdma,port=20049,timeo=600,retrans=2,sec=sys,clientaddr=10.77.2.2,local_lock=none,addr=10.77.2.1 0 0
10.77.2.1:/srv/nfsexp /mnt/v3tcp nfs rw,relatime,vers=3,rsize=1048576,wsize=1048576,namlen=255,hard,nolock,nconnect=4,proto=tcp,timeo=600,retrans=2,sec=sys,mountaddr=10.77.2.1,mountvers=3,mountport=20048,mountproto=udp,local_lock=all,addr=10.77.2.1 0 0
10.77.2.1:/srv/my\\040exp /mnt/with\\040space nfs rw,vers=3,proto=tcp,addr=10.77.2.1 0 0
"""


@pytest.fixture
def table():
    return mounts.parse_mounts(PROC_MOUNTS)


def test_parse_fields_and_options(table):
    assert len(table) == 9
    v3 = table[4]
    assert (v3.source, v3.target, v3.fstype) == ("10.77.0.1:/srv/nfsexp", "/tmp/m1", "nfs")
    assert v3.options["proto"] == "rdma" and v3.options["port"] == "20049" and v3.options["soft"] is True
    assert v3.server == "10.77.0.1" and v3.export == "/srv/nfsexp" and v3.is_nfs
    assert table[5].fstype == "nfs4" and table[5].export == "/" and table[5].is_nfs
    assert not table[0].is_nfs and table[0].server is None


def test_octal_escapes(table):
    e = table[8]
    assert e.target == "/mnt/with space" and e.source == "10.77.2.1:/srv/my exp"


def test_find_mount_longest_prefix(table):
    assert mounts.find_mount("/tmp/m1/sealed/s-t01000-1", table).target == "/tmp/m1"
    assert mounts.find_mount("/tmp/m10", table).target == "/tmp"  # not /tmp/m1
    assert mounts.find_mount("/etc/passwd", table).target == "/"
    assert mounts.find_mount("/var/lib/nfs/etab", table).fstype == "tmpfs"


def test_mount_options_v3_rdma(table):
    o = mounts.mount_options("/tmp/m1", table)
    assert o["vers"] == "3" and o["proto"] == "rdma" and o["port"] == 20049
    assert o["rsize"] == 262144 and o["wsize"] == 262144 and o["nconnect"] == 1
    assert o["timeo"] == 50 and o["retrans"] == 2 and o["soft"] is True
    assert o["server"] == "10.77.0.1" and o["export"] == "/srv/nfsexp" and "proto=rdma" in o["options"]


def test_mount_options_defaults_and_nconnect(table):
    v4 = mounts.mount_options("/tmp/m2/", table)
    assert v4["vers"] == "4.2" and v4["proto"] == "tcp" and v4["port"] == 2049 and v4["fstype"] == "nfs4"
    v3 = mounts.mount_options("/mnt/v3tcp", table)
    assert v3["nconnect"] == 4 and v3["soft"] is False and v3["rsize"] == 1048576
    assert mounts.mount_options("/mnt/v4rdma", table)["port"] == 20049


def test_check_proto_accepts_matching(table):
    assert mounts.check_proto("/tmp/m1", "rdma", table)["proto"] == "rdma"
    assert mounts.check_proto("/mnt/v3tcp", "tcp", table)["proto"] == "tcp"


def test_check_proto_rejects_tcp_for_rdma(table):
    with pytest.raises(NfsMountError, match=r"proto=tcp, not proto=rdma.*nfs-rdma would come from tcp"):
        mounts.check_proto("/tmp/m2", "rdma", table)


def test_check_proto_rejects_rdma_for_tcp(table):
    with pytest.raises(NfsMountError, match=r"proto=rdma, not proto=tcp"):
        mounts.check_proto("/mnt/v4rdma", "tcp", table)


def test_check_proto_not_nfs(table):
    with pytest.raises(NfsMountError, match=r"not an NFS mount point \(it is tmpfs"):
        mounts.check_proto("/var/lib/nfs", "rdma", table)
    with pytest.raises(NfsMountError, match="nothing is mounted there"):
        mounts.mount_options("/tmp/m1/sealed", table)  # inside a mount, not a mount point
    with pytest.raises(ValueError):
        mounts.check_proto("/tmp/m1", "udp", table)


def test_build_options():
    o = mounts.parse_options(mounts.build_options("rdma", "3"))
    assert o["vers"] == "3" and o["proto"] == "rdma" and o["port"] == "20049" and o["nolock"] is True
    assert o["soft"] is True and o["timeo"] == "100" and o["retrans"] == "2" and o["retry"] == "0"
    t = mounts.parse_options(mounts.build_options("tcp", "4.2", timeo=30, retrans=1))
    assert "port" not in t and "nolock" not in t and t["timeo"] == "30"
    x = mounts.parse_options(mounts.build_options("tcp", "3", extra="nconnect=4,hard"))
    assert x["nconnect"] == "4" and x["hard"] is True and "soft" not in x
    with pytest.raises(NfsMountError, match="proto 'udp'"):
        mounts.build_options("udp")
    with pytest.raises(NfsMountError, match="version '5'"):
        mounts.build_options("tcp", "5")


def test_mount_argv_paths():
    a3 = mounts.mount_argv("10.77.2.1", "/srv/nfsexp", "/mnt/x", "rdma", "3")
    assert a3[:3] == ["mount", "-t", "nfs"] and a3[-2:] == ["10.77.2.1:/srv/nfsexp", "/mnt/x"]
    a4 = mounts.mount_argv("10.77.2.1", "/srv/nfsexp", "/mnt/x", "tcp", "4.2")
    assert a4[-2] == "10.77.2.1:/"  # fsid=0 pseudo-root
    assert mounts.mount_argv("fe80::1", "/e", "/m", "tcp")[-2] == "[fe80::1]:/e"


def test_mount_needs_root(monkeypatch, tmp_path):
    monkeypatch.setattr(mounts.os, "geteuid", lambda: 1000)
    with pytest.raises(NfsMountError, match="needs root.*mount -t nfs"):
        mounts.mount("10.77.2.1", "/srv/nfsexp", tmp_path / "m", "rdma")


# ---- the nfs transports' copy logic on the host: a plain directory stands in for the mount ----------

from pathlib import Path  # noqa: E402

from rdmabench import integrity  # noqa: E402
from rdmabench.transports import Context, Item, TransportError, get  # noqa: E402
from rdmabench.workloads import sector  # noqa: E402


@pytest.fixture
def fake_mount(tmp_path, monkeypatch):
    """``tmp_path/mnt`` passes check_proto as an rdma mount; not root, so cold=none."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    fake = {"proto": "rdma", "vers": "3", "port": 20049, "soft": True, "source": "10.77.2.1:/srv/nfsexp"}

    def check(mp, expected, mounts_=None):
        if expected != "rdma":
            raise NfsMountError(f"{mp} is mounted with proto=rdma, not proto={expected}")
        return dict(fake)

    monkeypatch.setattr(mounts, "check_proto", check)
    monkeypatch.setattr("rdmabench.transports.nfs.os.geteuid", lambda: 1000)
    return mnt


def _prepared(name, mnt, **opts):
    t = get(name)
    t.prepare(Context(Path("/unused"), Path("/unused"), options={"mount": str(mnt), **opts}))
    return t


def test_transport_pull_and_push_through_a_mount(fake_mount, tmp_path):
    gen = sector.generate(sector.shape("2KiB", "pc2"), fake_mount)  # the export holds a sector
    t = _prepared("nfs-rdma", fake_mount)
    assert t.cold == "none"
    for item in sector.items(gen, tmp_path / "local"):
        rec = t.move(item)  # source under the mount: a pull
        assert rec.verified and rec.extra["direction"] == "pull" and rec.extra["mount"]["proto"] == "rdma"
        assert integrity.digest(item.destination) == item.digest
    local = sector.generate(sector.shape("2KiB", "finalized", number=7), tmp_path / "src")
    for item in sector.items(local, fake_mount):
        rec = t.move(item)  # destination under the mount: a push
        assert rec.verified and rec.extra["direction"] == "push" and rec.extra["verify"] == "read back, warm cache"
        assert integrity.digest(fake_mount / item.lotus_type / item.sector_id) == item.digest
    assert not list(fake_mount.rglob(".*part-*")) and not list((tmp_path / "local").rglob(".*part-*"))


def test_transport_bad_digest_leaves_nothing(fake_mount, tmp_path):
    sector.generate(sector.shape("2KiB", "pc1"), fake_mount)
    t = _prepared("nfs-rdma", fake_mount, direction="pull")
    dest = tmp_path / "local" / "sealed" / "s-t01000-1"
    with pytest.raises(integrity.IntegrityError):
        t.move(Item("file", "sealed", "s-t01000-1", None, dest, 2048, "0" * 32))
    assert not dest.exists() and not list(dest.parent.iterdir())


def test_transport_options_checked(fake_mount):
    with pytest.raises(TransportError, match=r"nfs-tcp: .*proto=rdma, not proto=tcp"):
        _prepared("nfs-tcp", fake_mount)
    with pytest.raises(TransportError, match="cold=remount needs rdmabench to own the mount"):
        _prepared("nfs-rdma", fake_mount, cold="remount")
    with pytest.raises(TransportError, match="cold=drop_caches needs root"):
        _prepared("nfs-rdma", fake_mount, cold="drop_caches")
    with pytest.raises(TransportError, match="direction 'sideways'"):
        _prepared("nfs-rdma", fake_mount, direction="sideways")
    with pytest.raises(TransportError, match="name a mounted NFS directory"):
        get("nfs-rdma").prepare(Context(Path("/x"), Path("/y")))
    t = _prepared("nfs-rdma", fake_mount)
    with pytest.raises(TransportError, match="does not exist on the export"):
        t.move(Item("file", "sealed", "s-t01000-5", None, fake_mount.parent / "d", 1, None))
