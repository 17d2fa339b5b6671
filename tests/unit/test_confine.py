"""Names off the wire: exactly Lotus's, with nothing trailing and no look-alike digits."""

import pytest

from rdmabench import confine


@pytest.mark.parametrize("value", ["s-t01000-1\n", "s-t0\u0661\u0660-1", "s-t01000-\u0663", " s-t01000-1", "s-t01000-1 ",
                                   "s-t01000-1/..", "s-t0-1", "s-t01000-"])
def test_sector_id_refused(value):
    with pytest.raises(confine.PathRefused):
        confine.sector_id(value)


@pytest.mark.parametrize("value", ["p_aux\n", "p_aux/", ".", "..", ".hidden", "a/b", "", "x" * 256, "p_aux\0"])
def test_file_name_refused(value):
    with pytest.raises(confine.PathRefused):
        confine.file_name(value)


def test_good_names_pass():
    assert confine.sector_numbers("s-t01000-17") == (1000, 17)
    assert confine.file_name("sc-02-data-tree-r-last-7.dat") == "sc-02-data-tree-r-last-7.dat"
