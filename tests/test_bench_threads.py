"""bench.threads: the kernel's CPU by thread, summed by kind."""

from __future__ import annotations

import os
import threading
import time

from bench import threads


def test_threads_of_one_kind_are_summed_and_numbers_dropped() -> None:
    assert threads.kind("Thread-7 (process_request_thread)") == "process_request_thread"
    assert threads.kind("rules_1") == "rules"
    assert threads.kind("ThreadPoolExecutor-0_3") == "ThreadPoolExecutor"
    assert threads.kind("lane-worker:sim-1") == "lane-worker:sim"
    rows = threads.table({1: 0, 2: 0}, {1: 10**7, 2: 3 * 10**7, 3: 10**7},
                         {1: "rules_0", 2: "rules_1", 3: "http"}, 1.0)  # fmt: skip
    assert rows == [("rules", 4.0), ("http", 1.0)]


def test_a_busy_thread_shows_in_the_snapshot() -> None:
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    worker = threading.Thread(target=spin)
    before = threads.snapshot(os.getpid())
    worker.start()
    time.sleep(0.2)
    after = threads.snapshot(os.getpid())
    stop.set()
    worker.join()
    assert worker.native_id in after and worker.native_id not in before
    assert after[worker.native_id] > 10**7, "a spinning thread used more than 10 ms in 0.2 s"
