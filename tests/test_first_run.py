"""A first run on a fresh machine: an empty data root and no network stop before any training, with one
message and no traceback; the notebooks do not crash on an empty selection."""
import os
import subprocess
import sys
import time

import matplotlib
import pytest

from conftest import needs

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


def _reproduce(args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "univenc.reproduce", *args], env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def _data_root_with_a_corrupt_cifar_batch(tmp_path):
    """A data root linked to the real datasets, with two bytes of CIFAR-10's data_batch_1 changed."""
    real, root = D.data_root(), tmp_path / "data"
    root.mkdir()
    for entry in real.iterdir():
        if entry.name not in ("cifar-10-batches-py", "zoo", "results", "jobs"):
            (root / entry.name).symlink_to(entry)
    (root / "cifar-10-batches-py").mkdir()
    for f in (real / "cifar-10-batches-py").iterdir():
        (root / "cifar-10-batches-py" / f.name).symlink_to(f)
    batch = root / "cifar-10-batches-py" / "data_batch_1"
    data = bytearray(batch.read_bytes())
    data[5000] ^= 0xFF
    data[90000] ^= 0x01
    batch.unlink()
    batch.write_bytes(bytes(data))
    return root, batch


@needs("cifar10")
def test_a_corrupt_cifar_batch_stops_the_reproduction_before_any_training(tmp_path):
    root, batch = _data_root_with_a_corrupt_cifar_batch(tmp_path)
    out = _reproduce(["--preset", "smoke", "--data-root", str(root), "--out-dir", str(tmp_path / "runs")])
    assert out.returncode == 2
    assert "Traceback" not in out.stderr + out.stdout
    assert "stopped before any training" in out.stderr and f"{batch} (cifar10)" in out.stderr
    assert "delete each file listed" in out.stderr and out.stderr.count(str(batch)) == 1
    assert not (root / "zoo").exists() and not list((tmp_path / "runs").glob("*.ipynb"))
    with pytest.raises(D.CorruptDatasetError, match="data_batch_1"):  # loading it names it too, not "missing"
        D.load_dataset("cifar10", train=True, root=root, download=False)


def test_bad_arguments_get_one_line_and_no_traceback(tmp_path):
    for args, message in [(["--preset", "foo"], "unknown preset 'foo'"),
                          (["--preset", "smoke", "--only", "02_nothing"], "no notebook named 02_nothing"),
                          (["--preset", "smoke", "--jobs", "0"], "jobs must be"),
                          (["--preset", "smoke", "--max-steps", "0"], "max_steps must be"),
                          (["--preset", "smoke", "--results", str(tmp_path / "none.pt")], "no results file")]:
        out = _reproduce(args + ["--out-dir", str(tmp_path / "runs")])
        assert out.returncode == 2, args
        assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
        assert message in out.stderr, (args, out.stderr)


def test_relative_folders_are_the_callers_not_the_notebooks(tmp_path, monkeypatch):
    """The notebooks run in notebooks/: a relative --figures-dir or --data-root reaches them made absolute."""
    from univenc import reproduce
    seen = {}
    monkeypatch.setattr(reproduce, "_execute", lambda nbs, p, params, *rest: seen.update(params) or [])
    monkeypatch.chdir(tmp_path)
    reproduce.run("smoke", data_root="my_data", figures_dir="my_figures", out_dir="my_runs", analysis_only=True,
                  only=["05_normalized_similarity"])
    assert seen["figures_dir"] == str(tmp_path / "my_figures") and seen["data_root"] == str(tmp_path / "my_data")


def test_timings_of_one_notebook_at_a_time_add_up_to_one_table(tmp_path, monkeypatch):
    """``--only`` runs keep the rows of the notebooks they did not run; a rerun replaces its notebook's row."""
    import pandas as pd

    from univenc import reproduce
    runs = []  # the seconds of a notebook's row: how many times it has run

    def execute(nbs, *rest):
        runs.extend(nb.stem for nb in nbs)
        return [dict(notebook=nb.stem, seconds=runs.count(nb.stem), peak_memory_gb=1.0) for nb in nbs]
    monkeypatch.setattr(reproduce, "_execute", execute)
    for only in (["05_normalized_similarity"], ["03_alignment", "04_channel_universality"],
                 ["05_normalized_similarity"]):
        reproduce.run("smoke", out_dir=tmp_path, analysis_only=True, only=only)
    table = pd.read_csv(tmp_path / "timings.csv").set_index("notebook")
    assert table.index.tolist() == ["03_alignment", "04_channel_universality", "05_normalized_similarity"]
    assert table["seconds"].tolist() == [1, 1, 2]
    assert table["finished"].str.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all()


def test_the_notebooks_that_train_run_first_and_the_others_longest_first(tmp_path):
    """After the training, the analysis notebooks run side by side: the longest of the last run first, those it
    did not time before them; with --analysis-only nothing trains, and notebook 01 is one of the others."""
    import pandas as pd

    from univenc.reproduce import notebooks, schedule
    nbs = notebooks(scaling=True)
    training, reading = schedule(nbs, False, tmp_path / "none.csv")
    assert [nb.stem for nb in training] == ["01_train_zoo", "11_scaling"]
    assert reading == [nb for nb in nbs if nb not in training]  # no timings: in their order
    timed = {"06_claims": 477.2, "04_channel_universality": 184.2, "02_spatial_eigenvectors": 30.6}
    pd.DataFrame({"notebook": list(timed), "seconds": list(timed.values())}).to_csv(tmp_path / "t.csv")
    training, reading = schedule(nbs, True, tmp_path / "t.csv")
    assert training == [] and len(reading) == len(nbs)
    stems = [nb.stem for nb in reading]
    assert stems[-3:] == ["06_claims", "04_channel_universality", "02_spatial_eigenvectors"]
    assert stems[:-3] == [nb.stem for nb in nbs if nb.stem not in timed]
