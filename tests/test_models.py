"""Models: architecture of B.1/B.2, the fast factorized block equals the naive one, frozen filters, timm."""
import pytest
import timm
import torch
from torch import nn

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


@pytest.mark.parametrize("cin,cout", [(3, 8), (6, 4)])
def test_fast_factorized_block_equals_naive(cin, cout):
    torch.manual_seed(0)
    fast = FactorizedBlock(cin, cout, filters()).double()
    naive = NaiveFactorizedBlock(cin, cout, filters()).double()
    state = {k: v for k, v in fast.state_dict().items() if k != "filters"}
    naive.load_state_dict(state | {"depthwise.weight": naive.depthwise.weight}, strict=True)
    for step in range(3):  # several steps: running statistics too
        x = torch.randn(5, cin, 8, 8, dtype=torch.float64, requires_grad=True)
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
    other = FactorizedBlock(cin, cout, torch.zeros(5, 3, 3)).double()
    other.load_state_dict(naive.state_dict())
    torch.testing.assert_close(other.filters.double(), filters().double())


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
