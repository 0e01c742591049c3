"""Notebooks: committed thin and without outputs; the smoke preset runs all of them end to end, and every figure
and the claims come out the same again from the results file alone (no checkpoint, no dataset)."""
import json
import shutil

import matplotlib.image
import numpy as np

import pytest

from conftest import needs
from univenc.reproduce import notebooks

EXPECTED_FIGURES = ["data_examples", "training_curves", "fig1a_spatial_eigenvectors", "fig1b_random_labels",
                    "fig1c_datasets", "fig5_raw_filters", "fig2_alignment", "fig2_accuracy_vs_rank",
                    "fig3_true_vs_random", "fig3_datasets", "fig4_normalized_similarity",
                    "fig6_learning_trajectories", "fig7_ablations", "fig8_resnet", "fig9_non_natural",
                    "fig11_architectures", "fig12_universal_init"]


def test_notebooks_are_numbered_parametrised_and_stripped():
    nbs = notebooks(scaling=True)
    assert [nb.stem[:2] for nb in nbs] == [f"{i:02d}" for i in range(14)]
    assert "11_scaling" not in [nb.stem for nb in notebooks()]  # its own target: make scaling
    for nb in nbs:
        cells = json.loads(nb.read_text())["cells"]
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, nb.name
        assert "preset" in "".join(tagged[0]["source"])
        for c in cells:
            if c["cell_type"] == "code":
                assert c.get("outputs") == [] and c.get("execution_count") is None, f"{nb.name} has outputs"


@needs("cifar10")
@needs("mnist")
@pytest.mark.slow
def test_smoke_preset_runs_every_notebook(tmp_path):
    from univenc.data import data_root
    from univenc.reproduce import run
    # a data root of its own, with the datasets linked: no zoo or results of an earlier run (a scaling table
    # recorded by one would fill the claims' scale columns)
    root = tmp_path / "data"
    root.mkdir()
    for entry in data_root().iterdir():
        if entry.name not in ("zoo", "results", "jobs"):
            (root / entry.name).symlink_to(entry)
    run("smoke", data_root=root, figures_dir=tmp_path / "figures", out_dir=tmp_path / "runs")
    for name in EXPECTED_FIGURES:
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000, name
        assert (tmp_path / "figures" / f"{name}.pdf").exists(), name
    claims = json.loads((tmp_path / "figures" / "claims.json").read_text())
    controls = ["9-MNIST", "9-X-ray", "9-ultrasound", "9-retina", "9-spectrogram"]
    assert [c["id"] for c in claims] == [1, 2, "2-all", *range(3, 9), *controls, *range(10, 20)]
    assert all(c["with_scale"] == "not measured (make scaling)" for c in claims)
    assert all(c["preset"] == "smoke" for c in claims)
    assert "| # | claim |" in (tmp_path / "figures" / "claims.md").read_text()
    zoo = (tmp_path / "figures" / "zoo.csv").read_text()
    assert zoo.startswith("preset,name,arch") and "vgg_k3_cifar10_random" in zoo

    # again from the results file alone, in an empty data root: the same figures, claims and zoo table
    from univenc.results import results_file
    results = shutil.copy(results_file("smoke", root), tmp_path / "results.pt")
    assert results.stat().st_size < 50e6
    run("smoke", data_root=tmp_path / "empty", figures_dir=tmp_path / "rebuilt", out_dir=tmp_path / "runs2",
        results=results)
    assert not (tmp_path / "empty" / "zoo").exists()
    assert json.loads((tmp_path / "rebuilt" / "claims.json").read_text()) == claims
    assert (tmp_path / "rebuilt" / "zoo.csv").read_text() == zoo
    for name in EXPECTED_FIGURES[1:]:  # all but data_examples, which shows the datasets themselves
        a, b = (matplotlib.image.imread(d / f"{name}.png") for d in (tmp_path / "figures", tmp_path / "rebuilt"))
        assert a.shape == b.shape and np.array_equal(a, b), name
    assert sorted(p.name for p in (tmp_path / "runs").iterdir() if p.suffix == ".ipynb") == \
        sorted(nb.name for nb in notebooks())

    # the scaling study, its own target: its figure, and the claims report's scale columns
    run("smoke", data_root=root, figures_dir=tmp_path / "figures", out_dir=tmp_path / "runs", only=["11_scaling"])
    assert (tmp_path / "figures" / "fig10_scaling.png").stat().st_size > 1000
    scaled = {c["id"]: c["with_scale"] for c in json.loads((tmp_path / "figures" / "claims.json").read_text())}
    assert scaled[4] == "not in the scaling study" and scaled[12] == "not in the scaling study"
    assert all(scaled[c] != "not in the scaling study" for c in (1, 2, 3, 6, 7, 8, 10))
