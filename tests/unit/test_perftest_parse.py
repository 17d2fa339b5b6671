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
                  "msg_rate_Mpps": 0.000584}
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
