"""Process settings: malloc arenas capped (glibc), the collector told what lives for good."""

from __future__ import annotations

import gc
import os
import platform
import subprocess
import sys

import pytest

from agent import runtime


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt arenas are glibc's")
def test_arenas_are_capped_unless_the_environment_says_otherwise() -> None:
    code = "from agent import runtime; print(runtime.limit_arenas())"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    run = [sys.executable, "-c", code]
    assert subprocess.check_output(run, env=env, text=True).strip() == "True"
    env["MALLOC_ARENA_MAX"] = "4"
    assert subprocess.check_output(run, env=env, text=True).strip() == "False"


def test_settle_freezes_what_is_alive_and_widens_the_young_generation() -> None:
    saved = gc.get_threshold()
    try:
        runtime.settle()
        assert gc.get_freeze_count() > 1000, "the modules and config are out of later scans"
        assert gc.get_threshold() == (runtime.YOUNG, *saved[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)
