from click.testing import CliRunner

from rdmabench.cli import cli
from rdmabench.units import format_size, parse_size

import pytest


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_help_lists_commands():
    out = run("--help")
    assert out.exit_code == 0
    for name in ("devices", "lab", "roundtrip"):
        assert name in out.output


def test_unknown_subcommand_and_option_are_usage_errors():
    out = run("frobnicate")
    assert out.exit_code == 2 and "No such command" in out.output
    out = run("devices", "--frob")
    assert out.exit_code == 2 and "No such option" in out.output


def test_bad_size_is_rejected_before_anything_runs():
    out = run("roundtrip", "--size", "12Q")
    assert out.exit_code == 2 and "is not a size" in out.output


def test_crosscheck_refuses_a_test_perftest_is_not_run_for():
    out = run("crosscheck", "--tests", "write_bw,send_lat")
    assert out.exit_code == 2 and "send_lat: choose from write_bw, read_bw, write_lat" in out.output


def test_lab_usage_errors():
    assert "give the command" in run("lab").output
    assert run("lab", "--hosts", "4", "--", "true").exit_code == 2  # 1, 2 or 3 guests
    out = run("lab", "--worker", "true")
    assert out.exit_code == 2 and "--hosts 2" in out.output


@pytest.mark.parametrize("text,expected", [("4096", 4096), ("64K", 65536), ("64KiB", 65536), ("1m", 1 << 20),
                                           ("8MiB", 8 << 20), ("2G", 2 << 30), ("10B", 10)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "K", "1.5M", "-1", "12Q"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_format_size():
    assert format_size(65536) == "64 KiB" and format_size(3) == "3 B" and format_size(8 << 20) == "8 MiB"
