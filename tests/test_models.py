"""Models: architecture of B.1/B.2, the fast factorized block equals the naive one, frozen filters, timm."""
import contextlib
import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from univenc import kernels, models
from univenc.models import FactorizedBlock, NaiveFactorizedBlock, VGG, canonical_spatial_filters


def filters():
    return canonical_spatial_filters()


def test_canonical_filters_shipped():
    f = filters()
    assert f.shape == (5, 3, 3)
    gram = f.reshape(5, 9) @ f.reshape(5, 9).T
    torch.testing.assert_close(gram, torch.eye(5), atol=1e-5, rtol=0)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_vgg11_structure(k):
    m = VGG(num_classes=7, kernel_size=k, width=0.25)
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    assert len(convs) == 8
    assert all(c.bias is None and c.kernel_size == (k, k) for c in convs)
    assert all(not b.affine for b in m.modules() if isinstance(b, nn.BatchNorm2d))
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert all(isinstance(b, nn.BatchNorm2d) is False for b in VGG(batchnorm=False, width=0.1).modules())


def test_vgg_224_inputs_and_mlp_head():
    m = VGG(num_classes=5, width=0.0625, head="mlp")
    assert m(torch.randn(1, 3, 224, 224)).shape == (1, 5)
    assert len([x for x in m.classifier.modules() if isinstance(x, nn.Linear)]) == 2


def test_same_seed_same_conv_init_whatever_the_classifier():
    torch.manual_seed(3)
    a = VGG(num_classes=10, width=0.25)
    torch.manual_seed(3)
    b = VGG(num_classes=100, width=0.25)
    for (na, pa), (nb, pb) in zip(a.features.named_parameters(), b.features.named_parameters()):
        torch.testing.assert_close(pa, pb)


PATHS = ["compiled", "pytorch"]


def kernel_path(path):
    """Context in which FactorizedBlock takes ``path``; skips where no C compiler builds the kernels."""
    if path == "pytorch":
        return kernels.disabled()
    if kernels.load(torch.float64) is None:
        pytest.skip("no C compiler here: the compiled kernels cannot be built (the PyTorch path is tested)")
    return contextlib.nullcontext()


def fast_and_naive_blocks(cin, cout, filters_k):
    k = filters_k
    bank = filters() if k == 3 else torch.linalg.qr(torch.randn(k * k, 5))[0].T.reshape(5, k, k)
    fast = FactorizedBlock(cin, cout, bank).double()
    naive = NaiveFactorizedBlock(cin, cout, bank).double()
    state = {k: v for k, v in fast.state_dict().items() if k != "filters"}
    naive.load_state_dict(state | {"depthwise.weight": naive.depthwise.weight}, strict=True)
    return bank, fast, naive


@pytest.mark.parametrize("path", PATHS)
# cin < 8 and >= 8: per-pixel channel loops too short to vectorise, and long enough; k = 7, the kernels' largest
# (taps beyond the 8 x 7 image), and k = 9, which they leave to PyTorch
@pytest.mark.parametrize("cin,cout,filters_k", [(3, 8, 3), (6, 4, 3), (4, 5, 5), (12, 6, 3), (9, 4, 5), (5, 4, 7),
                                                (3, 4, 9)])
def test_fast_factorized_block_equals_naive(cin, cout, filters_k, path, monkeypatch):
    torch.manual_seed(0)
    bank, fast, naive = fast_and_naive_blocks(cin, cout, filters_k)
    monkeypatch.setattr(kernels, "G_CHUNK", 1)  # the backward kernel's G one image at a time (5 chunks)
    with kernel_path(path):
        for step in range(3):  # several steps: running statistics too
            x = torch.randn(5, cin, 8, 7, dtype=torch.float64)
            x[:, 0, :, 2:] = 0  # z == 0 there: ReLU's gradient at 0 must be 0 on both halves, as in the naive block
            if step == 1:
                x = x.contiguous(memory_format=torch.channels_last)
            x.requires_grad_()
            yf, yn = fast(x), naive(x)
            torch.testing.assert_close(yf, yn, rtol=1e-10, atol=1e-10)
            g = torch.randn_like(yf)
            gf = torch.autograd.grad(yf, [x, fast.pointwise.weight], g)
            gn = torch.autograd.grad(yn, [x, naive.pointwise.weight], g)
            for a, b in zip(gf, gn):
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fast.bn.running_mean, naive.bn.running_mean)
    torch.testing.assert_close(fast.bn.running_var, naive.bn.running_var)
    assert fast.bn.num_batches_tracked == naive.bn.num_batches_tracked == 3
    fast.eval(), naive.eval()
    x = torch.randn(2, cin, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(fast(x), naive(x), rtol=1e-10, atol=1e-10)
    # and the naive block's state dict loads into the fast one
    other = FactorizedBlock(cin, cout, torch.zeros(5, filters_k, filters_k)).double()
    other.load_state_dict(naive.state_dict())
    torch.testing.assert_close(other.filters.double(), bank.double())


@pytest.mark.parametrize("h_dtype", [torch.float32, torch.bfloat16])
# the first layer's few channels (n cin <= 16), cin in multiples of 16 (k up to 7, widths that are no multiple of
# the 4 pixels taken at once, maps smaller than the kernel), and cin = 8, which takes neither row
@pytest.mark.parametrize("cin,k,hw", [(1, 3, (9, 7)), (3, 3, (8, 11)), (3, 7, (6, 5)), (16, 3, (8, 7)),
                                      (32, 5, (5, 9)), (16, 7, (3, 2)), (8, 3, (6, 6))])
def test_the_avx512_rows_compute_what_the_portable_loops_compute_bit_for_bit(cin, k, hw, h_dtype, monkeypatch):
    if not kernels.vector_rows(h_dtype):
        pytest.skip("no AVX-512 rows here (no C compiler, or a CPU without AVX-512)")
    torch.manual_seed(0)
    bank = filters() if k == 3 else torch.linalg.qr(torch.randn(k * k, 5))[0].T.reshape(5, k, k)
    x = torch.randn(6, cin, *hw)
    x[:, 0, :, 1:3] = 0  # z == 0: both ReLUs and their gradients at 0
    x = x.contiguous(memory_format=torch.channels_last)
    c2, p = 10 * cin, hw[0] * hw[1]
    dy = torch.randn(6, 4, *hw).contiguous(memory_format=torch.channels_last)
    w, alpha, beta = torch.randn(4, c2), torch.randn(c2), torch.randn(c2)
    monkeypatch.setattr(kernels, "G_CHUNK", 2 * p * c2)  # the backward kernel's G two images at a time
    out = {}
    for name, context in [("vector", contextlib.nullcontext), ("portable", kernels.portable)]:
        with context():
            h, mean, var = kernels.factorized_forward(x, bank, h_dtype=h_dtype)
            out[name] = [h, mean, var, kernels.factorized_backward(dy, w, h, alpha, beta, bank, cin)]
    for a, b in zip(out["vector"], out["portable"]):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert out["vector"][0].dtype == h_dtype and (out["vector"][0] > 0).any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels,build", [(5, "vector"), (16, "vector"), (48, "vector"), (16, "portable")])
def test_maxpool_in_the_kernels_gives_pytorchs_values_and_gradients(channels, build, dtype):
    """univenc.models.MaxPool2d trains through the compiled kernels (AVX-512 for channels in multiples of 16, else
    the portable loop) and gives F.max_pool2d's outputs and gradients, signed zeros included: ties go to the first
    position of the window, NaN wins."""
    if kernels.load(dtype) is None:
        pytest.skip("no C compiler here: the compiled kernels cannot be built")
    torch.manual_seed(0)
    x = torch.randint(-2, 3, (3, channels, 6, 8)).to(dtype)  # small integers: ties in most windows
    x[0, 0, 0, 1] = x[0, 0, 3, 0] = x[0, 0, 3, 1] = float("nan")  # one NaN in a window, and two
    x[1, 0, :2, :2] = float("-inf")
    x[1, 1, :2, :2] = -0.0
    x[2, 2, 4, 4] = float("inf")
    x = x.contiguous(memory_format=torch.channels_last)
    g = torch.randint(-2, 3, (3, channels, 3, 4)).to(dtype)
    g[0, 1] = -0.0

    def same(a, b):  # equal values, NaN where NaN, the same sign where not
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
        assert torch.equal(torch.signbit(a) | a.isnan(), torch.signbit(b) | b.isnan())

    with kernels.portable() if build == "portable" else contextlib.nullcontext():
        for inputs, through_kernels in [(x, True), (x[..., :7], False), (x.contiguous(), False)]:
            a, b = (inputs.detach().clone().requires_grad_() for _ in range(2))
            ya, yb = models.MaxPool2d(2)(a), F.max_pool2d(b, 2)
            assert ("MaxPool2x2" in type(ya.grad_fn).__name__) == through_kernels, type(ya.grad_fn).__name__
            same(ya, yb)
            ya.backward(g[..., : ya.shape[-1]]), yb.backward(g[..., : yb.shape[-1]])
            same(a.grad, b.grad)
        with torch.no_grad():  # inference is nn.MaxPool2d's
            same(models.MaxPool2d(2)(x), F.max_pool2d(x, 2))


def test_h_buffers_are_reused_only_once_their_graph_is_freed():
    """The compiled path writes h into buffers it reuses: two graphs alive at once (several forward passes
    before a backward, ``retain_graph``) must each keep their own."""
    torch.manual_seed(0)
    _, fast, naive = fast_and_naive_blocks(6, 4, 3)
    with kernel_path("compiled"):
        x1, x2 = (torch.randn(4, 6, 8, 8, dtype=torch.float64, requires_grad=True) for _ in range(2))

        def check(yf, yn, x):
            gf = torch.autograd.grad(yf.square().sum(), [x, fast.pointwise.weight], retain_graph=True)
            gn = torch.autograd.grad(yn.square().sum(), [x, naive.pointwise.weight], retain_graph=True)
            for a, b in zip(gf, gn):
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)

        yf1, yn1 = fast(x1), naive(x1)
        check(yf1, yn1, x1)
        yf2, yn2 = fast(x2), naive(x2)  # must not take yf1's h, whose graph is retained
        check(yf2, yn2, x2)
        check(yf1, yn1, x1)
        assert fast._h_pool.free == []  # both h still belong to live graphs
        del yf1, yf2
        assert len(fast._h_pool.free) == 2
        kept = {t.data_ptr() for t in fast._h_pool.free}
        fast(x1).sum().backward()
        assert {t.data_ptr() for t in fast._h_pool.free} == kept  # reused, then given back
    assert copy.deepcopy(fast)._h_pool.free == []


@pytest.mark.parametrize("path", PATHS)
def test_fast_factorized_network_float32_error_like_naive(path):
    """A whole factorized VGG in float32, the training dtype: the fast block's rounding error, measured against
    the naive network in float64, is of the naive network's own float32 size."""
    torch.manual_seed(1)
    nets = {"fast": VGG(width=0.125, factorized=True), "naive": VGG(width=0.125, factorized=True, naive=True)}
    nets["naive"].load_state_dict(nets["fast"].state_dict(), strict=False)
    nets["reference"] = copy.deepcopy(nets["naive"]).double()
    x, y = torch.randn(16, 3, 32, 32), torch.randint(10, (16,))
    out = {}
    with kernel_path(path):
        for name, m in nets.items():
            loss = nn.functional.cross_entropy(m(x.to(next(m.parameters()).dtype)), y)
            loss.backward()
            out[name] = [loss.detach().double()] + [p.grad.double() for p in m.parameters() if p.requires_grad]
    for fast, naive, ref in zip(out["fast"], out["naive"], out["reference"]):
        err_fast, err_naive = (fast - ref).abs().max(), (naive - ref).abs().max()
        assert err_fast <= 10 * err_naive + 1e-6 * ref.abs().max(), (err_fast, err_naive)


@pytest.mark.parametrize("cin,cout,hw", [(3, 16, 32), (12, 24, 8), (64, 32, 4)])
def test_bf16_factorized_block_is_at_bfloat16_rounding_level(cin, cout, hw):
    """Under CPU bfloat16 autocast the structured block stores h in bfloat16 (compiled kernels) and runs its GEMMs
    in it: its output, input gradient and weight gradient are within bfloat16's rounding (2^-8) of the float32
    naive block, and no farther than the naive block's own under the same autocast; the running statistics
    (float64 sums, float32 fold) stay near float32's."""
    if kernels.load(torch.bfloat16) is None:
        pytest.skip("no C compiler here: the compiled kernels cannot be built")
    torch.manual_seed(0)
    naive = NaiveFactorizedBlock(cin, cout, filters())
    fast = FactorizedBlock(cin, cout, filters())
    fast.load_state_dict(naive.state_dict())
    x = torch.randn(32, cin, hw, hw).contiguous(memory_format=torch.channels_last)
    g = torch.randn(32, cout, hw, hw)
    out = {}
    for name, block, bf16 in [("fast", fast, True), ("naive", copy.deepcopy(naive), True),
                              ("reference", copy.deepcopy(naive), False)]:
        xx = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = block.train()(xx)
        assert y.dtype == (torch.bfloat16 if bf16 else torch.float32)
        (y.float() * g).sum().backward()
        out[name] = [y.float().detach(), xx.grad, block.pointwise.weight.grad, block.bn.running_var]
    err = {name: [float((a - b).norm() / b.norm()) for a, b in zip(out[name], out["reference"])]
           for name in ("fast", "naive")}
    assert max(err["fast"][:3]) < 2 ** -7, err
    assert all(f <= 1.5 * n for f, n in zip(err["fast"][:3], err["naive"][:3])), err
    assert err["fast"][3] < 1e-4, err
    assert [t.dtype for t in fast._h_pool.free] == [torch.bfloat16]  # the compiled path ran: its h came back


def test_inference_through_the_kernel_equals_the_naive_block_and_hooks_still_see_bn_output():
    """Eval mode without autograd takes the compiled forward with BatchNorm folded in: the naive block's outputs.
    A forward hook on ``pointwise`` (as the alignment registers) sends it through the naive path, so that the hook
    sees BatchNorm's output, the 1x1 conv's true input."""
    if kernels.load(torch.float64) is None:
        pytest.skip("no C compiler here: the compiled kernels cannot be built")
    torch.manual_seed(0)
    _, fast, naive = fast_and_naive_blocks(6, 4, 3)
    for _ in range(2):  # running statistics away from their initial values
        x = torch.randn(4, 6, 8, 8, dtype=torch.float64)
        fast(x), naive(x)
    fast.eval(), naive.eval()
    x = torch.randn(3, 6, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        assert not fast._observed()
        torch.testing.assert_close(fast(x), naive(x), rtol=1e-10, atol=1e-10)
        seen = []
        handle = fast.pointwise.register_forward_pre_hook(lambda m, inp: seen.append(inp[0]))
        torch.testing.assert_close(fast(x), naive(x), rtol=1e-10, atol=1e-10)
        handle.remove()
    torch.testing.assert_close(seen[0], naive.bn(naive.depthwise(x).relu()), rtol=1e-10, atol=1e-10)


def test_bf16_inference_takes_the_kernel_at_bfloat16_rounding(monkeypatch):
    """Eval mode under CPU bfloat16 autocast (how training logs a bfloat16 network's accuracy): h comes from the
    compiled kernel in bfloat16 and the folded 1x1 conv runs in it, within bfloat16's rounding of the float32 naive
    block. Before, a bfloat16 input missed the kernel and took the naive path, slower than float32."""
    if kernels.load(torch.bfloat16) is None:
        pytest.skip("no C compiler here: the compiled kernels cannot be built")
    torch.manual_seed(0)
    naive = NaiveFactorizedBlock(12, 24, filters())
    fast = FactorizedBlock(12, 24, filters())
    fast.load_state_dict(naive.state_dict())
    for _ in range(2):  # running statistics away from their initial values
        x = torch.randn(16, 12, 8, 8)
        fast.train()(x), naive.train()(x)
    fast.eval(), naive.eval()
    calls = []
    real = kernels.factorized_forward
    monkeypatch.setattr(kernels, "factorized_forward", lambda *a, **k: calls.append(k) or real(*a, **k))
    x = torch.randn(8, 12, 8, 8)
    with torch.no_grad():
        ref = naive(x)
        for given in (x, x.bfloat16()):  # float32 from the image, bfloat16 from an earlier layer under autocast
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = fast(given)
            assert y.dtype == torch.bfloat16
            assert float((y.float() - ref).norm() / ref.norm()) < 2 ** -7
    assert [k.get("h_dtype") for k in calls] == [torch.bfloat16, torch.bfloat16]


def test_kernels_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("UNIVENC_NO_KERNELS", "1")
    kernels.load.cache_clear()
    try:
        assert kernels.load(torch.float32) is None and not kernels.available(torch.zeros(1))
    finally:
        monkeypatch.delenv("UNIVENC_NO_KERNELS")
        kernels.load.cache_clear()
    assert kernels.load(torch.float16) is None  # only float32 and float64 have kernels


def test_factorized_filters_are_frozen_by_training():
    torch.manual_seed(0)
    m = VGG(num_classes=10, width=0.125, factorized=True)
    before = {n: b.clone() for n, b in m.named_buffers() if n.endswith("filters")}
    assert len(before) == 8
    opt_params = [p for p in m.parameters() if p.requires_grad]
    assert all(not n.endswith("filters") for n, _ in m.named_parameters())
    opt = torch.optim.SGD(opt_params, lr=0.5, momentum=0.9)
    for _ in range(3):
        loss = nn.functional.cross_entropy(m(torch.randn(8, 3, 32, 32)), torch.randint(10, (8,)))
        opt.zero_grad(), loss.backward(), opt.step()
    for n, b in m.named_buffers():
        if n.endswith("filters"):
            torch.testing.assert_close(b, before[n], rtol=0, atol=0)
    assert m.features[0].pointwise.weight.shape == (8, 30, 1, 1)  # Cout x K*Cin, K = 10


def test_timm_registry():
    m = timm.create_model("univenc_vgg11", num_classes=3, kernel_size=5, width=0.125)
    assert isinstance(m, VGG) and m.config["kernel_size"] == 5
    f = timm.create_model("univenc_vgg11_factorized", num_classes=3, width=0.125)
    assert f.config["factorized"] and f(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_the_vit_attends_explicitly_on_a_cpu_and_computes_what_the_fused_kernel_does():
    from univenc.models import vit_tiny32
    torch.manual_seed(0)
    net = vit_tiny32(10).eval()
    x = torch.randn(4, 3, 32, 32)
    explicit = net(x)
    attentions = [m for m in net.modules() if hasattr(m, "fused_attn")]
    assert len(attentions) == 4 and not any(m.fused_attn for m in attentions)
    for m in attentions:
        m._forward_pre_hooks.clear()
        m.fused_attn = True
    torch.testing.assert_close(net(x), explicit, rtol=1e-5, atol=1e-5)


def test_timm_is_imported_only_when_used_and_then_knows_the_vggs():
    import subprocess
    import sys
    code = ("import sys, univenc.models, univenc.experiments, univenc.claims\n"
            "assert 'timm' not in sys.modules and 'torchvision' not in sys.modules, 'imported eagerly'\n"
            "import timm\n"
            "print(type(timm.create_model('univenc_vgg11_factorized', num_classes=3, width=0.125)).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "VGG", out.stderr[-2000:]


def test_kaiming_init_keeps_the_signal_without_batchnorm():
    x = torch.randn(16, 3, 32, 32)
    torch.manual_seed(0)
    default = VGG(width=0.25, batchnorm=False, head="mlp")
    torch.manual_seed(0)
    he = VGG(width=0.25, batchnorm=False, head="mlp", init="kaiming_relu")
    assert default(x).std() < 1e-2 * he(x).std()  # the default init all but zeroes the logits
    with pytest.raises(ValueError, match="init"):
        VGG(init="xavier")


def test_bad_arguments():
    with pytest.raises(ValueError, match="kernel_size"):
        VGG(kernel_size=4)
    with pytest.raises(ValueError, match="head"):
        VGG(head="transformer")
