"""Learning trajectories on a tiny trained pair: epoch 0 is the initialisation, the statistics agree with the
functions they come from, and any list of checkpoint files (univenc's or plain state dicts) is accepted."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from test_training import tiny_data, tiny_model
from univenc.models import VGG
from univenc.similarity import compare
from univenc.spatial import spatial_report
from univenc.storage import load_checkpoint
from univenc.models import load_checkpoint_model
from univenc.trajectories import learning_trajectory
from univenc.training import TrainConfig, to_float, train

CFG = TrainConfig(epochs=4, lr=0.05, lr_step=2, batch_size=16, checkpoint_epochs=(1, 2))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for run, seed in (("a", 7), ("b", 8)):
        torch.manual_seed(seed)
        net = VGG(num_classes=4, width=0.0625)
        train(net, tiny_data(seed=seed), replace(CFG, seed=seed), root / run, progress=False)
    paths = {run: sorted((root / run).glob("epoch_*.pt")) + [root / run / "final.pt"] for run in "ab"}
    batches = [to_float(tiny_data(seed=3).train_images[:32])]
    return paths, batches


def test_trajectory_of_a_trained_pair(pair):
    paths, batches = pair
    table = learning_trajectory(paths["a"], paths["b"], batches, n_draws=2, progress=False)
    assert sorted(table.epoch.unique()) == [0, 1, 2, 4]
    assert set(table.run) == {"a", "b"} and table[table.run == "b"].S.isna().all()
    k_by_k = table.dropna(subset=["top5"])
    assert len(k_by_k) == 2 * 4 * 8  # 2 runs x 4 epochs x 8 conv layers of VGG-11
    assert ((k_by_k.top5 > 0) & (k_by_k.top5 <= 1)).all() and (table.r_eff >= 0).all()
    final = k_by_k[k_by_k.epoch == 4]
    np.testing.assert_allclose(final.spatial_score, 1.0)  # the final network against itself
    assert (k_by_k[k_by_k.epoch == 0].spatial_score < 1).all()

    # S at an epoch is compare() of the two checkpoints of that epoch, aligned the same way
    net_a, net_b = (load_checkpoint_model(paths[r][-1])[0] for r in "ab")
    ref = compare(net_a, net_b, batches, n_draws=2, progress=False).table
    got = table[(table.run == "a") & (table.epoch == 4)].set_index("layer").loc[ref.layer_a]
    np.testing.assert_allclose(got.S.to_numpy(), ref.S.to_numpy(), equal_nan=True)
    np.testing.assert_allclose(got.r_eff.to_numpy(), ref.r_eff_a.to_numpy(), rtol=1e-10)
    # top5 is spatial_report's top-5 variance fraction of that checkpoint
    report = spatial_report(load_checkpoint_model(paths["a"][1])[0])
    report = report[report.kind == "Conv2d"]  # its linear classifier is listed too
    mine = table[(table.run == "a") & (table.epoch == 1)].set_index("layer").loc[report.layer]
    np.testing.assert_allclose(mine.top5.to_numpy(), report.top5.to_numpy(), rtol=1e-12)


def test_epoch_0_is_the_initialisation(pair):
    paths, _ = pair
    net, epoch = load_checkpoint_model(paths["a"][0])
    torch.manual_seed(7)
    init = VGG(num_classes=4, width=0.0625)
    assert epoch == 0
    for k, v in init.state_dict().items():
        torch.testing.assert_close(net.state_dict()[k], v, rtol=0, atol=0)


def test_a_users_own_list_of_plain_state_dicts(pair, tmp_path):
    paths, _ = pair
    files = []
    for p in paths["a"]:
        ckpt = load_checkpoint(p)
        files.append(tmp_path / f"mynet_epoch_{ckpt['epoch']:03d}.pt")
        torch.save(ckpt["state_dict"], files[-1])  # what a user's own training loop writes
    mine = learning_trajectory(files[::-1], model=VGG(num_classes=4, width=0.0625), progress=False)
    ref = learning_trajectory(paths["a"], progress=False)
    cols = ["epoch", "layer", "top5", "spatial_score", "r_eff"]
    np.testing.assert_allclose(mine.sort_values(["epoch", "layer"])[cols[2:]].to_numpy(),
                               ref.sort_values(["epoch", "layer"])[cols[2:]].to_numpy(), rtol=1e-12)


def test_clear_errors(pair, tmp_path):
    paths, batches = pair
    plain = tmp_path / "weights.pt"
    torch.save(load_checkpoint(paths["a"][0])["state_dict"], plain)
    with pytest.raises(ValueError, match="pass model="):
        learning_trajectory([plain])
    with pytest.raises(ValueError, match="cannot tell the epoch"):
        learning_trajectory([plain], model=tiny_model())
    with pytest.raises(ValueError, match="pass batches="):
        learning_trajectory(paths["a"], paths["b"])
    with pytest.raises(ValueError, match="share no epoch"):
        learning_trajectory(paths["a"][:1], paths["b"][1:2], batches, progress=False)
    with pytest.raises(ValueError, match="does not fit"):
        load_checkpoint_model(plain, model=VGG(num_classes=4, width=0.125))
