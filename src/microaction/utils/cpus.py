"""The CPU cores a process may use, for the defaults that scale with them (loader workers, parallel jobs)."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """The cores this process may run on: its CPU affinity where the platform has one (a cluster job or a
    container limited to some cores), else every core of the machine; at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
