"""The zoo's declarations: seeds, pairs, recipes, presets, skipping what is absent."""
import dataclasses
import json
from dataclasses import replace

import pandas as pd
import pytest
import torch

from conftest import needs
from univenc import catalogue as C
from univenc import zoo as Z
from univenc.presets import PRESETS, get_preset
from univenc.data import data_root
from univenc.figures import save_table
from univenc.storage import load_checkpoint


def test_every_network_has_its_own_init_seed():
    seeds = [s.init_seed for s in C.ZOO]
    assert len(seeds) == len(set(seeds))
    assert len({s.name for s in C.ZOO}) == len(C.ZOO)


def test_no_compared_pair_shares_an_init_seed():
    for a, b, _ in C.PAIRS:
        assert a in C.ZOO_BY_NAME and b in C.ZOO_BY_NAME
        assert C.ZOO_BY_NAME[a].init_seed != C.ZOO_BY_NAME[b].init_seed, (a, b)


def test_recipes_follow_appendix_b3():
    p = PRESETS["paper"]
    std = Z.train_config(C.ZOO_BY_NAME["fac_cifar10"], p)
    assert (std.epochs, std.lr, std.lr_step, std.momentum, std.weight_decay, std.augment) == (90, 0.005, 30, 0.9, 0, True)
    fig1b = Z.train_config(C.ZOO_BY_NAME["vgg_k3_cifar10_random"], p)
    assert (fig1b.epochs, fig1b.lr, fig1b.lr_step, fig1b.augment) == (180, 0.02, 60, False)
    fig34 = Z.train_config(C.ZOO_BY_NAME["fac_cifar10_random_a"], p)
    assert (fig34.epochs, fig34.lr, fig34.augment) == (360, 0.005, True)
    net = Z.build_model(C.ZOO_BY_NAME["vgg_k3_cifar10_random"], PRESETS["smoke"], 10)
    assert not any("BatchNorm" in type(m).__name__ for m in net.modules())
    assert net.config["init"] == "kaiming_relu"  # reduced presets: the default init does not train without BN
    assert Z.build_model(C.ZOO_BY_NAME["vgg_k3_cifar10_random"], p, 10).config["init"] == "default"
    assert Z.build_model(C.ZOO_BY_NAME["fac_cifar10"], PRESETS["smoke"], 10).config["init"] == "default"


def test_small_datasets_get_the_gradient_steps_of_cifar10():
    for preset in ("cpu", "paper"):
        p = PRESETS[preset]
        ref = Z.train_images(C.ZOO_BY_NAME["fac_cifar10"], p) * Z.train_config(C.ZOO_BY_NAME["fac_cifar10"], p).epochs
        for ds in C.NON_NATURAL:
            for name in (f"vgg_k3_{ds}", f"fac_{ds}"):
                spec = C.ZOO_BY_NAME[name]
                seen = Z.train_images(spec, p) * Z.train_config(spec, p).epochs
                assert abs(seen / ref - 1) < 0.05, (preset, name, seen, ref)
    # at cpu scale: all of their training images (fewer than the 10,000 cap)
    assert Z.train_images(C.ZOO_BY_NAME["fac_pneumoniamnist"], "cpu") == 4708
    # class subsets count their own classes: 5 CIFAR-10 classes at 1000, 50 CIFAR-100 ones at the 10,000 cap
    assert Z.train_images(C.ZOO_BY_NAME["fac_cifar5"], "cpu") == 5000
    assert Z.train_images(C.ZOO_BY_NAME["fac_cifar100a"], "cpu") == 10000
    assert Z.train_images(C.ZOO_BY_NAME["fac_cifar100b"], "paper") == 25000
    with pytest.raises(ValueError, match="TRAIN_CLASS_COUNTS"):
        Z.train_images(C.ZOO_BY_NAME["fac_imagenet32"], "cpu")


def test_a_preset_precision_reaches_every_recipe():
    bf16 = replace(PRESETS["smoke"], name="smoke-bf16", precision="bf16")
    assert {Z.train_config(s, bf16).precision for s in C.ZOO} == {"bf16"}  # asked for by name: every network
    assert Z.ablation_config(C.ABLATIONS[-1], C.ZOO_BY_NAME["fac_cifar10"], bf16).precision == "bf16"
    # "auto": bfloat16 where this CPU runs it fast, and only for the architectures whose whole runs were measured
    assert {Z.train_config(s, "smoke").precision for s in C.ZOO if s.arch in Z.BF16_MEASURED} == {"auto"}
    assert {Z.train_config(s, "smoke").precision for s in C.ZOO if s.arch not in Z.BF16_MEASURED} in ({"fp32"}, set())


def test_resnet_entries_are_torchvision_resnet18_and_reload(tmp_path):
    import torchvision

    from univenc.storage import save_torch
    from univenc.models import load_checkpoint_model

    net = Z.build_model(C.ZOO_BY_NAME["resnet18_cifar10"], "smoke", 10)
    reference = torchvision.models.resnet18(num_classes=10)
    assert net.state_dict().keys() == reference.state_dict().keys()
    save_torch({"state_dict": net.state_dict(), "config": {"model": net.config}, "epoch": 3}, tmp_path / "x.pt")
    back, epoch = load_checkpoint_model(tmp_path / "x.pt")
    assert epoch == 3 and isinstance(back, torchvision.models.ResNet)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), back.state_dict().values()))
    assert Z.train_config(C.ZOO_BY_NAME["resnet18_cifar10"], "cpu").checkpoint_epochs == ()  # 90 MB each


def test_presets_are_plain_data():
    for p in PRESETS.values():
        assert dataclasses.is_dataclass(p)
        json.dumps(dataclasses.asdict(p))
    edited = dataclasses.replace(PRESETS["cpu"], epochs=3)
    assert get_preset(edited).epochs == 3
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")


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
    preset = dataclasses.replace(PRESETS["smoke"], width=0.0625, epochs=1, checkpoint_epochs=())
    status = Z.train_zoo(preset, only=["vgg_k7_imagenet"], root=tmp_path, progress=False)
    assert status.status.tolist() == ["trained"]
    net = Z.load_net("vgg_k7_imagenet", preset, root=tmp_path)
    assert net.config["kernel_size"] == 7 and net.config["num_classes"] == 2


def test_reduced_random_label_recipes_and_the_data_budget():
    cpu = PRESETS["cpu"]
    for name, recipe in (("vgg_k3_cifar10_random", "random_fig1b"), ("fac_cifar10_random_a", "random_fig34")):
        spec, override = C.ZOO_BY_NAME[name], cpu.random_label_recipes[recipe]
        cfg = Z.train_config(spec, cpu)
        assert (cfg.epochs, cfg.lr, cfg.schedule) == (override["epochs"], override["lr"], override["schedule"])
        assert Z._task_for(spec, cpu).per_class == override["per_class"]
        # the true-label networks' checkpoint epochs are saved too: trajectories can be matched by epoch
        assert set(cpu.checkpoint_epochs) <= set(cfg.checkpoint_epochs)
        assert max(cfg.checkpoint_epochs) < cfg.epochs
    assert Z.train_config(C.ZOO_BY_NAME["vgg_k3_cifar10_random"], cpu).augment is False
    assert Z.train_config(C.ZOO_BY_NAME["fac_cifar10_random_a"], cpu).augment is True
    assert Z.train_config(C.ZOO_BY_NAME["resnet18_cifar10_random"], cpu).augment is False  # BN kept, no augmentation
    # every random-label network sees exactly the images of its true-label partner, at every preset and variant
    partners = {"vgg_k3_cifar10_random": "vgg_k3_cifar10", "fac_cifar10_random_a": "fac_cifar10",
                "fac_cifar10_random_b": "fac_cifar10", "resnet18_cifar10_random": "resnet18_cifar10"}
    for preset in (*PRESETS.values(), get_preset("cpu-n5000"), get_preset("cpu-n250")):
        for random, partner in partners.items():
            assert Z.train_images(C.ZOO_BY_NAME[random], preset) == Z.train_images(C.ZOO_BY_NAME[partner], preset)
            assert Z._task_for(C.ZOO_BY_NAME[random], preset).subset_seed == \
                Z._task_for(C.ZOO_BY_NAME[partner], preset).subset_seed  # the same draw of those images
    per_class = {n: Z._task_for(C.ZOO_BY_NAME[n], cpu).per_class
                 for n in ("fac_cifar10", "fac_cifar5", "fac_cifar100", "fac_cifar100a", "fac_mnist")}
    assert per_class == {"fac_cifar10": 1000, "fac_cifar5": 1000, "fac_cifar100": 100, "fac_cifar100a": 200,
                         "fac_mnist": 1000}
    assert Z._task_for(C.ZOO_BY_NAME["fac_cifar100"], PRESETS["paper"]).per_class is None


def test_ablation_sweep_is_declared_as_data(tmp_path):
    spec = C.ZOO_BY_NAME["fac_cifar10"]
    base = Z.train_config(spec, "cpu")
    by_name = {a.name: a for a in C.ABLATIONS}
    assert {a.kind for a in C.ABLATIONS} == {"baseline", "duration", "lr", "optimizer"}
    assert Z.ablation_config(by_name["epochs x3"], spec, "cpu").epochs == 3 * base.epochs
    assert Z.ablation_config(by_name["epochs x1/3"], spec, "cpu").epochs == base.epochs // 3
    assert Z.ablation_config(by_name["lr x3"], spec, "cpu").lr == pytest.approx(3 * base.lr)
    adamw = Z.ablation_config(by_name["AdamW"], spec, "cpu")
    assert (adamw.optimizer, adamw.lr, adamw.weight_decay, adamw.epochs) == ("adamw", 1e-3, 0.01, base.epochs)
    paper = Z.ablation_checkpoint(by_name["baseline"], "twin_a", "paper", tmp_path)
    assert paper == Z.checkpoint_path("fac_cifar10", "paper", tmp_path)  # at the zoo's scale: the zoo's own
    assert "ablations" in str(Z.ablation_checkpoint(by_name["baseline"], "twin_a", "cpu", tmp_path))
    # the random partner trains on the twins' images of the sweep (250 per class at cpu): a network of its own there,
    # the zoo's own at the paper's scale
    assert "ablations" in str(Z.ablation_checkpoint(by_name["baseline"], "random", "cpu", tmp_path))
    assert Z.sweep_per_class(C.ZOO_BY_NAME["fac_cifar10_random_a"], PRESETS["cpu"]) == 250
    assert Z.ablation_checkpoint(by_name["baseline"], "random", "paper", tmp_path) == \
        Z.checkpoint_path("fac_cifar10_random_a", "paper", tmp_path)
    # ... for the preset's sweep epochs where it names them (cpu: B.3's 4x, which fit the sweep's fewer images),
    # scaled by each setting; else its zoo recipe's
    random, cpu = C.ZOO_BY_NAME["fac_cifar10_random_a"], PRESETS["cpu"]
    assert Z.ablation_config(by_name["baseline"], random, cpu).epochs == cpu.ablation_random_epochs == 4 * cpu.epochs
    assert Z.ablation_config(by_name["epochs x3"], random, cpu).epochs == 3 * cpu.ablation_random_epochs
    assert Z.ablation_config(by_name["baseline"], random, "paper").epochs == Z.train_config(random, "paper").epochs
    zoo_scale = dataclasses.replace(cpu, name="cpu-zoo-scale", ablation_per_class=None)
    assert "ablations" in str(Z.ablation_checkpoint(by_name["baseline"], "random", zoo_scale, tmp_path))


@needs("cifar10")
def test_zoo_table_is_read_from_the_checkpoints(tmp_path):
    preset = dataclasses.replace(PRESETS["smoke"], random_label_recipes={
        "random_fig1b": dict(per_class=5, epochs=2, lr=0.005, schedule="onecycle")})
    (tmp_path / "cifar-10-batches-py").symlink_to(data_root() / "cifar-10-batches-py")  # real data, own zoo
    Z.train_zoo(preset, only=["vgg_k3_cifar10_random"], root=tmp_path, progress=False)
    table = Z.zoo_table(preset, tmp_path)
    save_table(table, "zoo.csv", tmp_path)
    row = table.iloc[0]
    ckpt = load_checkpoint(Z.checkpoint_path("vgg_k3_cifar10_random", preset, tmp_path))
    assert (row["name"], row.labels, row.train_images, row.epochs, row.schedule) == \
        ("vgg_k3_cifar10_random", "random a", 50, 2, "onecycle")
    assert row.train_acc == ckpt["train_eval_acc"] and row.test_acc == ckpt["log"][-1]["test_acc"]
    assert list(pd.read_csv(tmp_path / "zoo.csv").columns) == [
        "preset", "name", "arch", "task", "labels", "train_images", "epochs", "lr", "schedule", "precision",
        "train_acc", "test_acc", "seconds", "travel_mean", "travel_min", "top5_mean", "top5_isotropic"]
    assert row.precision in ("fp32", "bf16") and 0 < row.travel_min <= row.travel_mean  # it moved from its init
    assert row.top5_isotropic == pytest.approx(5 / 9)


def test_a_dry_run_keeps_the_preset_and_stops_after_its_steps():
    from univenc.presets import DRY_RUN_PROBE_IMAGES, PresetError, dry_run
    dry = get_preset("paper", max_steps=20)
    assert dry.name == "paper-steps20" and get_preset("paper-steps20") == dry == dry_run("paper", 20)
    assert (dry.width, dry.per_class) == (1.0, None)
    assert dry.analysis_images == DRY_RUN_PROBE_IMAGES < PRESETS["paper"].analysis_images  # the passes, not the sizes
    assert get_preset("smoke", max_steps=2).analysis_images == PRESETS["smoke"].analysis_images  # never more
    cfg = Z.train_config(C.ZOO_BY_NAME["fac_cifar10"], dry)
    assert cfg.max_steps == 20 and cfg.train_eval_images == dry.max_test_images
    assert Z.train_config(C.ZOO_BY_NAME["fac_cifar10"], "paper").max_steps is None
    assert Z.checkpoint_path("fac_cifar10", dry) != Z.checkpoint_path("fac_cifar10", "paper")
    for bad in ("paper-steps0", "papers", "foo-steps3"):
        with pytest.raises(PresetError, match="unknown preset|max_steps"):
            get_preset(bad)
    with pytest.raises(PresetError, match="a dry run already"):
        dry_run(dry, 3)


def test_a_network_trained_with_another_recipe_is_set_aside_and_trained_again(tmp_path, capsys):
    from univenc.runner import Task, zoo_tasks
    (tmp_path / "cifar-10-batches-py").symlink_to(data_root() / "cifar-10-batches-py")  # real data, own zoo
    old = replace(PRESETS["smoke"], epochs=1)
    Z.train_zoo(old, only=["vgg_k3_cifar10"], root=tmp_path, progress=False)
    path = Z.checkpoint_path("vgg_k3_cifar10", "smoke", tmp_path)
    first = load_checkpoint(path)
    assert Task("vgg_k3_cifar10").trained(old, tmp_path) and not Task("vgg_k3_cifar10").trained("smoke", tmp_path)
    spec = C.ZOO_BY_NAME["vgg_k3_cifar10"]
    assert Z.recipe_change(path, Z.train_config(spec, "smoke"), 400, 0.0625) == "epochs 1 -> 2"
    assert Z.recipe_change(path, Z.train_config(spec, old), 400, 0.0625) is None
    assert Z.recipe_change(path, Z.train_config(spec, old), 800, 0.0625) == "training images 400 -> 800"
    assert [t.name for t in zoo_tasks("smoke", tmp_path, only=["vgg_k3_cifar10"])] == ["vgg_k3_cifar10"]
    wider = replace(old, width=0.125)  # the same recipe at another width
    assert Z.recipe_change(path, Z.train_config(spec, wider), 400, 0.125) == "width 0.0625 -> 0.125"

    Z.train_zoo("smoke", only=["vgg_k3_cifar10"], root=tmp_path, progress=False)
    assert "trains again" in capsys.readouterr().out
    assert load_checkpoint(path)["config"]["train"]["epochs"] == 2 and Task("vgg_k3_cifar10").trained("smoke", tmp_path)
    kept = list(path.parent.glob("stale/*/final.pt"))  # nothing is lost: the old network is kept beside it
    assert len(kept) == 1 and torch.equal(load_checkpoint(kept[0])["state_dict"]["features.0.0.weight"],
                                          first["state_dict"]["features.0.0.weight"])
    assert "epochs 1 -> 2" in (kept[0].parent / "why.txt").read_text()
    assert zoo_tasks("smoke", tmp_path, only=["vgg_k3_cifar10"]) == []
