"""A first run on a fresh machine: an empty data root and no network stop before any training, with one
message and no traceback; the notebooks do not crash on an empty selection."""
import os
import subprocess
import sys
import time

import matplotlib

matplotlib.use("Agg")

import univenc.data as D
from univenc.figures import plot_image_grid, plot_spatial_grid

# Every download goes through this proxy, a closed port on this machine: the network is unreachable.
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}


def test_reproduce_offline_on_an_empty_data_root_stops_before_training(tmp_path):
    env = {**os.environ, **OFFLINE, "UNIVENC_DATA": str(tmp_path / "data")}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "univenc.reproduce", "--preset", "smoke",
                          "--out-dir", str(tmp_path / "runs")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert time.perf_counter() - t0 < 120
    assert out.returncode != 0
    assert "Traceback" not in out.stderr + out.stdout
    msg = out.stderr
    assert "stopped before any training" in msg
    for name in D.REQUIRED_DATASETS:
        assert f"{name} [required]" in msg
        assert all(f in msg for f in D.EXPECTED_FILES[name]), name
    for name in D.OPTIONAL_DATASETS:  # cifar100, the MedMNIST subsets and FSDD
        assert f"{name} [optional, skipped]" in msg
    assert "connect to the internet" in msg and "copy the files there yourself" in msg
    assert msg.count("Remedies") == 1
    assert msg.count(f"{tmp_path / 'data'}/medmnist/,") == 1  # each folder named once, not once per subset
    assert not (tmp_path / "data" / "zoo").exists() and not list((tmp_path / "runs").glob("*.ipynb"))


def test_ensure_datasets_skips_a_missing_optional_dataset(tmp_path, monkeypatch):
    for k, v in OFFLINE.items():
        monkeypatch.setenv(k, v)
    status = D.ensure_datasets(required=(), optional=("cifar100",), root=tmp_path)
    assert status == {"cifar100": "skipped (optional): not in the data root"}


def test_plots_of_an_empty_selection_say_so():
    for fig in (plot_image_grid({}), plot_spatial_grid({})):
        assert "nothing to show" in " ".join(t.get_text() for t in fig.texts)
