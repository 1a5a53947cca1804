"""course.data: synthetic sets, landscapes, standardization, splits and the shipped digits file."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import course
from course import autodiff
from course import data as D

DIGITS = Path(D.__file__).with_name("digits.npz")


@pytest.mark.parametrize("make, kwargs, classes", [
    (D.spirals, dict(n=301, classes=3, noise=0.2), 3),
    (D.moons, dict(n=101, noise=0.1), 2),
    (D.blobs, dict(n=100, centers=4, std=0.5), 4),
])
def test_synthetic_sets_shapes_balance_and_seeds(make, kwargs, classes):
    X, y = make(rng=0, **kwargs)
    n = kwargs["n"]
    assert X.shape == (n, 2) and X.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    counts = np.bincount(y, minlength=classes)
    assert len(counts) == classes and counts.max() - counts.min() <= 1  # balanced classes
    X2, y2 = make(rng=0, **kwargs)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    X3, _ = make(rng=1, **kwargs)
    assert not np.array_equal(X, X3)
    assert y[: n // 2].min() != y[: n // 2].max()  # shuffled, not sorted by class


def test_spirals_without_noise_lie_on_their_arms():
    X, y = D.spirals(n=90, classes=3, noise=0.0, rng=0, dtype=np.float64)
    r = np.hypot(X[:, 0], X[:, 1])
    theta = np.arctan2(X[:, 1], X[:, 0])
    expected = 2 * np.pi * y / 3 + 4 * r
    assert np.allclose(np.angle(np.exp(1j * (theta - expected)))[r > 1e-9], 0, atol=1e-9)


def test_moons_without_noise_lie_on_half_circles():
    X, y = D.moons(n=50, noise=0.0, rng=0, dtype=np.float64)
    upper, lower = X[y == 0], X[y == 1]
    assert np.allclose(np.hypot(*upper.T), 1) and (upper[:, 1] >= -1e-12).all()
    assert np.allclose(np.hypot(lower[:, 0] - 1, lower[:, 1] - 0.5), 1) and (lower[:, 1] <= 0.5 + 1e-12).all()


def test_blobs_given_centers_are_the_class_means():
    centers = np.array([[0.0, 0.0, 0.0], [10.0, -10.0, 5.0]])
    X, y = D.blobs(n=4000, centers=centers, std=0.3, rng=0, dtype=np.float64)
    assert X.shape == (4000, 3)
    for k in range(2):
        assert np.allclose(X[y == k].mean(0), centers[k], atol=0.05)
        assert np.allclose(X[y == k].std(0), 0.3, rtol=0.1)


def test_synthetic_sets_reject_bad_sizes():
    with pytest.raises(ValueError, match="classes"):
        D.spirals(n=10, classes=1)
    with pytest.raises(ValueError, match="centers"):
        D.blobs(n=10, centers=np.zeros(3))
    with pytest.raises(ValueError, match="n"):
        D.moons(n=0)


# -- landscapes ---------------------------------------------------------------------------------

def _autodiff_grad(land, p):
    t = course.tensor(np.asarray(p, dtype=np.float64), requires_grad=True)
    land(t).backward()
    return t.grad.numpy()


@pytest.mark.parametrize("land", [D.quadratic(100.0, angle=0.3), D.rosenbrock(), D.saddle()],
                         ids=lambda land: land.name)
def test_landscapes_take_tensors_and_grids(land):
    X, Y, Z = land.grid(30)
    assert X.shape == Y.shape == Z.shape == (30, 30)
    i, j = 7, 19
    t = course.tensor(np.array([X[i, j], Y[i, j]]))
    assert np.isclose(float(land(t)), Z[i, j])  # same callable, same value on both inputs
    assert np.allclose(_autodiff_grad(land, land.critical_point), 0, atol=1e-12)
    assert np.all(np.isfinite(_autodiff_grad(land, land.start)))


def test_quadratic_has_the_requested_condition_number():
    for angle in (0.0, 0.7):
        land = D.quadratic(kappa=50.0, angle=angle)
        H = autodiff.hessian(land, course.tensor(np.array([0.3, -0.2]))).numpy()
        eig = np.linalg.eigvalsh(H)
        assert np.allclose(eig, [1.0, 50.0])
    with pytest.raises(ValueError, match="condition number"):
        D.quadratic(kappa=0.5)


def test_rosenbrock_and_saddle_values():
    rb = D.rosenbrock()
    assert rb(np.array([1.0, 1.0])) == 0.0 and np.isclose(rb(np.array([0.0, 0.0])), 1.0)
    assert np.allclose(_autodiff_grad(rb, [0.0, 0.0]), [-2.0, 0.0])
    sd = D.saddle()
    H = autodiff.hessian(sd, course.tensor(np.array([0.0, 0.0]))).numpy()
    assert np.allclose(H, np.diag([2.0, -2.0]))  # one positive, one negative curvature


# -- standardization and splits -------------------------------------------------------------

def test_standardizer_fits_on_train_only_and_handles_constant_features():
    rng = np.random.default_rng(0)
    train = rng.normal(3.0, 2.0, size=(500, 4)).astype(np.float32)
    train[:, 2] = 7.0  # a constant feature
    other = rng.normal(3.0, 2.0, size=(50, 4)).astype(np.float32)
    s = D.Standardizer().fit(train)
    z = s.transform(train)
    assert z.dtype == np.float32
    assert np.allclose(z.mean(0), 0, atol=1e-5)
    assert np.allclose(z.std(0), [1, 1, 0, 1], atol=1e-5)
    expected = (other.astype(np.float64) - train.mean(0)) / np.where(train.std(0) > 0, train.std(0), 1)
    assert np.allclose(s.transform(other), expected, atol=1e-5)  # train statistics, not other's
    assert np.allclose(s.inverse_transform(s.transform(other)), other, atol=1e-5)
    with pytest.raises(RuntimeError, match="fit"):
        D.Standardizer().transform(other)
    with pytest.raises(ValueError, match="fitted on"):
        s.transform(other[:, :3])


@pytest.mark.parametrize("stratify", [False, True])
def test_split_is_a_seeded_partition(stratify):
    X = np.arange(200, dtype=np.float32).reshape(100, 2)
    y = np.repeat(np.arange(4), 25)
    (Xtr, ytr), (Xva, yva), (Xte, yte) = D.split(X, y, val=0.2, test=0.2, rng=3, stratify=stratify)
    assert (len(ytr), len(yva), len(yte)) == (60, 20, 20)
    ids = np.concatenate([Xtr[:, 0], Xva[:, 0], Xte[:, 0]]) // 2
    assert sorted(ids.astype(int)) == list(range(100))  # every sample exactly once
    assert np.array_equal(y[(Xte[:, 0] // 2).astype(int)], yte)  # rows keep their labels
    again = D.split(X, y, val=0.2, test=0.2, rng=3, stratify=stratify)
    assert np.array_equal(again[2][0], Xte)
    assert not np.array_equal(D.split(X, y, val=0.2, test=0.2, rng=4, stratify=stratify)[2][0], Xte)
    if stratify:
        assert list(np.bincount(yte)) == [5] * 4 and list(np.bincount(yva)) == [5] * 4


def test_split_rejects_bad_fractions_and_lengths():
    X, y = np.zeros((10, 2)), np.zeros(10)
    with pytest.raises(ValueError, match="fractions"):
        D.split(X, y, val=0.6, test=0.5)
    with pytest.raises(ValueError, match="samples"):
        D.split(X, y[:9])


# -- the digits -------------------------------------------------------------------------------

def test_digits_file_integrity():
    assert DIGITS.stat().st_size < 200_000
    with np.load(DIGITS) as d:
        assert sorted(d.files) == ["images", "labels"]
        images, labels = d["images"], d["labels"]
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert labels.shape == (1797,)
    assert images.min() == 0 and images.max() == 16
    assert set(np.unique(labels)) == set(range(10))
    assert np.bincount(labels).min() >= 170  # about 180 of each digit
    # the UCI test file optdigits.tes as shipped by scikit-learn 1.9.1, converted unchanged
    assert hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest().startswith("8f26b2bd9d135c25")
    assert list(labels[:10]) == list(range(10))


def test_digits_licence_travels_with_the_file():
    text = DIGITS.with_name("LICENSE-digits.txt").read_text()
    assert "Alpaydin" in text and "Kaynak" in text and "CC BY 4.0" in text


def test_load_digits_options():
    X, y = D.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32 and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    raw, _ = D.load_digits(flatten=False, scale=False, dtype=np.uint8)
    assert raw.shape == (1797, 8, 8) and raw.max() == 16
    assert np.array_equal(raw.reshape(1797, 64) / 16, X)
    X[0, 0] = 99.0  # the caller's copy; the next load is unaffected
    assert D.load_digits()[0][0, 0] == 0.0
    with pytest.raises(ValueError, match="floating dtype"):
        D.load_digits(dtype=np.int32)
