"""Eq. 5 and eq. 6 against independent oracles (POT, scipy.linalg.sqrtm) and their defining properties."""
import numpy as np
import ot
import pytest
import scipy.linalg
from hypothesis import given, settings, strategies as st
from scipy.stats import ortho_group

from univenc.similarity import (bw_cosine, bw_cosine_dense, eigenvector_cosines, normalised_similarity,
                                random_rotation_floor, resample, resampling_ceiling)
from univenc.covariance import shrink_eigenvalues


def random_psd(d, r, rng, decay=1.0):
    u = np.linalg.qr(rng.standard_normal((d, r)))[0]
    vals = np.exp(-decay * np.arange(r) / r) * rng.uniform(0.5, 2.0)
    return u, vals, (u * vals) @ u.T


def sqrtm_reference(c1, c2):
    """||C1^1/2 C2^1/2||_* / sqrt(tr C1 tr C2) with scipy.linalg.sqrtm and a dense SVD."""
    s1, s2 = np.real(scipy.linalg.sqrtm(c1)), np.real(scipy.linalg.sqrtm(c2))
    return np.linalg.svd(s1 @ s2, compute_uv=False).sum() / np.sqrt(np.trace(c1) * np.trace(c2))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("r1,r2", [(12, 12), (3, 7)])
def test_bw_cosine_matches_pot_and_sqrtm(seed, r1, r2):
    rng = np.random.default_rng(seed)
    d = 12
    u1, l1, c1 = random_psd(d, r1, rng)
    u2, l2, c2 = random_psd(d, r2, rng)
    fast = bw_cosine(l1, u1, l2, u2)
    # POT: bures^2 = tr C1 + tr C2 - 2 F with the fidelity F = ||C1^1/2 C2^1/2||_*. POT's matrix square root
    # needs full rank, so low-rank inputs get a ridge; the fast path then runs on the same ridged matrices.
    ridge = 0.0 if r1 == r2 == d else 1e-4
    a, b = c1 + ridge * np.eye(d), c2 + ridge * np.eye(d)
    b2 = ot.gaussian.bures_distance(a, b) ** 2
    pot = (np.trace(a) + np.trace(b) - b2) / 2 / np.sqrt(np.trace(a) * np.trace(b))
    (la, ua), (lb, ub) = np.linalg.eigh(a), np.linalg.eigh(b)
    assert bw_cosine(la, ua, lb, ub) == pytest.approx(pot, rel=1e-7)
    assert fast == pytest.approx(pot, abs=1e-2 if ridge else 1e-7)  # ridge moves it a little
    assert fast == pytest.approx(bw_cosine_dense(c1, c2), rel=1e-9)
    if r1 == d and r2 == d:  # sqrtm is reliable on full-rank matrices
        assert fast == pytest.approx(sqrtm_reference(c1, c2), rel=1e-8)


def test_low_rank_matches_sqrtm_on_regularised_matrices():
    rng = np.random.default_rng(7)
    u1, l1, c1 = random_psd(20, 4, rng)
    u2, l2, c2 = random_psd(20, 6, rng)
    # the low-rank value is the limit of the full-rank one
    eps = 1e-10
    ref = sqrtm_reference(c1 + eps * np.eye(20), c2 + eps * np.eye(20))
    assert bw_cosine(l1, u1, l2, u2) == pytest.approx(ref, abs=1e-4)


matrices = st.tuples(st.integers(2, 10), st.integers(0, 10_000))


@settings(max_examples=40, deadline=None)
@given(matrices)
def test_bw_cosine_properties(args):
    d, seed = args
    rng = np.random.default_rng(seed)
    r1, r2 = rng.integers(1, d + 1, size=2)
    u1, l1, c1 = random_psd(d, r1, rng)
    u2, l2, c2 = random_psd(d, r2, rng)
    c12 = bw_cosine(l1, u1, l2, u2)
    assert -1e-12 <= c12 <= 1 + 1e-12                                     # bounds
    assert c12 == pytest.approx(bw_cosine(l2, u2, l1, u1), abs=1e-10)   # symmetry
    assert bw_cosine(l1, u1, l1, u1) == pytest.approx(1.0, abs=1e-10)   # identity
    o = ortho_group.rvs(d, random_state=seed) if d > 1 else np.eye(1)
    assert bw_cosine(l1, o @ u1, l2, o @ u2) == pytest.approx(c12, abs=1e-10)  # common rotation
    assert bw_cosine(l1, u1, l2, u2) == pytest.approx(bw_cosine_dense(c1, c2), abs=1e-8)


def test_eigenvector_cosines_chance_level():
    rng = np.random.default_rng(0)
    d = 400
    a = np.linalg.qr(rng.standard_normal((d, 20)))[0]
    b = np.linalg.qr(rng.standard_normal((d, 20)))[0]
    m = eigenvector_cosines(a, b)
    assert m.shape == (20, 20)
    assert m.mean() == pytest.approx(np.sqrt(2 / np.pi) / np.sqrt(d), rel=0.15)  # E|N(0, 1/d)|
    np.testing.assert_allclose(eigenvector_cosines(a, a), np.eye(20), atol=1e-12)
    with pytest.raises(ValueError, match="different spaces"):
        eigenvector_cosines(a, b[:10])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_normalised_similarity_resample_is_one_and_rotation_is_zero(seed):
    rng = np.random.default_rng(10_000 + seed)  # not the floor's seed: its first draw would be this matrix
    d, cout, r = 120, 240, 6
    u = np.linalg.qr(rng.standard_normal((d, r)))[0]
    vals = np.linspace(20, 6, r)
    # "another network": a shrunk resample of the same covariance
    x = resample(vals, u, cout, rng)
    _, s, vt = np.linalg.svd(x / np.sqrt(cout), full_matrices=False)
    sh = shrink_eigenvalues(s ** 2, d / cout)
    keep = sh > 0
    same = normalised_similarity(vals, u, sh[keep], vt[keep].T, cout, n_draws=8, seed=seed)
    assert same.value == pytest.approx(1.0, abs=0.15)
    # a random rotation of it: S is 0 on average over rotations (one rotation scatters around the floor)
    rots = [normalised_similarity(vals, u, vals, ortho_group.rvs(d, random_state=100 * seed + i) @ u, cout,
                                  n_draws=8, seed=seed) for i in range(10)]
    assert np.mean([r.value for r in rots]) == pytest.approx(0.0, abs=0.1)
    assert rots[0].floor.shape == (8,) and same.ceiling.shape == (8,)


@pytest.mark.parametrize("d,cout", [(40, 12), (12, 40)])  # wide and tall samples
def test_ceiling_equals_its_definition_with_a_full_svd(d, cout):
    rng = np.random.default_rng(3)
    u, vals, _ = random_psd(d, 5, rng)
    vals = vals * 20  # spikes above the noise edge, so that some eigenvalues are kept
    draws = np.random.default_rng(7)
    expected = []
    for _ in range(3):  # the definition: SVD of the resampled layer, eq. 3, eq. 5
        x = resample(vals, u, cout, draws)
        _, s, vt = np.linalg.svd(x / np.sqrt(cout), full_matrices=False)
        shrunk = shrink_eigenvalues(s ** 2, d / cout)
        expected.append(bw_cosine(vals, u, shrunk[shrunk > 0], vt[shrunk > 0].T))
    np.testing.assert_allclose(resampling_ceiling(vals, u, cout, 3, seed=7), expected, rtol=1e-10)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 1000), st.integers(1, 4))
def test_floor_and_ceiling_depend_on_the_covariance_not_on_eigenvector_signs(seed, r):
    rng = np.random.default_rng(seed)
    u, vals, _ = random_psd(20, r, rng)
    vals = vals * 10
    flipped = u * rng.choice([-1.0, 1.0], size=r)
    np.testing.assert_allclose(resampling_ceiling(vals, flipped, 30, 3, seed=seed),
                               resampling_ceiling(vals, u, 30, 3, seed=seed), rtol=1e-12)
    np.testing.assert_allclose(random_rotation_floor(vals, flipped, 3, seed=seed),
                               random_rotation_floor(vals, u, 3, seed=seed), rtol=1e-12)


def test_floor_and_ceiling_are_seeded():
    rng = np.random.default_rng(3)
    u = np.linalg.qr(rng.standard_normal((50, 5)))[0]
    vals = np.arange(5, 0, -1.0) * 4
    np.testing.assert_array_equal(random_rotation_floor(vals, u, 3, seed=1), random_rotation_floor(vals, u, 3, seed=1))
    np.testing.assert_array_equal(resampling_ceiling(vals, u, 80, 3, seed=1), resampling_ceiling(vals, u, 80, 3, seed=1))
    assert np.all(random_rotation_floor(vals, u, 3) < resampling_ceiling(vals, u, 80, 3))
