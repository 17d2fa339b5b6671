"""Build hook for the native extension: the hot loops in native/ are compiled
against libibverbs and librdmacm when the project is pip-installed."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "rdmabench._native",
            sources=["native/rdmabench_native.c", "native/common.c", "native/endpoint.c",
                     "native/filexfer.c"],
            depends=["native/common.h"],
            libraries=["ibverbs", "rdmacm"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"],
        )
    ]
)
