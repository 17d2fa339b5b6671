"""Digests, atomic destinations (interrupts included), the free-space check."""

import os

import pytest

from rdmabench import integrity


def test_file_and_dir_digest(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "b").write_bytes(b"world")
    (d / "a").write_bytes(b"hello")
    (d / "sub").mkdir()  # not covered: only top-level files travel
    dig = integrity.digest(d)
    assert dig == integrity.combine([("b", 5, integrity.digest_file(d / "b")), ("a", 5, integrity.digest_file(d / "a"))])
    (d / "a").write_bytes(b"hellp")
    assert integrity.digest(d) != dig
    assert integrity.size_of(d) == 10
    assert integrity.verify(d / "b", integrity.digest_file(d / "b"))
    with pytest.raises(integrity.IntegrityError, match="does not match"):
        integrity.verify(d / "b", "0" * 32)


def test_digest_streams_big_file(tmp_path):
    f = tmp_path / "big"
    f.write_bytes(os.urandom(3 * integrity.BLOCK + 17))
    import xxhash
    assert integrity.digest_file(f) == xxhash.xxh3_128(f.read_bytes()).hexdigest()


def test_atomic_destination_success_and_replace(tmp_path):
    final = tmp_path / "out"
    final.write_bytes(b"old")
    with integrity.atomic_destination(final) as dest:
        assert dest.path != final and dest.path.parent == final.parent
        dest.path.write_bytes(b"new")
    assert final.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out"]


def test_atomic_destination_dir_replaces_dir(tmp_path):
    final = tmp_path / "cache"
    final.mkdir()
    (final / "stale").write_bytes(b"x")
    with integrity.atomic_destination(final, temp=tmp_path / "fetching" / "cache") as dest:
        dest.path.mkdir()
        (dest.path / "p_aux").write_bytes(b"y")
    assert os.listdir(final) == ["p_aux"]
    assert sorted(os.listdir(tmp_path)) == ["cache", "fetching"]


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_atomic_destination_interrupted(tmp_path, exc):
    src = tmp_path / "src"
    src.write_bytes(b"source")
    final = tmp_path / "dst"
    with pytest.raises(exc):
        with integrity.atomic_destination(final) as dest:
            dest.path.write_bytes(b"sour")
            raise exc()
    assert not final.exists()
    assert sorted(os.listdir(tmp_path)) == ["src"]
    assert src.read_bytes() == b"source"


def test_atomic_destination_mismatch(tmp_path):
    final = tmp_path / "dst"
    with pytest.raises(integrity.IntegrityError, match="nothing was put in place"):
        with integrity.atomic_destination(final, expected=integrity.digest_file(__file__)) as dest:
            dest.path.write_bytes(b"not this")
    assert os.listdir(tmp_path) == []
    with integrity.atomic_destination(final, expected=integrity.digest_file(__file__)) as dest:
        dest.path.write_bytes(open(__file__, "rb").read())
    assert dest.verified and final.exists()


def test_free_space_check(tmp_path):
    free, where = integrity.free_bytes(tmp_path / "not" / "yet")
    assert where == tmp_path and free > 0
    integrity.check_free_space(tmp_path, 1)
    with pytest.raises(integrity.InsufficientSpace, match=r"need .* free on " + str(tmp_path)):
        integrity.check_free_space(tmp_path / "x", free + (1 << 40))
