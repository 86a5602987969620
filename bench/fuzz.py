"""Fuzz every parser with a large budget; print cases and crashes per target.

The same targets as tests/test_fuzz.py (tests/fuzzing.py), with thousands of cases each.
A crash is an input the target did not turn into a clear error; the first few are printed.
"""

from __future__ import annotations

import argparse
import time

from hypothesis import HealthCheck, given, settings

from tests.fuzzing import TARGETS, Crash, Target


def run(target: Target, cases: int) -> tuple[int, list[str], float]:
    """Run one target; return the cases tried, the crashes found, and the seconds taken."""
    tried, crashes = 0, []

    @settings(max_examples=cases, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(target.inputs)
    def case(value: object) -> None:
        nonlocal tried
        tried += 1
        try:
            target.check(value)
        except Crash as exc:  # counted, not raised: hypothesis would stop to shrink it
            crashes.append(f"{exc} <- {value!r:.120}")

    began = time.monotonic()
    case()
    return tried, crashes, time.monotonic() - began


def main() -> None:
    """Fuzz each target and print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=None,
                        help="cases per target (default: each target's own)")  # fmt: skip
    parser.add_argument("--target", action="append", help="only these targets (by name)")
    args = parser.parse_args()
    print(f"{'target':20} {'cases':>8} {'crashes':>8} {'seconds':>8}")
    for target in TARGETS:
        if args.target and target.name not in args.target:
            continue
        tried, crashes, took = run(target, args.cases or target.cases)
        print(f"{target.name:20} {tried:>8} {len(crashes):>8} {took:>8.1f}")
        for crash in crashes[:3]:
            print(f"    {crash}")


if __name__ == "__main__":
    main()
