"""For every test run: a shared secret, as a user's hosts would hold one.

rdmabench's listeners refuse peers without the secret (rdmabench.auth). The lab sets one for its
guests; on the host a random one is made here for this run unless the environment has one, and
every subprocess a test starts inherits it."""

import os
import secrets


def pytest_configure(config):
    os.environ.setdefault("RDMABENCH_SECRET", secrets.token_hex(32))
