"""``bench.report_speed``'s memory sampling: the report's process tree, read from the children
Linux lists, is the same set of processes a scan of every process finds by group, and the
resident bytes it sums include a worker's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from bench.report_speed import _group, _tree, group_rss, median_run

# a parent holding 40 MB and one forked worker holding 80 MB, both gone after 20 s at most
TREE = """
import os, sys, time
big = bytearray(40 << 20)
if os.fork() == 0:
    more = bytearray(80 << 20)
    time.sleep(20)
    os._exit(0)
print("ready", flush=True)
time.sleep(20)
"""


def test_the_tree_is_the_group_and_its_memory_is_summed():
    p = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert p.stdout.readline() == b"ready\n"
        deadline = time.monotonic() + 10
        while len(_group(p.pid)) < 2 or group_rss(p.pid)[0] < 120 << 20:  # the worker allocating
            assert time.monotonic() < deadline, (_group(p.pid), group_rss(p.pid))
            time.sleep(0.05)
        tree = _tree(p.pid)
        assert tree is not None and sorted(tree) == sorted(_group(p.pid)) and len(tree) == 2
        total, peak = group_rss(p.pid)
        assert total >= 120 << 20 and 80 << 20 <= peak < total
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    assert _tree(p.pid) is None


def test_the_median_run_carries_the_largest_peak_and_a_failure_counts_as_slowest():
    def run(seconds, rss, exit=0):
        return {"seconds": seconds, "cpu_seconds": seconds * 2, "peak_rss_mb": rss, "peak_tree_rss_mb": rss * 2,
                "exit": exit, "timed_out": False}

    got = median_run([run(12.0, 40), run(9.0, 60), run(10.0, 45)])
    assert (got["seconds"], got["cpu_seconds"], got["peak_rss_mb"], got["peak_tree_rss_mb"]) == (10.0, 20.0, 60, 120)
    assert median_run([run(9.0, 40), run(1.0, 40, exit=1), run(10.0, 40)])["seconds"] == 10.0
    assert median_run([run(9.0, 40), run(10.0, 40)])["seconds"] == 10.0  # the slower middle one
