"""The optional packet I/O accelerator (consuldns/packetio.py); the rest is in pyproject.toml.

Optional: without a C compiler (or off Linux, which recvmmsg/sendmmsg need) the build skips
it and consuldns runs its pure-Python packet loop.
"""

import sys

from setuptools import Extension, setup

ACCELERATOR = Extension("consuldns._packetio", sources=["consuldns/_packetio.c"], optional=True)

setup(ext_modules=[ACCELERATOR] if sys.platform == "linux" else [])
