"""Training: determinism, exact resume, atomic checkpoints, batch augmentation."""
from dataclasses import replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
import torch

from univenc.data import TaskData
from univenc.models import VGG, FactorizedBlock
from univenc.storage import load_checkpoint, save_torch
from univenc.training import TrainConfig, augment_batch, to_float, train


def tiny_data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 4, (n,), generator=g)
    return TaskData(x, y, x[:16], y[:16], 4)


def tiny_model(factorized=False):
    torch.manual_seed(7)
    return VGG(num_classes=4, width=0.0625, factorized=factorized)


CFG = TrainConfig(epochs=4, lr=0.05, lr_step=2, batch_size=16, checkpoint_epochs=(1, 3))


@pytest.mark.parametrize("factorized", [False, True])
def test_deterministic_for_a_seed(factorized):
    a = train(tiny_model(factorized), tiny_data(), CFG, progress=False)
    b = train(tiny_model(factorized), tiny_data(), CFG, progress=False)
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=0)


@pytest.mark.parametrize("factorized", [False, True])
def test_interrupted_run_resumes_to_the_same_weights(tmp_path, factorized):
    full = train(tiny_model(factorized), tiny_data(), CFG, tmp_path / "full", progress=False)
    part = train(tiny_model(factorized), tiny_data(), CFG, tmp_path / "part", progress=False, stop_after=2)
    assert part["epoch"] == 2 and not (tmp_path / "part" / "final.pt").exists()
    resumed = train(tiny_model(factorized), tiny_data(), CFG, tmp_path / "part", progress=False)
    for k in full["state_dict"]:
        torch.testing.assert_close(resumed["state_dict"][k], full["state_dict"][k], rtol=0, atol=0)
    assert [r["epoch"] for r in resumed["log"]] == [1, 2, 3, 4]
    files = sorted(p.name for p in (tmp_path / "part").iterdir())
    assert files == ["epoch_000.pt", "epoch_001.pt", "epoch_003.pt", "final.pt", "last.pt", "log.csv"]
    ckpt = load_checkpoint(tmp_path / "part" / "final.pt")
    assert {"state_dict", "config", "log", "commit", "optimizer"} <= set(ckpt)
    assert ckpt["config"]["train"]["epochs"] == 4
    assert (tmp_path / "part" / "log.csv").read_text().startswith("epoch,lr,loss,train_acc")


@pytest.mark.parametrize("channels_last,expected", [(None, True), (False, False), (True, True)])
def test_channels_last_by_default_on_cpu_only(channels_last, expected):
    """None (the default) means channels_last on CPU, where it is faster, and NCHW on a GPU."""
    model = tiny_model()
    train(model, tiny_data(), replace(CFG, epochs=1, channels_last=channels_last, device="cpu"), progress=False)
    weight = model.features[0][0].weight
    if expected:
        assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    else:
        assert weight.is_contiguous()


def test_lr_schedule():
    cfg = TrainConfig(epochs=90, lr=0.005, lr_step=30)
    assert [cfg.lr_at(e) for e in (0, 29, 30, 60, 89)] == pytest.approx([0.005, 0.005, 0.0005, 5e-5, 5e-5])


def test_corrupt_checkpoint_gets_a_clear_error(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt.*Delete it"):
        load_checkpoint(path)


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "x.pt"
    save_torch({"a": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        save_torch({"a": Unpicklable()}, path)
    assert load_checkpoint(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]  # no temporary file left


def test_augmentation_crops_and_flips():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).reshape(2, 1, 4, 4)
    seen = set()
    for seed in range(30):
        out = augment_batch(x, torch.Generator().manual_seed(seed), pad=1)
        assert out.shape == x.shape and out.dtype == torch.uint8
        for i in range(2):
            # every output is a (possibly flipped) window of the zero-padded image
            padded = torch.nn.functional.pad(x[i], (1, 1, 1, 1))
            wins = [padded[:, r:r + 4, c:c + 4] for r in range(3) for c in range(3)]
            match = [j for j, w in enumerate(wins) if torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1))]
            assert match
            seen.add((match[0], torch.equal(out[i], wins[match[0]])))
    assert len(seen) > 6  # several offsets and both flips occur


def test_non_finite_loss_stops_training():
    m = tiny_model()
    with torch.no_grad():
        m.classifier.weight[0, 0] = float("nan")  # as after a divergence
    with pytest.raises(FloatingPointError, match="lower the lr"):
        train(m, tiny_data(), TrainConfig(epochs=2, batch_size=16), progress=False)


def test_weights_that_become_non_finite_under_a_finite_loss_stop_training(tmp_path):
    """A wrong gradient on taps that see only padding never reaches the loss: the weights themselves are checked,
    before the epoch's checkpoint is written."""
    m = tiny_model()
    m.features[0][0].weight.register_hook(lambda g: torch.full_like(g, float("nan")))  # as a wrong gradient would
    with pytest.raises(FloatingPointError, match=r"features\.0\.0\.weight became NaN or inf at epoch 1"):
        train(m, tiny_data(n=16), TrainConfig(epochs=2, batch_size=16), tmp_path, progress=False)
    assert not (tmp_path / "last.pt").exists()


def test_bf16_weight_gradient_is_zero_on_taps_that_see_only_padding():
    """A 7x7 conv on 2x2 maps (the last layers of the k = 7 VGG-11): under CPU bfloat16 autocast, oneDNN's weight
    gradient put values up to 1e3 on the 40 taps that never see the input, whose true gradient is 0."""
    from univenc.models import Conv2d
    torch.manual_seed(0)
    conv = Conv2d(128, 128, 7, padding=3, bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(128, 128, 2, 2).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    y.float().sum().backward()
    padding_only = torch.ones(7, 7, dtype=torch.bool)
    padding_only[2:5, 2:5] = False  # offsets -1..1 reach the 2x2 map
    assert conv.weight.grad[:, :, padding_only].abs().max() == 0
    with torch.autocast("cpu", dtype=torch.bfloat16):  # where every tap sees the map, the block stays bfloat16
        assert conv(torch.randn(2, 128, 8, 8)).dtype == torch.bfloat16


@given(height=st.integers(1, 5), width=st.integers(1, 5), k=st.integers(1, 5), pad=st.integers(0, 3),
       extra_stride=st.integers(0, 2), bias=st.booleans())
@settings(max_examples=40, deadline=None)
def test_conv_as_gemm_equals_conv2d_and_its_gradients_in_float64(height, width, k, pad, extra_stride, bias):
    """Every conv with a 1x1 output map: the stride is at least what leaves one position."""
    from univenc.models import conv_as_gemm
    assume(min(height, width) + 2 * pad >= k)
    stride = (height + 2 * pad - k + 1 + extra_stride, width + 2 * pad - k + 1 + extra_stride)
    g = torch.Generator().manual_seed(height * 1000 + width * 100 + k * 10 + pad)
    x = torch.randn(3, 4, height, width, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(5, 4, k, k, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, generator=g, requires_grad=True) if bias else None
    dy = torch.randn(3, 5, 1, 1, dtype=torch.float64, generator=g)
    results = []
    for conv in (conv_as_gemm, lambda *args: torch.nn.functional.conv2d(*args)):
        y = conv(x, w, b, stride, (pad, pad))
        results.append((y, *torch.autograd.grad(y, [x, w] + ([b] if bias else []), dy)))
    for got, want in zip(*results):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="1x1 output map"):
        conv_as_gemm(x, w, b, (1, 1), (k, k))  # padding k: a larger output


@pytest.mark.parametrize("k, size, stride", [(3, 1, 1), (3, 2, 2), (1, 2, 2), (7, 1, 1)])
def test_convs_onto_1x1_maps_run_as_one_bfloat16_gemm_under_autocast_at_its_rounding(k, size, stride):
    """The ResNet-18's layer4 convs (3x3 on 1x1 maps, and the stride-2 ones onto them) take the GEMM under CPU
    autocast: bfloat16 output, values and weight gradient at bfloat16 rounding of float32's, and exactly 0 on the
    taps that see only padding."""
    from univenc.models import Conv2d
    torch.manual_seed(0)
    conv = Conv2d(64, 32, k, stride=stride, padding=k // 2, bias=False)
    x = torch.randn(16, 64, size, size).contiguous(memory_format=torch.channels_last)
    want = torch.nn.functional.conv2d(x, conv.weight, None, conv.stride, conv.padding)  # nn.Conv2d's, in float32
    want_grad, = torch.autograd.grad(want.sum(), conv.weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = conv(x)
    got_grad, = torch.autograd.grad(got.float().sum(), conv.weight)
    assert got.dtype == torch.bfloat16 and got.shape == want.shape == (16, 32, 1, 1)
    torch.testing.assert_close(got.float(), want, rtol=0.02, atol=0.02 * want.abs().max().item())
    torch.testing.assert_close(got_grad, want_grad, rtol=0.02, atol=0.02 * want_grad.abs().max().item())
    assert torch.equal(got_grad == 0, want_grad == 0)


@given(size=st.integers(1, 9), k=st.integers(1, 8), stride=st.integers(1, 3), pad=st.integers(0, 4),
       dilation=st.integers(1, 2))
def test_sees_only_padding_matches_every_output_position_enumerated(size, k, stride, pad, dilation):
    from univenc.models import sees_only_padding
    out = (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    assume(out >= 1)
    expected = any(all(not 0 <= o * stride - pad + j * dilation < size for o in range(out)) for j in range(k))
    assert sees_only_padding(size, k, stride, pad, dilation) == expected
    left = dilation * (k - 1) // 2  # padding="same" (stride 1): PyTorch puts the odd padded input on the right
    same = any(all(not 0 <= o - left + j * dilation < size for o in range(size)) for j in range(k))
    assert sees_only_padding(size, k, 1, "same", dilation) == same
    assert not sees_only_padding(size, k, 1, "valid", dilation) or size < dilation * (k - 1) + 1


@pytest.mark.parametrize("arch", ["resnet18", "convnext"])
def test_the_non_vgg_zoo_architectures_cut_the_taps_that_see_only_padding(arch):
    """torchvision's and timm's plain convs get the same forward: under bfloat16 autocast a 32x32 image reaches
    the ResNet-18's layer4 as 1x1 maps and the ConvNeXt's last stage as 1x1 maps, so their 3x3 and 7x7 kernels
    there see the input only at their centre tap; that tap's gradient only may be non-zero."""
    from univenc.models import ARCHITECTURES, Conv2d
    torch.manual_seed(0)
    net = ARCHITECTURES[arch](10)
    assert all(type(m) is Conv2d for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1][-1]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = net(torch.randn(4, 3, 32, 32)).float().square().sum()
    loss.backward()
    k = last.kernel_size[0]
    off_centre = torch.ones(k, k, dtype=torch.bool)
    off_centre[k // 2, k // 2] = False
    assert last.weight.grad[:, :, off_centre].abs().max() == 0
    assert last.weight.grad[:, :, k // 2, k // 2].abs().max() > 0


def test_epoch_0_holds_the_initial_weights_and_final_holds_the_fitted_accuracy(tmp_path):
    init = tiny_model().state_dict()
    data = tiny_data()
    final = train(tiny_model(), data, replace(CFG, augment=False), tmp_path, progress=False)
    epoch0 = load_checkpoint(tmp_path / "epoch_000.pt")
    assert epoch0["epoch"] == 0 and epoch0["log"] == []
    for k, v in init.items():
        torch.testing.assert_close(epoch0["state_dict"][k], v, rtol=0, atol=0)
    # train_eval_acc: its own training images, eval mode, no augmentation (an independent recount)
    model = tiny_model()
    model.load_state_dict(final["state_dict"])
    model.eval()
    with torch.no_grad():
        pred = model(to_float(data.train_images)).argmax(1)
    assert final["train_eval_acc"] == pytest.approx((pred == data.train_labels).float().mean().item())
    assert load_checkpoint(tmp_path / "final.pt")["train_eval_acc"] == final["train_eval_acc"]


def test_onecycle_schedule_and_optimisers():
    cfg = TrainConfig(epochs=8, lr=0.1, schedule="onecycle")
    lrs = [cfg.lr_at(e) for e in range(8)]
    peak = lrs.index(max(lrs))
    assert max(lrs) <= 0.1 and peak == 2 and all(x > 0 for x in lrs)  # epoch 2's middle is 31% of the run
    assert lrs[:peak + 1] == sorted(lrs[:peak + 1]) and lrs[peak:] == sorted(lrs[peak:], reverse=True)
    assert lrs[-1] < 0.1 * max(lrs)  # down towards 0
    assert [TrainConfig(lr=1, lr_step=2).lr_at(e) for e in range(5)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(TrainConfig(optimizer="adamw").make_optimizer(params), torch.optim.AdamW)
    assert isinstance(TrainConfig().make_optimizer(params), torch.optim.SGD)
    with pytest.raises(ValueError, match="schedule must be"):
        TrainConfig(schedule="cosine")
    with pytest.raises(ValueError, match="optimizer must be"):
        TrainConfig(optimizer="adam")
    with pytest.raises(ValueError, match="precision must be 'fp32', 'bf16'"):
        TrainConfig(precision="fp16")


@pytest.mark.parametrize("factorized", [False, True])
def test_bf16_autocast_trains_float32_weights_near_float32_training(factorized):
    """precision="bf16": convolutions run in bfloat16 during training (CPU autocast here, CUDA's on a GPU), and
    so do the evaluations that training logs; weights, optimizer state and BatchNorm's running statistics stay
    float32. The first step's loss (one batch per epoch) is that of float32 training to within bfloat16's
    rounding, and the weights differ from it (later epochs drift apart: a step's bfloat16 gradient of an early
    conv layer is ~30% off, docs/recipes.md)."""
    model, seen = tiny_model(factorized), set()
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.add(out.dtype))
             for m in model.modules() if isinstance(m, (torch.nn.Conv2d, FactorizedBlock))]
    cfg = replace(CFG, epochs=2, batch_size=64, checkpoint_epochs=(), device="cpu")  # the first epoch: 1 step
    half = train(model, tiny_data(), replace(cfg, precision="bf16"), progress=False)
    for h in hooks:
        h.remove()
    assert seen == {torch.bfloat16}  # training's forward passes and its evaluations (evaluate_in)
    assert {v.dtype for v in half["state_dict"].values() if v.is_floating_point()} == {torch.float32}
    assert {t.dtype for s in half["optimizer"]["state"].values() for t in s.values()} == {torch.float32}
    assert half["config"]["train"]["precision"] == "bf16"
    full = train(tiny_model(factorized), tiny_data(), cfg, progress=False)
    assert half["log"][0]["loss"] == pytest.approx(full["log"][0]["loss"], abs=0.02)
    assert half["log"][0]["loss"] != full["log"][0]["loss"]
    assert not torch.equal(half["state_dict"]["classifier.weight"], full["state_dict"]["classifier.weight"])


def test_adamw_trains():
    out = train(tiny_model(), tiny_data(), replace(CFG, optimizer="adamw", lr=1e-3, augment=False), progress=False)
    assert out["log"][-1]["loss"] < out["log"][0]["loss"]


def test_max_steps_ends_the_training_within_an_epoch(tmp_path):
    """A dry run: 64 images in batches of 16 are 4 steps an epoch; 6 steps end in the second epoch, evaluated."""
    data = tiny_data()
    cfg = replace(CFG, max_steps=6, train_eval_images=8)
    model = tiny_model()
    final = train(model, data, cfg, tmp_path, progress=False)
    assert [r["steps"] for r in final["log"]] == [4, 6] and final["epoch"] == 2
    assert final["log"][-1]["test_acc"] == final["log"][-1]["test_acc"]  # the last epoch is evaluated (not NaN)
    assert load_checkpoint(tmp_path / "final.pt")["epoch"] == 2
    model.eval()  # the fit is measured on the first 8 training images only
    with torch.no_grad():
        pred = model(to_float(data.train_images[:8])).argmax(1)
    assert final["train_eval_acc"] == pytest.approx((pred == data.train_labels[:8]).float().mean().item())
    again = train(tiny_model(), data, cfg, tmp_path, progress=False)  # resumed after its last step: no more steps
    assert [r["steps"] for r in again["log"]] == [4, 6]
    for k, v in final["state_dict"].items():
        torch.testing.assert_close(again["state_dict"][k], v, rtol=0, atol=0)


def test_precision_auto_takes_bf16_only_where_it_is_measured_to_pay(tmp_path, monkeypatch):
    import univenc.training as T
    monkeypatch.setenv("UNIVENC_CACHE", str(tmp_path))
    for ratio, expected in [(2.5, "bf16"), (0.4, "fp32")]:  # AVX-512 BF16 / AMX, and a CPU that emulates it
        T._cpu_bf16_decision.cache_clear()
        (tmp_path / "precision.json").unlink(missing_ok=True)
        monkeypatch.setattr(T, "_gemm_rate", lambda dtype, r=ratio: r if dtype == torch.bfloat16 else 1.0)
        assert T.resolve_precision("auto", torch.device("cpu")) == expected
        assert T.resolve_precision("fp32", torch.device("cpu")) == "fp32"
        assert T.resolve_precision("auto", torch.device("cuda")) == "fp32"  # not measured on a GPU yet
        # decided once per machine: a later, noisier measurement does not change it
        T._cpu_bf16_decision.cache_clear()
        monkeypatch.setattr(T, "_gemm_rate", lambda dtype: 1.0)
        assert T.resolve_precision("auto", torch.device("cpu")) == expected
    T._cpu_bf16_decision.cache_clear()
    with pytest.raises(ValueError, match="precision must be"):
        TrainConfig(precision="fp16")


@given(size=st.integers(1, 6), k=st.integers(1, 5), stride=st.integers(1, 3), pad=st.integers(0, 3),
       bias=st.booleans())
@settings(max_examples=40, deadline=None)
def test_conv_gemm_weight_grad_equals_conv2d_and_its_gradients_in_float64(size, k, stride, pad, bias):
    from univenc.models import conv_gemm_weight_grad
    assume(size + 2 * pad >= k)
    g = torch.Generator().manual_seed(size * 1000 + k * 100 + stride * 10 + pad)
    x = torch.randn(3, 4, size, size + 1, dtype=torch.float64, generator=g).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(5, 4, k, k, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, generator=g, requires_grad=True) if bias else None
    results = []
    for conv in (conv_gemm_weight_grad, torch.nn.functional.conv2d):
        y = conv(x, w, b, (stride, stride), (pad, pad))
        dy = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        results.append((y, *torch.autograd.grad(y, [x, w] + ([b] if bias else []), dy)))
    for got, want in zip(*results):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@given(size=st.integers(1, 6), k=st.integers(1, 7), stride=st.integers(1, 3), pad=st.integers(0, 3),
       groups=st.sampled_from([1, 2]))
@settings(max_examples=60, deadline=None)
def test_crop_to_seen_taps_is_the_same_convolution_without_padding_only_taps(size, k, stride, pad, groups):
    from univenc.models import crop_to_seen_taps, sees_only_padding
    assume(size + 2 * pad >= k)
    g = torch.Generator().manual_seed(size * 1000 + k * 100 + stride * 10 + pad)
    x = torch.randn(2, 4, size, size, dtype=torch.float64, generator=g)
    w = torch.randn(6, 4 // groups, k, k, dtype=torch.float64, generator=g)
    cropped, pads = crop_to_seen_taps(w, (size, size), (stride, stride), (pad, pad))
    if cropped is None:  # only where some tap sees only padding
        assert sees_only_padding(size, k, stride, pad, 1)
        return
    want = torch.nn.functional.conv2d(x, w, None, stride, pad, 1, groups)
    torch.testing.assert_close(torch.nn.functional.conv2d(x, cropped, None, stride, pads, 1, groups), want,
                               rtol=1e-12, atol=1e-12)
    assert not sees_only_padding(size, cropped.shape[-1], stride, pads[0], 1)
    if not sees_only_padding(size, k, stride, pad, 1):
        assert cropped.shape == w.shape and pads == (pad, pad)


@pytest.mark.parametrize("size, k, groups", [(4, 3, 1), (2, 3, 1), (2, 7, 1), (2, 7, 64), (1, 7, 64), (1, 3, 1),
                                             (8, 3, 1)])
def test_float32_training_takes_the_small_map_path_at_float32_rounding_and_inference_is_nn_conv2d(size, k, groups):
    """Training in float32 (gradients on) takes the cut kernels and the GEMMs of the autocast path, in float32: values
    and gradients at float32 rounding of nn.Conv2d's, exact zeros on the taps that see only padding. Without
    gradients (the analyses' passes) the output is nn.Conv2d's, bit for bit."""
    from univenc.models import Conv2d
    torch.manual_seed(0)
    conv = Conv2d(64, 64, k, padding=k // 2, groups=groups, bias=True)
    x = torch.randn(32, 64, size, size).contiguous(memory_format=torch.channels_last).requires_grad_()
    want = torch.nn.functional.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, 1, groups)
    want_grads = torch.autograd.grad(want.square().sum(), [x, conv.weight, conv.bias])
    got = conv(x)
    got_grads = torch.autograd.grad(got.square().sum(), [x, conv.weight, conv.bias])
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())
    for got_grad, want_grad in zip(got_grads, want_grads):
        torch.testing.assert_close(got_grad, want_grad, rtol=1e-5, atol=1e-5 * want_grad.abs().max().item())
    assert torch.equal(got_grads[1] == 0, want_grads[1] == 0)
    with torch.no_grad():
        assert torch.equal(conv(x), torch.nn.Conv2d.forward(conv, x))


@pytest.mark.parametrize("size, k, groups", [(4, 3, 1), (2, 3, 1), (4, 5, 1), (2, 7, 1), (2, 7, 64), (4, 3, 64)])
def test_convs_on_small_maps_under_autocast_match_float32_at_bfloat16_rounding(size, k, groups):
    """The VGG-11's and ResNet-18's convs on 4x4 and 2x2 maps (weight gradient as one GEMM), kernels cut to the taps
    that see the input (7x7 on 2x2 maps), a ConvNeXt's depthwise convs: bfloat16 output, values and gradients at
    bfloat16 rounding of float32's, exact zeros where float32's gradient is zero."""
    from univenc.models import Conv2d
    torch.manual_seed(0)
    conv = Conv2d(64, 64, k, padding=k // 2, groups=groups, bias=True)
    x = torch.randn(32, 64, size, size).contiguous(memory_format=torch.channels_last).requires_grad_()
    want = torch.nn.functional.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, 1, groups)
    want_grads = torch.autograd.grad(want.sum(), [x, conv.weight, conv.bias])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = conv(x)
    got_grads = torch.autograd.grad(got.float().sum(), [x, conv.weight, conv.bias])
    assert got.dtype == torch.bfloat16 and got.shape == want.shape
    torch.testing.assert_close(got.float(), want, rtol=0.02, atol=0.02 * want.abs().max().item())
    for got_grad, want_grad in zip(got_grads, want_grads):
        torch.testing.assert_close(got_grad, want_grad, rtol=0.03, atol=0.03 * want_grad.abs().max().item())
    assert torch.equal(got_grads[1] == 0, want_grads[1] == 0)
