"""The results file: values recorded when computed, read back instead of computed, clear errors otherwise."""
import copy

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from univenc.results import RESULTS_ENV, MissingResultError, recorded, results_file, same_value

CALLS = []


@recorded
def statistic(name, preset, root=None, scale: float = 1.0):
    CALLS.append(name)
    return {"table": pd.DataFrame({"x": [1.0, 2.0]}) * scale, "cosines": np.eye(64), "small": np.eye(3)}


@recorded(variants=True)
def across_points(name, preset, root=None):
    CALLS.append(f"points {name}")
    return name


def test_recorded_then_read_back_without_computing(tmp_path, monkeypatch):
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    CALLS.clear()
    first = statistic("a", "smoke", tmp_path, scale=2.0)
    assert CALLS == ["a"] and results_file("smoke", tmp_path).exists()
    assert first["cosines"].dtype == np.float32 and first["small"].dtype == np.float64  # big arrays: float32

    monkeypatch.setenv(RESULTS_ENV, str(results_file("smoke", tmp_path)))
    again = statistic("a", "smoke", "/nowhere", scale=2.0)  # the data root plays no part in the key
    assert CALLS == ["a"]  # not computed again
    pd.testing.assert_frame_equal(again["table"], first["table"])
    np.testing.assert_array_equal(again["cosines"], first["cosines"])
    with pytest.raises(MissingResultError, match=r"statistic\(name='a', scale=3.0\) is not in the results file"):
        statistic("a", "smoke", scale=3.0)
    with pytest.raises(ValueError, match="of preset 'smoke', not 'cpu'"):
        statistic("a", "cpu")


def test_an_unchanged_value_is_not_written_again_and_a_changed_one_is(tmp_path, monkeypatch):
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    first = statistic("b", "smoke", tmp_path)
    path = results_file("smoke", tmp_path)
    written = path.stat().st_mtime_ns, path.stat().st_ino
    first["table"].loc[0, "x"] = -1.0  # the caller changes its copy: the store keeps the value computed
    statistic("b", "smoke", tmp_path)  # computed again, the same value: the file stays as it is
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == written
    statistic("b", "smoke", tmp_path, scale=2.0)  # a new key: written
    assert path.stat().st_ino != written[1]
    monkeypatch.setenv(RESULTS_ENV, str(path))
    assert statistic("b", "smoke")["table"].x.tolist() == [1.0, 2.0]
    assert statistic("b", "smoke", scale=2.0)["table"].x.tolist() == [2.0, 4.0]


def _nested(draw_value):
    return {"table": pd.DataFrame({"x": [draw_value, np.nan], "name": ["a", "b"]}), "arr": np.array([draw_value, 1.0]),
            "t": torch.tensor([draw_value]), "list": [draw_value, "s", None, (1, 2)], "nan": float("nan"),
            "np": np.float32(draw_value)}


FLOAT32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


@given(FLOAT32, FLOAT32)
@settings(max_examples=50, deadline=None)
def test_same_value_is_exact_equality_of_nested_values(x, y):
    a = _nested(x)
    assert same_value(a, copy.deepcopy(a))
    assert same_value(a, _nested(y)) == (x == y)
    for key in a:
        changed = copy.deepcopy(a)
        changed[key] = "other"
        assert not same_value(a, changed), key
    assert not same_value(np.zeros(3), np.zeros(3, dtype=np.float32))  # a dtype change is a change
    assert not same_value(pd.DataFrame({"x": [1.0]}), pd.DataFrame({"y": [1.0]}))
    assert not same_value(object(), object())  # unknown types: always written


def test_same_value_compares_cells_of_lists_with_nan():
    table = pd.DataFrame({"setting": ["a"], "S_by_layer": [[0.5, float("nan")]]})
    assert same_value(table, copy.deepcopy(table))
    assert not same_value(table, pd.DataFrame({"setting": ["a"], "S_by_layer": [[0.5, 0.6]]}))
    assert not same_value(table, table.set_axis([1]))  # another index


WRITER = '''
import sys
from univenc.results import recorded

@recorded
def entry(i, preset, root=None, writer=0):
    return {"writer": writer, "i": i, "payload": list(range(200))}

writer, n, root = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for i in range(n):
    entry(i, "smoke", root, writer=writer)
'''


def test_concurrent_writers_lose_no_entry(tmp_path, monkeypatch):
    """Several processes record different keys into one results file at the same time: every key is there after."""
    import subprocess
    import sys

    from univenc.storage import load_checkpoint
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    (tmp_path / "writer.py").write_text(WRITER)
    writers, n = 4, 30
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "writer.py"), str(w), str(n), str(tmp_path)],
                              env=env, stderr=subprocess.PIPE, text=True) for w in range(writers)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    entries = load_checkpoint(results_file("smoke", tmp_path))["entries"]
    expected = {f"entry(i={i}, writer={w})" for w in range(writers) for i in range(n)}
    assert set(entries) == expected, f"{len(expected - set(entries))} of {len(expected)} entries lost"
    assert all(v["writer"] == int(k.split("writer=")[1][:-1]) for k, v in entries.items())


ASKER = '''
import sys, time
from pathlib import Path
from univenc.results import recorded

@recorded
def slow(i, preset, root=None):
    with open(Path(root) / "computed.txt", "a") as fh:
        fh.write(f"{i}\\n")
    time.sleep(1.5)
    return {"i": i}

root, start = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))  # every process asks at the same moment
assert [slow(i, "smoke", root) for i in range(2)] == [{"i": 0}, {"i": 1}]
'''


def test_processes_asking_for_one_value_at_once_compute_it_once(tmp_path, monkeypatch):
    """A notebook in JupyterLab beside `make figures`: a value that several processes ask for at once is computed
    by one of them, and every one gets it."""
    import os
    import subprocess
    import sys
    import time
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    (tmp_path / "asker.py").write_text(ASKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.time() + 15  # after every process has imported the package
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "asker.py"), str(tmp_path), str(start)], env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    assert sorted((tmp_path / "computed.txt").read_text().split()) == ["0", "1"]


def test_locks_that_only_save_work_are_skipped_where_flock_is_refused(tmp_path, monkeypatch):
    import univenc.storage as S

    @__import__("contextlib").contextmanager
    def refused(path):
        raise S.LockUnavailable(37, f"cannot lock {path}: No locks available")
        yield
    monkeypatch.setattr(S, "file_lock", refused)
    ran = []
    with S.file_locks([tmp_path / "a.lock"], required=False):
        ran.append(1)
    assert ran == [1]
    with pytest.raises(S.LockUnavailable), S.file_locks([tmp_path / "a.lock"]):
        pass


def test_record_without_flock_warns_and_still_writes(tmp_path, monkeypatch):
    import univenc.results as R
    from univenc.storage import LockUnavailable

    @__import__("contextlib").contextmanager
    def refused(path):
        raise LockUnavailable(37, f"cannot lock {path}: No locks available")
        yield
    monkeypatch.setattr(R, "file_lock", refused)
    path = tmp_path / "results.pt"
    with pytest.warns(UserWarning, match="recording without a lock"):
        R.record(path, "smoke", "k", 1.0)
    assert R._read(path)["entries"] == {"k": 1.0}


def test_a_recorded_value_is_reused_until_a_zoo_file_or_the_code_changes(tmp_path, monkeypatch):
    import os

    import univenc.results as R
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    monkeypatch.delenv(R.RECOMPUTE_ENV, raising=False)
    net = tmp_path / "zoo" / "smoke" / "net"
    net.mkdir(parents=True)
    (net / "final.pt").write_bytes(b"weights")
    CALLS.clear()
    first = statistic("c", "smoke", tmp_path)
    first["table"].loc[0, "x"] = -1.0  # the caller changes its copy
    again = statistic("c", "smoke", tmp_path)
    assert CALLS == ["c"]  # reused, not computed
    assert again["table"].x.tolist() == [1.0, 2.0]  # and the store kept the computed value
    (net / ".lock").write_text("")  # a lock file changes nothing
    statistic("c", "smoke", tmp_path)
    assert CALLS == ["c"]

    (tmp_path / "zoo" / "cpu").mkdir()  # another preset's zoo plays no part
    (tmp_path / "zoo" / "cpu" / "final.pt").write_bytes(b"x")
    statistic("c", "smoke", tmp_path)
    assert CALLS == ["c"]

    os.utime(net / "final.pt", ns=(1, 1))  # the network trained again
    statistic("c", "smoke", tmp_path)
    assert CALLS == ["c"] * 2
    across_points("c", "smoke", tmp_path)
    assert CALLS == ["c"] * 2 + ["points c"]
    (tmp_path / "zoo" / "smoke-n20").mkdir()  # a variant of the preset (a scaling point) trained a network:
    (tmp_path / "zoo" / "smoke-n20" / "final.pt").write_bytes(b"x")
    statistic("c", "smoke", tmp_path)  # nothing to a function of the preset's own zoo,
    across_points("c", "smoke", tmp_path)  # but one that reads its variants' computes again
    assert CALLS == ["c"] * 2 + ["points c"] * 2
    (tmp_path / "zoo" / "smoke-fp32").mkdir()  # a benchmark's zoo (bench_precision.py) is no scaling point
    (tmp_path / "zoo" / "smoke-fp32" / "final.pt").write_bytes(b"x")
    across_points("c", "smoke", tmp_path)
    assert CALLS == ["c"] * 2 + ["points c"] * 2

    monkeypatch.setattr(R, "code_digest", lambda: "another version of the library")
    statistic("c", "smoke", tmp_path)
    assert CALLS == ["c"] * 2 + ["points c"] * 2 + ["c"]
    monkeypatch.setenv(R.RECOMPUTE_ENV, "1")
    statistic("c", "smoke", tmp_path)
    assert CALLS[-2:] == ["c", "c"] and len(CALLS) == 6


def test_an_entry_recorded_without_a_digest_is_computed_again_and_then_reused(tmp_path, monkeypatch):
    import univenc.results as R
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    monkeypatch.delenv(R.RECOMPUTE_ENV, raising=False)
    path = results_file("smoke", tmp_path)
    path.parent.mkdir(parents=True)
    R.record(path, "smoke", "statistic(name='d', scale=1.0)", {"old": True})  # as an older version wrote it
    CALLS.clear()
    assert "table" in statistic("d", "smoke", tmp_path)
    assert "table" in statistic("d", "smoke", tmp_path)
    assert CALLS == ["d"]


def test_the_inputs_digest_follows_the_preset_settings(tmp_path):
    import dataclasses

    import univenc.results as R
    from univenc.presets import PRESETS
    changed = dataclasses.replace(PRESETS["smoke"], epochs=3)  # same name, another recipe
    assert R.inputs_digest("smoke", tmp_path) == R.inputs_digest(PRESETS["smoke"], tmp_path)
    assert R.inputs_digest(changed, tmp_path) != R.inputs_digest("smoke", tmp_path)


def test_a_cached_comparison_is_reused_only_by_the_same_code_settings_and_checkpoints(tmp_path, monkeypatch):
    """The caches of the experiments (comparisons, rank curves, trajectories) below the results file: a cache
    computed by another version of the library, at other settings of the preset, or before a checkpoint was
    rewritten is computed again, never read back."""
    import dataclasses
    import os

    import univenc.results as R
    from univenc import experiments as ex
    from univenc.presets import get_preset

    p, cache, checkpoint = get_preset("smoke"), tmp_path / "compare" / "a__b.pt", tmp_path / "final.pt"
    checkpoint.write_bytes(b"weights")
    os.utime(checkpoint, (1, 1))
    assert ex._cached(cache, [checkpoint], p) is None  # nothing yet
    ex._save_cache({"S": [0.5]}, cache, p)
    assert ex._cached(cache, [checkpoint], p) == {"S": [0.5]}
    assert ex._cached(cache, [checkpoint], dataclasses.replace(p, analysis_images=p.analysis_images + 1)) is None
    os.utime(checkpoint)  # retrained after the cache was written
    assert ex._cached(cache, [checkpoint], p) is None
    os.utime(checkpoint, (1, 1))
    monkeypatch.setattr(R, "code_digest", lambda: "another version of the library")
    assert ex._cached(cache, [checkpoint], p) is None
    torch.save({"S": [0.5]}, cache)  # a cache of the old format, without its key
    monkeypatch.undo()
    assert ex._cached(cache, [checkpoint], p) is None


def test_the_code_digest_follows_the_code_not_its_comments_or_docstrings(tmp_path):
    from univenc.results import source_digest

    pkg = tmp_path / "pkg"
    (pkg / "resources").mkdir(parents=True)
    (pkg / "resources" / "k.c").write_text("int f(void) { return 1; }\n")
    (pkg / "m.py").write_text('"""A module."""\nX = 1\n\n\ndef f(a):\n    """Doc."""\n    return a + X\n')
    before = source_digest(pkg)
    (pkg / "m.py").write_text('"""The module, reworded."""\nX = 1  # why\n\n\ndef f(a):\n    """Other doc."""\n\n'
                              '    return a + X\n')
    assert source_digest(pkg) == before  # words and layout only
    (pkg / "m.py").write_text('"""A module."""\nX = 2\n\n\ndef f(a):\n    """Doc."""\n    return a + X\n')
    changed = source_digest(pkg)
    assert changed != before
    (pkg / "m.py").write_text('"""A module."""\nX = 1\n\n\ndef f(a):\n    return a + X\n')
    assert source_digest(pkg) == before  # a docstring removed
    (pkg / "resources" / "k.c").write_text("int f(void) { return 2; }\n")
    assert source_digest(pkg) not in (before, changed)
    (pkg / "n.py").write_text("")
    assert source_digest(pkg) != source_digest(pkg / "resources")  # every file, named by its path
