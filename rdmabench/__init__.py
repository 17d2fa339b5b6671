"""rdmabench: RDMA transport and storage benchmarks for Filecoin sealing clusters."""

__version__ = "0.1.0"
