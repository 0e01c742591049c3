"""The zoo's declarations: seeds, pairs, recipes, presets, skipping what is absent."""
import dataclasses
import json

import pytest

from univenc import zoo as Z


def test_every_network_has_its_own_init_seed():
    seeds = [s.init_seed for s in Z.ZOO]
    assert len(seeds) == len(set(seeds))
    assert len({s.name for s in Z.ZOO}) == len(Z.ZOO)


def test_no_compared_pair_shares_an_init_seed():
    for a, b, _ in Z.PAIRS:
        assert a in Z.ZOO_BY_NAME and b in Z.ZOO_BY_NAME
        assert Z.ZOO_BY_NAME[a].init_seed != Z.ZOO_BY_NAME[b].init_seed, (a, b)


def test_recipes_follow_appendix_b3():
    p = Z.PRESETS["paper"]
    std = Z.train_config(Z.ZOO_BY_NAME["fac_cifar10"], p)
    assert (std.epochs, std.lr, std.lr_step, std.momentum, std.weight_decay, std.augment) == (90, 0.005, 30, 0.9, 0, True)
    fig1b = Z.train_config(Z.ZOO_BY_NAME["vgg_k3_cifar10_random"], p)
    assert (fig1b.epochs, fig1b.lr, fig1b.lr_step, fig1b.augment) == (180, 0.02, 60, False)
    fig34 = Z.train_config(Z.ZOO_BY_NAME["fac_cifar10_random_a"], p)
    assert (fig34.epochs, fig34.lr, fig34.augment) == (360, 0.005, True)
    net = Z.build_model(Z.ZOO_BY_NAME["vgg_k3_cifar10_random"], Z.PRESETS["smoke"], 10)
    assert not any("BatchNorm" in type(m).__name__ for m in net.modules())
    assert net.config["init"] == "kaiming_relu"  # reduced presets: the default init does not train without BN
    assert Z.build_model(Z.ZOO_BY_NAME["vgg_k3_cifar10_random"], p, 10).config["init"] == "default"
    assert Z.build_model(Z.ZOO_BY_NAME["fac_cifar10"], Z.PRESETS["smoke"], 10).config["init"] == "default"


def test_presets_are_plain_data():
    for p in Z.PRESETS.values():
        assert dataclasses.is_dataclass(p)
        json.dumps(dataclasses.asdict(p))
    edited = dataclasses.replace(Z.PRESETS["cpu"], epochs=3)
    assert Z.get_preset(edited).epochs == 3
    with pytest.raises(ValueError, match="unknown preset"):
        Z.get_preset("huge")


def test_absent_datasets_are_skipped_with_a_message(tmp_path, capsys):
    status = Z.train_zoo("smoke", only=["fac_cifar100", "vgg_k3_imagenet32"], root=tmp_path, progress=False)
    assert list(status.status.str.startswith("skipped: dataset")) == [True, True]
    assert "cifar100" in capsys.readouterr().out


def test_load_net_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_zoo"):
        Z.load_net("fac_cifar10", "smoke", root=tmp_path)


def test_imagenet_entry_trains_from_an_image_folder(tmp_path):
    import numpy as np
    from PIL import Image
    for split in ("train", "val"):
        for c in ("n01", "n02"):
            (tmp_path / "imagenet" / split / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.random.default_rng(i).integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(
                    tmp_path / "imagenet" / split / c / f"{i}.png")
    preset = dataclasses.replace(Z.PRESETS["smoke"], width=0.0625, epochs=1, checkpoint_epochs=())
    status = Z.train_zoo(preset, only=["vgg_k7_imagenet"], root=tmp_path, progress=False)
    assert status.status.tolist() == ["trained"]
    net = Z.load_net("vgg_k7_imagenet", preset, root=tmp_path)
    assert net.config["kernel_size"] == 7 and net.config["num_classes"] == 2
