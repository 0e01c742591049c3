"""The `paper` preset's path on a CPU: networks of the paper zoo at full width on their full data, one optimiser step
each (a dry run, :func:`univenc.presets.dry_run`), through the same job runner as a real run, then the analysis at
paper width (layers of d = 4608 and 5120 inputs, 512 channels). The whole dry run, every notebook included, is
``make reproduce PRESET=paper MAX_STEPS=N`` (run to its end on 2 CPU cores at N = 20, every notebook in 5.2 hours:
docs/measurements.md)."""
import dataclasses

import pytest

from conftest import needs
from univenc import experiments as ex
from univenc.data import data_root
from univenc.presets import dry_run
from univenc.runner import JobOptions, run_zoo
from univenc.storage import load_checkpoint
from univenc.zoo import load_net, zoo_checkpoints

NETS = ["vgg_k3_cifar10", "vgg_k3_cifar10_bis", "fac_cifar10"]


@needs("cifar10")
@pytest.mark.slow
def test_the_paper_path_at_full_width_in_one_step(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "cifar-10-batches-py").symlink_to(data_root() / "cifar-10-batches-py")
    # The test keeps CI's budget with fewer probe images and draws; the networks and their shapes are the paper's.
    preset = dataclasses.replace(dry_run("paper", 1), analysis_images=250, n_draws=2, null_seeds=2)
    status = run_zoo(preset, root, JobOptions(jobs=2, threads=1), only=NETS, ablations=False, progress=False)
    assert sorted(status.status) == ["trained"] * len(NETS)
    for name in NETS:
        log = load_checkpoint(zoo_checkpoints(name, preset, root)[-1])["log"]
        assert [r["steps"] for r in log] == [1]  # one optimiser step, on the full training set's first batch
    net = load_net("vgg_k3_cifar10", preset, root)
    assert [m.out_channels for m in net.modules() if hasattr(m, "out_channels")][-1] == 512

    # (a factorized pair needs a 5120 x 5120 Procrustes SVD per deep layer, minutes on a CPU: the full dry run has it)
    standard = ex.compare_pair("vgg_k3_cifar10", "vgg_k3_cifar10_bis", preset, root)["table"]
    assert standard.d.max() == 512 * 9 and len(standard) == 8
    assert standard.residual.between(-1e-3, 2).all()  # relative, from float32 products
    spatial = ex.spatial_score_table(["vgg_k3_cifar10", "vgg_k3_cifar10_bis"], preset, root)
    assert len(spatial) == 8 and spatial.score.between(0, 1).all()
    ranks = ex.layer_ranks(["fac_cifar10"], preset, root)
    assert ranks.Cout.tolist()[-1] == 512 and ranks.d.max() == 512 * 10
