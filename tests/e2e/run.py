#!/usr/bin/env python3
"""Runs the end-to-end tests: `run.py` for all, `run.py NAME...` for some,
`run.py --module cases_files` for one module.

Each test is a function named test_* in a cases_*.py module next to this file. Prints one
line per test and closes with "N passed, N failed"; exits non-zero if any failed.
"""
import glob
import importlib
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def collect(module=None):
    tests = {}
    here = os.path.dirname(os.path.abspath(__file__))
    for path in sorted(glob.glob(os.path.join(here, (module or "cases_*") + ".py"))):
        mod = importlib.import_module(os.path.basename(path)[:-3])
        for name in sorted(dir(mod)):
            if name.startswith("test_"):
                tests[name[5:]] = getattr(mod, name)
    return tests


def main():
    args = sys.argv[1:]
    module = None
    if args[:1] == ["--module"]:
        module, args = args[1], args[2:]
    tests = collect(module)
    wanted = args or list(tests)
    passed = failed = 0
    for name in wanted:
        fn = tests.get(name)
        if fn is None:
            print(f"unknown test {name}; known: {' '.join(tests)}")
            failed += 1
            continue
        t0 = time.monotonic()
        try:
            fn()
            passed += 1
            print(f"PASS {name} ({time.monotonic() - t0:.2f}s)", flush=True)
        except Exception as e:  # noqa: BLE001 - any exception fails the test
            failed += 1
            print(f"FAIL {name} ({time.monotonic() - t0:.2f}s): {e}", flush=True)
            if not isinstance(e, harness.TestFailure):
                traceback.print_exc()
        harness.reap()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
