"""Build hook for the native extension: the hot loops in native/ are compiled
against libibverbs and librdmacm when the project is pip-installed."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "rdmabench._native",
            # the C core (no Python.h), then the binding layer (bindings.c's header comment maps it)
            sources=["native/common.c", "native/endpoint.c",
                     "native/ep_connect.c", "native/ep_cm.c", "native/ep_poll.c", "native/ep_bw.c",
                     "native/ep_atomic.c", "native/ep_knobs.c", "native/ep_mem.c",
                     "native/ep_lat.c", "native/ep_run.c", "native/ep_window.c", "native/filexfer.c",
                     "native/pipeline.c", "native/digest.c", "native/digest_avx2.c",
                     "native/bindings.c", "native/py_common.c", "native/py_endpoint.c",
                     "native/py_connect.c", "native/py_run.c", "native/py_windows.c", "native/py_files.c"],
            depends=["native/common.h", "native/endpoint.h", "native/pipeline.h", "native/digest.h",
                     "native/py_common.h", "native/py_windows.h"],
            libraries=["ibverbs", "rdmacm"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"],
        )
    ]
)
