"""The results file's writes: rewriting it at every recorded call against writing only what changed.

Every analysis function is :func:`univenc.results.recorded`: its value goes into the preset's results file, and a
write rewrites the whole file (tens of MB). Notebook 06 (the claims) recomputes much of what notebooks 02-05
recorded. Runs ``evaluate_claims`` twice on the preset's trained zoo and recorded results (run the notebooks
first): once as the package did before (every value that is not a plain number or string written again, and the
file read back after each write), once as it does now (a value equal to the recorded one is not written, and the
store stays in memory after a write). Then once more, with nothing changed since: every value is reused
(:func:`univenc.results.inputs_digest`), as notebook 06 reuses what notebooks 02-05 computed. Prints the wall
times, their ratios and the number of writes of each.

    .venv/bin/python benchmarks/bench_results_io.py --preset smoke
    UNIVENC_DATA=<data root with the cpu zoo> .venv/bin/python benchmarks/bench_results_io.py --preset cpu
"""
import argparse
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from univenc import results
from univenc.claims import evaluate_claims
from univenc.results import results_file


@contextmanager
def counting_writes(rewrite_all: bool):
    """Count the results file's writes; with ``rewrite_all``, the earlier policy (write every non-plain value,
    then drop the in-memory copy so the next call reads the file again)."""
    count = {"writes": 0}
    write = results._write

    def counted(store, path):
        count["writes"] += 1
        write(store, path)
        if rewrite_all:
            results._loaded.pop(path, None)

    plain = (list, tuple, str, int, float, bool, type(None))
    same = results.same_value

    def earlier_same(old, new):  # the earlier rule: only plain values were compared
        return isinstance(new, plain) and isinstance(old, plain) and repr(old) == repr(new)

    with mock.patch.object(results, "_write", counted), \
            mock.patch.object(results, "same_value", earlier_same if rewrite_all else same):
        yield count


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="smoke")
    args = ap.parse_args()
    path = results_file(args.preset)
    if not path.exists():
        raise SystemExit(f"no results file at {path}: run the notebooks of preset {args.preset} first "
                         f"(python -m univenc.reproduce --preset {args.preset})")
    backup = Path(tempfile.mkdtemp()) / "results.pt"
    shutil.copy(path, backup)
    walls = {}
    try:
        for label, rewrite_all in (("before: every value rewritten", True), ("now: only what changed", False)):
            shutil.copy(backup, path)  # both start from the same recorded file
            results._loaded.clear()
            with counting_writes(rewrite_all) as count:
                t0 = time.perf_counter()
                evaluate_claims(args.preset)
                walls[label] = time.perf_counter() - t0
            print(f"{label}: {walls[label]:.1f} s, {count['writes']} writes of {path.stat().st_size / 1e6:.1f} MB",
                  flush=True)
        label = "again, inputs unchanged: every value reused"
        with counting_writes(False) as count:
            t0 = time.perf_counter()
            evaluate_claims(args.preset)
            walls[label] = time.perf_counter() - t0
        print(f"{label}: {walls[label]:.1f} s, {count['writes']} writes", flush=True)
    finally:
        shutil.copy(backup, path)
    before, now, reused = walls.values()
    print(f"evaluate_claims ({args.preset}): {before / now:.1f}x faster now than before; reused {now / reused:.1f}x "
          f"faster than computed")


if __name__ == "__main__":
    main()
