"""The results file: values recorded when computed, read back instead of computed, clear errors otherwise."""
import numpy as np
import pandas as pd
import pytest

from univenc.results import RESULTS_ENV, MissingResultError, recorded, results_file

CALLS = []


@recorded
def statistic(name, preset, root=None, scale: float = 1.0):
    CALLS.append(name)
    return {"table": pd.DataFrame({"x": [1.0, 2.0]}) * scale, "cosines": np.eye(64), "small": np.eye(3)}


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
