"""Optional compiled CPU kernels for the factorized block (``resources/factorized_block.c``).

They are built on first use with the machine's C compiler (``$CC``, else ``cc``/``gcc``; well under a second)
into ``~/.cache/univenc/kernels`` (``$UNIVENC_CACHE`` overrides), and loaded with ctypes. Without a compiler,
with ``UNIVENC_NO_KERNELS=1`` (then :func:`load` returns None) or within :func:`disabled`,
:class:`univenc.models.FactorizedBlock` computes the same function as the naive block does, in PyTorch (tests
compare both paths with the naive block).

Where the CPU has AVX-512, the float32 and bfloat16 builds run vector rows for the first layer's few channels and for
input channels in multiples of 16: the values of the portable loops, bit for bit (:func:`portable` runs those). The
same library holds the VGG-11s' 2x2 max-pooling (:func:`maxpool2_forward`, :func:`maxpool2_backward`), PyTorch's
values and gradients.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import torch

SOURCE = Path(__file__).resolve().parent / "resources" / "factorized_block.c"
# Variants by the dtype h is stored in: {dtype: (name, compiler defines, dtype of x, dx and the arithmetic)}.
_VARIANTS = {torch.float32: ("float", ["-DREAL=float", "-DREAL_IS_FLOAT"], torch.float32),
             torch.float64: ("double", ["-DREAL=double"], torch.float64),
             torch.bfloat16: ("bf16", ["-DREAL=float", "-DREAL_IS_FLOAT", "-DBF16"], torch.float32)}


def cache_dir() -> Path:
    return Path(os.environ.get("UNIVENC_CACHE", Path.home() / ".cache" / "univenc")) / "kernels"


def _compile(name: str, defines: list) -> Path | None:
    cc = next((c for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)), None)
    if cc is None:
        return None
    base = [cc, "-O3", "-shared", "-fPIC", "-std=c99", "-ffp-contract=fast", *defines, str(SOURCE)]
    # -march=native: the library is built for the machine it runs on, so the key names the machine too.
    key = hashlib.sha1(SOURCE.read_bytes() + f"{base} {platform.machine()} {platform.node()}".encode()).hexdigest()[:16]
    out = cache_dir() / f"factorized_block_{name}_{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    for extra in (["-march=native", "-fopenmp"], ["-fopenmp"], ["-march=native"], []):  # best first
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
        done = subprocess.run(base + extra + ["-o", tmp], capture_output=True).returncode == 0
        if done:
            os.replace(tmp, out)  # atomic: a concurrent process sees the whole library or none
            return out
        os.unlink(tmp)
    return None


@lru_cache(maxsize=None)
def load(dtype: torch.dtype = torch.float32, portable: bool = False):
    """The compiled library whose h is stored in ``dtype`` (float32, float64, or bfloat16 with float32 arithmetic),
    or None where it cannot be built. ``portable``: built without its AVX-512 rows (:func:`portable`)."""
    if os.environ.get("UNIVENC_NO_KERNELS") or dtype not in _VARIANTS:
        return None
    real, defines, _ = _VARIANTS[dtype]
    try:
        path = _compile(real + "_portable" * portable, defines + ["-DUNIVENC_PORTABLE"] * portable)
        lib = ctypes.CDLL(str(path)) if path else None
    except OSError as e:  # unwritable cache, a library that does not load, ...
        warnings.warn(f"univenc: compiled kernels unavailable ({e}); the factorized block runs in PyTorch")
        return None
    if lib is None:
        return None
    p, i, n = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
    fwd, bwd = getattr(lib, f"factorized_forward_{real}"), getattr(lib, f"factorized_backward_{real}")
    fwd.argtypes, fwd.restype = [p, p, p, p] + [i] * 6 + [n], ctypes.c_int
    bwd.argtypes, bwd.restype = [p] * 6 + [i] * 6 + [n], ctypes.c_int
    for direction in ("forward", "backward"):
        pool = getattr(lib, f"maxpool2_{direction}_{real}")
        pool.argtypes, pool.restype = [p] * 3 + [i] * 4 + [n], ctypes.c_int
    return lib, fwd, bwd


_disabled = _portable = False


@contextmanager
def disabled():
    """Within this block the factorized block runs in PyTorch, as without a compiler (comparisons, tests)."""
    global _disabled
    before, _disabled = _disabled, True
    try:
        yield
    finally:
        _disabled = before


@contextmanager
def portable():
    """Within this block the kernels run their portable C loops, without the AVX-512 rows that compute the same
    values on CPUs that have AVX-512 (tests compare the two, bit for bit)."""
    global _portable
    before, _portable = _portable, True
    try:
        yield
    finally:
        _portable = before


def vector_rows(dtype: torch.dtype = torch.float32) -> bool:
    """Whether the kernels of ``dtype`` run AVX-512 rows here (float32 and bfloat16, on CPUs with AVX-512): for the
    first layer's few channels, and for input channels in multiples of 16."""
    lib = load(dtype)
    return lib is not None and bool(getattr(lib[0], f"vector_rows_{_VARIANTS[dtype][0]}")())


# The kernels hold the k x k taps of a filter in fixed arrays (49 pointers, 7 rows).
MAX_KERNEL_SIZE = 7


def available(t: torch.Tensor, h_dtype: torch.dtype | None = None, kernel_size: int = 3) -> bool:
    """Whether the compiled kernels can run on ``t`` with h stored in ``h_dtype`` (default: ``t``'s dtype) and
    filters of ``kernel_size``: a CPU tensor of the variant's arithmetic dtype, k <= 7, and a C compiler here."""
    variant = _VARIANTS.get(h_dtype or t.dtype)
    return (not _disabled and t.device.type == "cpu" and variant is not None and t.dtype == variant[2]
            and kernel_size <= MAX_KERNEL_SIZE and load(h_dtype or t.dtype) is not None)


def _ptr(t: torch.Tensor):
    return ctypes.c_void_p(t.data_ptr())


def factorized_forward(x: torch.Tensor, filters: torch.Tensor, out: torch.Tensor | None = None,
                       h_dtype: torch.dtype | None = None):
    """x (N, Cin, H, W) -> h (N, 2C, H, W) channels-last = [relu(z), relu(-z)] with z = f_j * x_c in channel
    j*Cin + c of each half, C = n Cin; and the mean and biased variance of h's channels over the batch, (2C,)
    each, computed in float64 from h's stored values. ``out``: a channels-last contiguous tensor of h's shape to
    write h into; h's dtype is ``out``'s, else ``h_dtype``, else ``x``'s (bfloat16 with a float32 ``x``)."""
    h_dtype = out.dtype if out is not None else h_dtype or x.dtype
    _, fwd, _ = load(h_dtype, _portable)
    N, cin, H, W = x.shape
    n, k, _ = filters.shape
    C = n * cin
    x = x.contiguous(memory_format=torch.channels_last)
    f = filters.to(x.dtype).contiguous()
    h = torch.empty(N, 2 * C, H, W, dtype=h_dtype, memory_format=torch.channels_last) if out is None else out
    if h.shape != (N, 2 * C, H, W) or not h.is_contiguous(memory_format=torch.channels_last):
        raise ValueError(f"out must be a channels-last {h_dtype} tensor of shape {(N, 2 * C, H, W)}")
    stats = torch.empty(2, 2 * C, dtype=torch.float64)
    if fwd(_ptr(x), _ptr(f), _ptr(h), _ptr(stats), N, H, W, cin, n, k, torch.get_num_threads()):
        raise MemoryError("univenc factorized kernel: out of memory for its per-thread buffers")
    mean, var = stats.to(x.dtype)
    return h, mean, var


# Elements of G per chunk: a few MB, so that each chunk is still in cache when the kernel reads it back.
G_CHUNK = 1 << 20


def factorized_backward(dy: torch.Tensor, w: torch.Tensor, h: torch.Tensor, alpha: torch.Tensor,
                        beta: torch.Tensor, filters: torch.Tensor, cin: int) -> torch.Tensor:
    """dx (N, Cin, H, W) channels-last from dy (N, Cout, H, W), the folded 1x1 weight w (Cout, 2C), h, and
    alpha, beta (2C,) such that dL/dh = G + alpha + beta h with G = dy w (BatchNorm's gradient).

    G is computed a few images at a time into one small buffer, each chunk consumed by the kernel while it is
    still in cache: the full (N, 2C, H, W) G is never written to memory. G = dy w is a GEMM in h's dtype (bfloat16
    for a bfloat16 h); dx, alpha and beta are in the variant's arithmetic dtype."""
    _, _, bwd = load(h.dtype, _portable)
    real = _VARIANTS[h.dtype][2]
    N, C2, H, W = h.shape
    n, k, _ = filters.shape
    P = H * W
    dy = dy.to(h.dtype).contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).reshape(N * P, -1)
    h = h.contiguous(memory_format=torch.channels_last)
    dx = torch.empty(N, cin, H, W, dtype=real, memory_format=torch.channels_last)
    a, b, f = (t.to(real).contiguous() for t in (alpha, beta, filters))
    w = w.to(h.dtype).contiguous()
    per = max(1, G_CHUNK // (P * C2))  # images per chunk
    G = torch.empty(min(per, N) * P, C2, dtype=h.dtype)
    for i in range(0, N, per):
        m = min(per, N - i)
        torch.mm(dy[i * P: (i + m) * P], w, out=G[: m * P])  # overwritten by the kernel (dL/dz)
        if bwd(_ptr(G), _ptr(h[i: i + m]), _ptr(a), _ptr(b), _ptr(f), _ptr(dx[i: i + m]), m, H, W, cin, n, k,
               torch.get_num_threads()):
            raise MemoryError("univenc factorized kernel: out of memory for its per-thread buffers")
    return dx


def pools(x: torch.Tensor) -> bool:
    """Whether :func:`maxpool2_forward` can pool ``x``: a float32 or bfloat16 CPU tensor (N, C, H, W), channels-last
    contiguous, H and W even, and the kernels built here."""
    return (not _disabled and x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16) and x.dim() == 4
            and x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0 and x.is_contiguous(memory_format=torch.channels_last)
            and load(x.dtype, _portable) is not None)


def maxpool2_forward(x: torch.Tensor) -> tuple:
    """2x2 max-pooling with stride 2 of ``x`` (see :func:`pools`): y (N, C, H/2, W/2) channels-last, PyTorch's
    ``F.max_pool2d(x, 2)`` bit for bit (a NaN is a NaN: PyTorch's bfloat16 kernel may return another NaN's bits),
    and ``which`` (N, H/2, W/2, C) uint8, the position in its window (0-3, row-major) that each value came from."""
    lib = load(x.dtype, _portable)[0]
    N, C, H, W = x.shape
    y = torch.empty(N, C, H // 2, W // 2, dtype=x.dtype, memory_format=torch.channels_last)
    which = torch.empty(N, H // 2, W // 2, C, dtype=torch.uint8)
    getattr(lib, f"maxpool2_forward_{_VARIANTS[x.dtype][0]}")(_ptr(x), _ptr(y), _ptr(which), N, H, W, C,
                                                               torch.get_num_threads())
    return y, which


def maxpool2_backward(dy: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """dx (N, C, H, W) channels-last of :func:`maxpool2_forward` from dy (N, C, H/2, W/2): dy at the position each
    output came from, 0 elsewhere; what PyTorch's backward of ``F.max_pool2d(x, 2)`` gives, bit for bit."""
    lib = load(dy.dtype, _portable)[0]
    N, C, OH, OW = dy.shape
    dy = dy.contiguous(memory_format=torch.channels_last)
    dx = torch.empty(N, C, 2 * OH, 2 * OW, dtype=dy.dtype, memory_format=torch.channels_last)
    getattr(lib, f"maxpool2_backward_{_VARIANTS[dy.dtype][0]}")(_ptr(dy), _ptr(which), _ptr(dx), N, 2 * OH, 2 * OW,
                                                                C, torch.get_num_threads())
    return dx
