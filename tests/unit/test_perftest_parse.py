import pytest

from rdmabench.errors import RdmabenchError
from rdmabench.perf import perftest

# As Debian 12's perftest 4.5 prints them (whitespace included).
BW = """---------------------------------------------------------------------------------------
 #bytes     #iterations    BW peak[MB/sec]    BW average[MB/sec]   MsgRate[Mpps]
 65536      5000             36.52              36.50  		   0.000584
---------------------------------------------------------------------------------------
"""
LAT = """---------------------------------------------------------------------------------------
 #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]    t_stdev[usec]   99% percentile[usec]   99.9% percentile[usec] 
 2       1000          9.88           1543.11      11.29    	       14.49       	53.94  		27.63   		1543.11 
---------------------------------------------------------------------------------------
"""


def test_parse_bandwidth_and_latency():
    bw = perftest.parse("write_bw", BW)
    assert bw == {"size": 65536, "iterations": 5000, "bw_peak_MiBps": 36.52, "bw_avg_MiBps": 36.50,
                  "msg_rate_Mpps": 0.000584, "ops_per_s": pytest.approx(584)}
    lat = perftest.parse("write_lat", LAT)
    assert lat["t_typical_us"] == 11.29 and lat["p99_9_us"] == 1543.11 and lat["iterations"] == 1000


def test_parse_refuses_output_without_a_result_line():
    with pytest.raises(RdmabenchError, match="no bandwidth line"):
        perftest.parse("read_bw", "Couldn't connect to 10.0.0.1:18525\n")


def test_argv_is_built_from_numbers_only(monkeypatch):
    monkeypatch.setattr(perftest.shutil, "which", lambda name: f"/usr/bin/{name}")
    args = perftest.argv("write_bw", "mlx5_0", 3, 65536, 5000, server="10.0.0.2")
    assert args[:3] == ["/usr/bin/ib_write_bw", "-d", "mlx5_0"]
    assert args[args.index("-x") + 1] == "3" and args[-1] == "10.0.0.2" and "-Q" in args
    with pytest.raises(RdmabenchError, match="not 'send_bw'"):
        perftest.argv("send_bw", "mlx5_0", 3, 1, 5)
    with pytest.raises(ValueError):
        perftest.argv("write_bw", "mlx5_0", 3, "64K; rm -rf /", 5)


def test_read_bw_reads_as_deep_as_our_engines(monkeypatch):
    monkeypatch.setattr(perftest.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(perftest, "outstanding_reads", lambda device: 128)
    args = perftest.argv("read_bw", "rxe0", 1, 65536, 1000)
    assert args[args.index("-o") + 1] == "128"
    assert "-o" not in perftest.argv("write_bw", "rxe0", 1, 65536, 1000)
    monkeypatch.setattr(perftest, "outstanding_reads", lambda device: None)  # the device could not be asked
    assert "-o" not in perftest.argv("read_bw", "rxe0", 1, 65536, 1000)
    assert perftest.shown(args).startswith("ib_read_bw -d rxe0 -x 1 ")


def test_a_duration_run_gives_perftest_its_margins_and_no_iterations(monkeypatch):
    monkeypatch.setattr(perftest.shutil, "which", lambda name: f"/usr/bin/{name}")
    args = perftest.argv("write_bw", "rxe0", 1, 1 << 20, 0, duration=5)
    assert args[args.index("-D") + 1] == "9" and args[args.index("-f") + 1] == "2" and "-n" not in args
    assert "-D" not in perftest.argv("write_bw", "rxe0", 1, 1 << 20, 5000)
    with pytest.raises(RdmabenchError, match="only an average latency"):
        perftest.argv("write_lat", "rxe0", 1, 2, 0, duration=5)
    with pytest.raises(RdmabenchError, match="iterations >= 1 or a duration"):
        perftest.argv("write_bw", "rxe0", 1, 65536, 0)


# Real outputs of Debian 12's perftest 4.5 in the lab guest (rxe0 under TCG), server and client in one guest as
# crosscheck's local path runs them:
#   ib_atomic_bw -d rxe0 -x 1 -s 8 -p 18525 -F {-n 1000 | -D 5 -f 2} -t 128 -Q 100 -o 128 -A {FETCH_AND_ADD | CMP_AND_SWAP}
#   ib_atomic_lat -d rxe0 -x 1 -s 8 -p 18525 -F -n 1000 -A {FETCH_AND_ADD | CMP_AND_SWAP}
DATA = __import__("pathlib").Path(__file__).parent / "data"


def _fixture(name):
    return (DATA / f"perftest-{name}.txt").read_text()


def test_parse_real_ib_atomic_bw_outputs():
    bw = perftest.parse("atomic_bw", _fixture("ib_atomic_bw-fetch_add-n1000"))
    assert bw["size"] == 8 and bw["iterations"] == 1000 and bw["bw_avg_MiBps"] == 0.31
    assert bw["msg_rate_Mpps"] == 0.040274 and bw["ops_per_s"] == pytest.approx(40274)
    # duration mode: no peak (0.00), iterations counted in steps of -Q; the rate is the figure compared
    for name, rate in (("ib_atomic_bw-fetch_add-D5", 59076), ("ib_atomic_bw-cmp_swap-D5", 58076)):
        bw = perftest.parse("atomic_bw", _fixture(name))
        assert bw["bw_peak_MiBps"] == 0.0 and bw["iterations"] % 100 == 0
        assert bw["ops_per_s"] == pytest.approx(rate)


def test_parse_real_ib_atomic_lat_outputs():
    lat = perftest.parse("atomic_lat", _fixture("ib_atomic_lat-fetch_add"))
    assert lat == {"size": 8, "iterations": 1000, "t_min_us": 16.90, "t_max_us": 528.45, "t_typical_us": 17.20,
                   "t_avg_us": 18.03, "t_stdev_us": 11.18, "p99_us": 38.35, "p99_9_us": 528.45}
    lat = perftest.parse("atomic_lat", _fixture("ib_atomic_lat-cmp_swap"))
    assert lat["t_typical_us"] == 17.31 and lat["iterations"] == 1000


def test_atomic_argv_the_operation_from_a_fixed_table_and_the_engines_depth(monkeypatch):
    monkeypatch.setattr(perftest.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(perftest, "outstanding_reads", lambda device: 128)
    args = perftest.argv("atomic_bw", "rxe0", 1, 8, 0, duration=5, cq_mod=100)
    assert perftest.shown(args) == ("ib_atomic_bw -d rxe0 -x 1 -s 8 -D 9 -f 2 -p 18525 -F -t 128 -Q 100 -o 128 "
                                    "-A FETCH_AND_ADD")
    # the engine keeps min(the QP's max_rd_atomic, depth) atomics in flight: perftest gets the same
    args = perftest.argv("atomic_bw", "rxe0", 1, 8, 1000, depth=64, atomic="cmp_swap")
    assert args[args.index("-o") + 1] == "64" and args[args.index("-t") + 1] == "64"
    assert args[args.index("-A") + 1] == "CMP_AND_SWAP" and args[args.index("-n") + 1] == "1000"
    monkeypatch.setattr(perftest, "outstanding_reads", lambda device: 16)  # a ConnectX's max_qp_rd_atom
    args = perftest.argv("atomic_bw", "mlx5_0", 3, 8, 1000)
    assert args[args.index("-o") + 1] == "16"
    lat = perftest.argv("atomic_lat", "rxe0", 1, 8, 1000, server="127.0.0.1")
    assert perftest.shown(lat) == "ib_atomic_lat -d rxe0 -x 1 -s 8 -n 1000 -p 18525 -F -A FETCH_AND_ADD 127.0.0.1"
    with pytest.raises(RdmabenchError, match="only an average latency"):
        perftest.argv("atomic_lat", "rxe0", 1, 8, 0, duration=5)


def test_atomic_argv_refuses_other_sizes_and_unknown_operations(monkeypatch):
    monkeypatch.setattr(perftest.shutil, "which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(RdmabenchError, match="8 bytes an operation, not 65536"):
        perftest.argv("atomic_bw", "rxe0", 1, 65536, 1000)
    with pytest.raises(RdmabenchError, match="atomic operation 'FETCH_AND_ADD; reboot'"):
        perftest.argv("atomic_bw", "rxe0", 1, 8, 1000, atomic="FETCH_AND_ADD; reboot")
    with pytest.raises(RdmabenchError, match="atomic operation"):
        perftest.argv("atomic_lat", "rxe0", 1, 8, 1000, atomic="swap")
