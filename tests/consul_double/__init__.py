"""A Consul agent double (DNS interface and HTTP API) for tests; see README.md beside this file."""

from .control import Counters, DoubleControl, DoubleControlError, HttpCounters
from .process import DoubleProcess, DoubleStartError, start_double, start_in_thread

__all__ = ["Counters", "DoubleControl", "DoubleControlError", "DoubleProcess",
           "DoubleStartError", "HttpCounters", "start_double", "start_in_thread"]
