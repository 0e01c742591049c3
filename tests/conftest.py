import pytest

from univenc.data import data_root, is_available


def needs(dataset):
    """Skip unless the real dataset's files are in the data root (CI unpacks them; see .ci/run)."""
    return pytest.mark.skipif(not is_available(dataset), reason=f"{dataset} is not in the data root "
                              f"{data_root()}: run `make data` (online) or copy the files there")


def assert_resumed_to_the_uninterrupted_weights(names, preset, ref_root, root):
    """Each network of ``root`` was trained epoch by epoch once (no epoch repeated or skipped) and ends with the
    weights of the same network trained without interruption in ``ref_root``."""
    import torch

    from univenc.storage import load_checkpoint
    from univenc.zoo import checkpoint_path
    for name in names:
        a = load_checkpoint(checkpoint_path(name, preset, ref_root))
        b = load_checkpoint(checkpoint_path(name, preset, root))
        assert [r["epoch"] for r in b["log"]] == list(range(1, preset.epochs + 1)), name
        for k, v in a["state_dict"].items():
            assert torch.equal(v, b["state_dict"][k]), (name, k)
