"""Facts the lab gives every test that runs inside a guest. A missing one fails the
test (it means the test is not running in the lab), it never skips it."""

import os

import pytest


def lab_value(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"${name} is not set: lab tests run inside the soft-RoCE lab "
                    "(`make test`, or `rdmabench lab -- python -m pytest tests/lab/one_host`)")
    return value


@pytest.fixture(scope="session")
def lab_env():
    return {"device": lab_value("RDMABENCH_DEVICE"), "gid_index": int(lab_value("RDMABENCH_GID_INDEX")),
            "ip": lab_value("RDMABENCH_IP"), "role": lab_value("RDMABENCH_ROLE"),
            "peer": os.environ.get("RDMABENCH_PEER_IP"), "results": os.environ.get("RDMABENCH_RESULTS")}
