"""The univenc command line: every subcommand, model references, and a clear one-line error (exit 2, no
traceback) for each kind of bad input."""
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import needs
from univenc.alignment import LayerPairingError, pair_layers
from univenc.cli import main
from univenc.refs import ModelReferenceError, resolve_model

FACTORIES = textwrap.dedent('''
    import torch
    from torch import nn

    def tiny_net(seed=0):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(16, 10))

    def tiny_net_b():
        return tiny_net(1)

    def depthwise_only():
        return nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, groups=3), nn.Conv2d(3, 3, 3, padding=1, groups=3))

    def pointwise_only():
        return nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 1))

    def non_square():
        return nn.Sequential(nn.Conv2d(3, 8, (1, 3), padding=(0, 1)), nn.Conv2d(8, 8, 3, padding=1))

    def no_conv():
        return nn.Sequential(nn.Flatten(), nn.Linear(3072, 10))

    def fixed_input():
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))

    def vgg_quarter():  # univenc_vgg11 at a quarter of its width: the README's --arch, cheaper
        from univenc.models import VGG
        return VGG(10, 3, 0.25)

    def nan_weights():
        net = tiny_net()
        with torch.no_grad():
            net[3].weight[0, 0, 0, 0] = float("nan")
        return net
''')


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "mymodels.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def fails(argv, capsys, match):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("univenc: error:") and "Traceback" not in err, err
    assert match in err, err
    return err


def test_spatial_of_a_torchvision_resnet18_without_download(capsys, tmp_path):
    main(["spatial", "torchvision:resnet18", "--input-size", "3", "32", "32", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "layer4.1.conv2" in out and "map ≤ k: padding-dominated" in out and "score" in out
    assert (tmp_path / "spatial.csv").exists() and (tmp_path / "spatial_eigenvectors.png").exists()


def test_help_of_every_subcommand(capsys):
    exe = Path(sys.executable).parent / "univenc"  # the console script of [project.scripts], once
    out = subprocess.run([str(exe), "zoo", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--jobs" in out.stdout
    for cmd in ("spatial", "compare", "trajectory", "init"):  # the same entry point, in this process
        with pytest.raises(SystemExit) as done:
            main([cmd, "--help"])
        assert done.value.code == 0 and "usage: univenc " + cmd in capsys.readouterr().out


@needs("cifar10")
def test_compare_two_user_models_writes_table_and_figures(factories, capsys, tmp_path):
    main(["compare", "mymodels:tiny_net", "mymodels:tiny_net_b", "--data", "cifar10", "--images", "200",
          "--draws", "2", "--out", str(tmp_path / "out"), "--format", "json"])
    import json
    rows = json.loads(capsys.readouterr().out)
    assert [r["layer_a"] for r in rows] == ["0", "3", "7"] and all("S" in r and "floor" in r for r in rows)  # 7: linear
    for f in ("compare.csv", "compare.json", "cosine_matrices.png", "similarity.pdf"):
        assert (tmp_path / "out" / f).exists(), f


def test_a_plain_state_dict_with_arch_and_one_with_wrong_keys(factories, tmp_path, capsys):
    import mymodels
    net = mymodels.tiny_net(3)
    torch.save(net.state_dict(), tmp_path / "mine.pt")
    loaded = resolve_model(str(tmp_path / "mine.pt"), arch="mymodels:tiny_net")
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    from safetensors.torch import save_file
    save_file(net.state_dict(), str(tmp_path / "mine.safetensors"))
    loaded = resolve_model(str(tmp_path / "mine.safetensors"), arch="mymodels:tiny_net")
    assert torch.equal(loaded[0].weight, net[0].weight)
    # a checkpoint of another architecture: the error lists the missing and the unexpected keys
    err = fails(["spatial", str(tmp_path / "mine.pt"), "--arch", "torchvision:resnet18"], capsys,
                "is not a state dict of torchvision:resnet18")
    assert "missing keys: bn1.bias" in err and "unexpected keys: 0.weight, 3.weight, 7.bias, 7.weight" in err
    fails(["spatial", str(tmp_path / "mine.pt")], capsys, "plain state dict: give its architecture with --arch")


def test_clear_errors_for_bad_inputs(factories, capsys):
    fails(["spatial", "mymodels:pointwise_only"], capsys, "has no square k x k conv layer")
    fails(["spatial", "mymodels:no_conv"], capsys, "has no nn.Conv2d layer")
    fails(["spatial", "mymodels:nan_weights"], capsys, "non-finite entries (NaN or inf)")
    fails(["spatial", "mymodels:fixed_input", "--input-size", "3", "32", "32"], capsys,
          "cannot take an input of size (3, 32, 32)")
    fails(["spatial", "nonsense"], capsys, "cannot resolve the model 'nonsense'")
    fails(["spatial", "torchvision:resnet1000"], capsys, "torchvision has no model 'resnet1000'")
    fails(["spatial", "fac_cifar10"], capsys, "give its preset")
    fails(["spatial", "mymodels:missing_factory"], capsys, "cannot import the factory")
    fails(["compare", "mymodels:tiny_net", "mymodels:tiny_net_b", "--data", "svhn"], capsys,
          "unknown dataset 'svhn'")


def test_non_square_kernels_are_reported_as_skipped(factories, capsys):
    main(["spatial", "mymodels:non_square"])
    assert "skipped: non-square kernel (1, 3)" in capsys.readouterr().out


@needs("cifar10")
def test_clear_errors_for_bad_inputs_that_need_data(factories, capsys):
    fails(["compare", "mymodels:depthwise_only", "mymodels:depthwise_only", "--data", "cifar10", "--images", "8"],
          capsys, "no nn.Conv2d layer (with groups=1)")
    fails(["compare", "mymodels:nan_weights", "mymodels:tiny_net", "--data", "cifar10", "--images", "8"], capsys,
          "layer 3 of network a has non-finite weights")
    fails(["compare", "mymodels:fixed_input", "mymodels:fixed_input", "--data", "cifar10", "--images", "8"],
          capsys, "cannot take cifar10 images of shape (3, 32, 32)")


def test_layers_are_paired_by_name_else_by_order_or_explicitly():
    a = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3))
    b = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3))
    assert [(x[0], y[0]) for x, y in pair_layers(a, b)] == [("0", "0"), ("1", "1")]
    named = nn.ModuleDict({"first": nn.Conv2d(3, 4, 3), "second": nn.Conv2d(4, 4, 3)})
    assert [(x[0], y[0]) for x, y in pair_layers(a, named)] == [("0", "first"), ("1", "second")]  # by order
    assert [(x[0], y[0]) for x, y in pair_layers(a, named, pairs=[("1", "second")])] == [("1", "second")]
    with pytest.raises(LayerPairingError, match="no analysed layer named third"):
        pair_layers(a, named, pairs=[("0", "third")])
    with pytest.raises(LayerPairingError, match="kernel sizes differ"):
        pair_layers(a, nn.Sequential(nn.Conv2d(3, 4, 5), nn.Conv2d(4, 4, 3)), by="order")


def test_timm_and_zoo_references(tmp_path):
    assert isinstance(resolve_model("timm:resnet10t"), nn.Module)
    with pytest.raises(ModelReferenceError, match="third part can only be 'pretrained'"):
        resolve_model("timm:resnet10t:yes")
    with pytest.raises(ModelReferenceError, match="train_zoo"):
        resolve_model("fac_cifar10", preset="smoke", root=tmp_path)


def test_fold_bn_option(capsys):
    main(["spatial", "torchvision:resnet18", "--fold-bn", "--format", "json"])
    captured = capsys.readouterr()
    assert "folded the BatchNorm scale into 20 conv layers" in captured.err and '"layer":"layer4.1.conv2"' in captured.out


def test_init_gives_the_travel_column_and_epoch_000_is_found_beside_a_checkpoint(factories, capsys, tmp_path):
    import mymodels
    torch.save(mymodels.tiny_net().state_dict(), tmp_path / "init.pt")
    moved = mymodels.tiny_net()
    with torch.no_grad():
        moved[3].weight.mul_(3.0)
    torch.save(moved.state_dict(), tmp_path / "moved.pt")
    main(["spatial", str(tmp_path / "moved.pt"), "--arch", "mymodels:tiny_net", "--init", str(tmp_path / "init.pt"),
          "--format", "json"])
    import json
    rows = json.loads(capsys.readouterr().out)
    assert [r["travel"] for r in rows if r["kind"] == "Conv2d"] == pytest.approx([0.0, 2.0])
    # a zoo-style folder: epoch_000.pt beside the checkpoint is the initialisation
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"state_dict": mymodels.tiny_net().state_dict()}, run / "epoch_000.pt")
    torch.save(moved.state_dict(), run / "final.pt")
    main(["spatial", str(run / "final.pt"), "--arch", "mymodels:tiny_net", "--format", "json"])
    assert [r["travel"] for r in json.loads(capsys.readouterr().out) if r["kind"] == "Conv2d"] == \
        pytest.approx([0.0, 2.0])
    fails(["spatial", str(tmp_path / "moved.pt"), str(tmp_path / "moved.pt"), "--arch", "mymodels:tiny_net",
           "--init", str(tmp_path / "init.pt")], capsys, "one initial-weights file per model")


@needs("cifar10")
def test_two_architectures_compared_by_map_every_layer_listed_and_their_bad_inputs(factories, capsys):
    import json
    main(["compare", "mymodels:tiny_net", "torchvision:resnet18", "--num-classes", "10", "--data", "cifar10",
          "--images", "16", "--draws", "2", "--format", "json"])
    out = capsys.readouterr()
    rows = json.loads(out.out)
    compared = [r for r in rows if r["layer_a"] and r["layer_b"]]
    assert compared and all(r["status"] in ("defined", "S undefined (ceiling ≈ floor)",
                                            "S undefined (no eigenvalue above the noise)",
                                            "S undefined (no eigenvalue of network b above the noise)")
                                for r in compared)
    listed = {r["layer_b"] for r in rows if r["layer_b"]}
    assert "fc" in listed and "layer4.1.conv2" in listed  # every weight layer of the ResNet, compared or not
    assert "How to read S" in out.err and "scores above 1" in out.err
    # an unmappable pair, a model without any analysable layer, a mapping that names a missing layer
    fails(["compare", "mymodels:tiny_net", "mymodels:tiny_net_b", "--data", "cifar10", "--images", "8",
           "--pairs", "0=3"], capsys, "cannot be aligned")
    fails(["compare", "mymodels:depthwise_only", "mymodels:tiny_net", "--data", "cifar10", "--images", "8"],
          capsys, "no nn.Conv2d layer (with groups=1)")
    fails(["compare", "mymodels:tiny_net", "mymodels:tiny_net_b", "--data", "cifar10", "--images", "8",
           "--pairs", "0=conv9"], capsys, "no analysed layer named conv9 (network b)")


def test_a_state_dict_with_another_class_count_loads_without_a_factory(tmp_path, capsys):
    import torchvision
    net = torchvision.models.resnet18(num_classes=10)
    torch.save(net.state_dict(), tmp_path / "cifar_resnet.pt")
    loaded = resolve_model(str(tmp_path / "cifar_resnet.pt"), arch="torchvision:resnet18")  # 10 classes, read
    assert loaded.fc.out_features == 10 and torch.equal(loaded.fc.weight, net.fc.weight)
    assert resolve_model("torchvision:resnet18", num_classes=7).fc.out_features == 7
    main(["spatial", str(tmp_path / "cifar_resnet.pt"), "--arch", "torchvision:resnet18", "--format", "json"])
    assert "layer1.0.conv1" in capsys.readouterr().out
    torch.save({k: v for k, v in net.state_dict().items() if k != "fc.bias"}, tmp_path / "broken.pt")
    with pytest.raises(ModelReferenceError, match="missing keys: fc.bias"):
        resolve_model(str(tmp_path / "broken.pt"), arch="torchvision:resnet18")


@needs("cifar10")
def test_init_writes_a_covariance_file_or_a_rainbow_network(tmp_path, capsys):
    from univenc.init import load_encoding, universal_init
    from univenc.models import VGG, load_checkpoint_model
    torch.manual_seed(0)
    source = VGG(10, 3, 0.125)
    torch.save({"state_dict": source.state_dict(), "config": {"model": source.config}, "epoch": 15}, tmp_path / "src.pt")
    main(["init", "--from", str(tmp_path / "src.pt"), "--arch", "univenc_vgg11", "--out", str(tmp_path / "enc.pt")])
    out = capsys.readouterr()
    assert "wrote the covariance file" in out.err and "features.11.0" in out.out
    encoding = load_encoding(tmp_path / "enc.pt")
    wider = universal_init(VGG(10, 3, 0.25), encoding, seed=1)  # at its own widths
    assert torch.isfinite(wider.features[11][0].weight).all()
    main(["init", "--from", str(tmp_path / "src.pt"), "--data", "cifar10", "--images", "64",
          "--out", str(tmp_path / "rainbow.pt")])
    rainbow, epoch = load_checkpoint_model(tmp_path / "rainbow.pt")
    assert epoch == 0 and not torch.equal(rainbow.features[4][0].weight, source.features[4][0].weight)
    capsys.readouterr()
    fails(["init", "--from", str(tmp_path / "src.pt"), "--arch", "timm:resnet10t", "--out", str(tmp_path / "x.pt")],
          capsys, "layers to draw")


@needs("cifar10")
def test_the_readme_init_then_train_path(factories, tmp_path):
    """README: `univenc init --from SOURCE --arch univenc_vgg11 --data cifar10 --out init.pt` (here the same VGG-11
    at a quarter of its width, twice the source's), then the zoo's recipe trains from that file."""
    import dataclasses

    from univenc.catalogue import ZOO_BY_NAME
    from univenc.models import VGG, load_checkpoint_model
    from univenc.training import train
    from univenc.zoo import load_task_for, train_config
    torch.manual_seed(0)
    source = VGG(10, 3, 0.125)
    torch.save({"state_dict": source.state_dict(), "config": {"model": source.config}, "epoch": 15}, tmp_path / "src.pt")
    main(["init", "--from", str(tmp_path / "src.pt"), "--arch", "mymodels:vgg_quarter", "--num-classes", "10",
          "--data", "cifar10", "--images", "64", "--out", str(tmp_path / "init.pt")])
    net, epoch = load_checkpoint_model(tmp_path / "init.pt")
    assert epoch == 0 and net.features[0][0].out_channels == 16  # the target's own width, not the source's 8
    spec = ZOO_BY_NAME["vgg_k3_cifar10"]
    cfg = dataclasses.replace(train_config(spec, "smoke"), epochs=1)
    first = net.features[4][0].weight.detach().clone()
    result = train(net, load_task_for(spec, "smoke"), cfg, out_dir=tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "final.pt").exists() and np.isfinite(result["log"][-1]["loss"])
    assert not torch.equal(first, net.features[4][0].weight)
