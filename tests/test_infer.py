"""sslseg.infer: importance map, sliding-window stitching and 2D prediction protocols with fake models."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from sslseg.infer import gaussian_map, predict_volume, sliding_window


def pointwise(dims: int, n_classes: int, channels: int = 1) -> nn.Module:
    """A 1x1(x1) convolution with fixed, distinct weights: the logits at a voxel depend on that voxel only."""
    conv = (nn.Conv2d if dims == 2 else nn.Conv3d)(channels, n_classes, 1)
    with torch.no_grad():
        w = torch.linspace(-2.0, 3.0, n_classes * channels).view(n_classes, channels, *[1] * dims)
        conv.weight.copy_(w)
        conv.bias.copy_(torch.linspace(1.0, -1.5, n_classes))
    return conv.eval()


class Constant(nn.Module):
    """Logits favouring one class everywhere."""

    def __init__(self, n_classes: int, winner: int) -> None:
        super().__init__()
        self.logits = torch.zeros(n_classes)
        self.logits[winner] = 5.0

    def forward(self, x):
        shape = (x.shape[0], len(self.logits)) + tuple(x.shape[2:])
        return self.logits.view(1, -1, *[1] * (x.ndim - 2)).expand(shape).clone()


class Recorder(nn.Module):  # noqa: D101
    """Wraps a model and records the shape of every batch it sees."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return self.inner(x)


def whole(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(image[None, None]).softmax(1)[0]


# ---------------------------------------------------------------- gaussian_map

@pytest.mark.parametrize("patch", [(8, 8), (9, 7), (16, 24, 12), (5, 5, 5), (32,)])
def test_gaussian_map_properties(patch):
    g = gaussian_map(patch)
    assert isinstance(g, torch.Tensor)
    assert tuple(g.shape) == tuple(patch)
    assert g.dtype == torch.float32
    g = g.numpy()
    assert g.max() == 1.0
    assert g[tuple(p // 2 for p in patch)] == 1.0  # peak at the centre voxel
    assert g.min() > 0
    # symmetric about the centre voxel along every axis
    for ax, p in enumerate(patch):
        c = p // 2
        k = min(c, p - 1 - c)
        lo = np.take(g, range(c - k, c), axis=ax)
        hi = np.flip(np.take(g, range(c + 1, c + k + 1), axis=ax), axis=ax)
        np.testing.assert_allclose(lo, hi, rtol=1e-6)
    # decreasing away from the centre along each axis through the centre
    centre_line = g[tuple(slice(None) if i == 0 else patch[i] // 2 for i in range(len(patch)))]
    c = patch[0] // 2
    assert np.all(np.diff(centre_line[: c + 1]) > 0)
    assert np.all(np.diff(centre_line[c:]) < 0)


def test_gaussian_map_odd_patch_mirror_symmetric():
    g = gaussian_map((9, 7, 11)).numpy()
    for ax in range(3):
        np.testing.assert_allclose(g, np.flip(g, ax), rtol=1e-6)


def test_gaussian_map_replaces_zeros_by_smallest_nonzero():
    # sigma = 0.64: scipy truncates the kernel at int(4 * sigma + 0.5) = 3 voxels, so every voxel more than 3
    # from the centre (32) is exactly 0 before the replacement and must become the smallest non-zero value
    g = gaussian_map((64,), sigma_scale=0.01).numpy()
    assert g.min() > 0
    inner = g[29:36]
    assert np.all(np.diff(inner[:4]) > 0) and np.all(np.diff(inner[3:]) < 0)
    assert np.all(g[:29] == inner.min())
    assert np.all(g[36:] == inner.min())
    assert g[29] == g[35] == inner.min()


# ---------------------------------------------------------------- sliding_window

SW_CASES = [
    # (image shape, patch, overlap)
    ((20, 20), (8, 8), 0.5),
    ((23, 17), (8, 6), 0.5),
    ((13, 29), (8, 8), 0.25),
    ((5, 7), (8, 8), 0.5),  # image smaller than the patch on both axes: padding path
    ((5, 19), (8, 8), 0.5),  # smaller on one axis only
    ((16, 16), (8, 8), 0.0),
    ((9, 13, 11), (4, 6, 8), 0.5),
    ((3, 13, 7), (4, 6, 8), 0.33),  # 3D, padded on two axes
]


@pytest.mark.parametrize("mode", ["gaussian", "constant"])
@pytest.mark.parametrize("shape,patch,overlap", SW_CASES)
def test_sliding_window_equals_whole_image(shape, patch, overlap, mode):
    torch.manual_seed(0)
    n_classes = 4
    model = pointwise(len(shape), n_classes)
    image = torch.randn(shape) * 2
    probs = sliding_window(model, image[None], patch, n_classes, overlap=overlap, mode=mode, batch_size=3)
    assert tuple(probs.shape) == (n_classes,) + shape
    assert torch.isfinite(probs).all()
    torch.testing.assert_close(probs, whole(model, image), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(probs.sum(0), torch.ones(shape), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape,patch,overlap,starts", [
    ((20,), (8,), 0.5, [[0, 4, 8, 12]]),
    ((8,), (8,), 0.5, [[0]]),
    ((5,), (8,), 0.5, [[0]]),
    ((17,), (8,), 0.5, [[0, 3, 6, 9]]),  # ceil(9 / 4) + 1 = 4 windows, evenly spread
    ((16, 13), (8, 8), 0.0, [[0, 8], [0, 5]]),
])
def test_window_placement(shape, patch, overlap, starts):
    """Windows as nnU-Net places them; recorded by a model that reads its position from the input."""
    n = math.prod(len(s) for s in starts)
    # input value = flat index, so a window's first voxel reveals where it starts
    padded = [max(s, p) for s, p in zip(shape, patch)]
    image = torch.arange(math.prod(shape), dtype=torch.float32).reshape(shape)
    rec = Recorder(Constant(2, 1))
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.extend(x[:, 0].reshape(x.shape[0], -1)[:, 0].tolist())
            return rec(x)

    sliding_window(Spy(), image[None], patch, 2, overlap=overlap, mode="constant", batch_size=2)
    assert sum(s[0] for s in rec.shapes) == n
    assert all(s[2:] == tuple(patch) for s in rec.shapes)
    if padded == list(shape):
        expected = [float(np.ravel_multi_index(w, shape)) for w in itertools.product(*starts)]
        assert seen == expected


def test_sliding_window_constant_model():
    model = Constant(3, 2)
    probs = sliding_window(model, torch.zeros(1, 11, 9, 10), (4, 4, 4), 3, overlap=0.5, mode="gaussian")
    assert probs.argmax(0).eq(2).all()
    torch.testing.assert_close(probs[2], torch.full((11, 9, 10), float(torch.tensor([0.0, 0, 5]).softmax(0)[2])))


@pytest.mark.parametrize("kwargs,match", [
    (dict(mode="median"), "mode"),
    (dict(mode="Gaussian"), "mode"),
    (dict(overlap=1.0), "overlap"),
    (dict(overlap=-0.1), "overlap"),
    (dict(overlap=1.5), "overlap"),
])
def test_sliding_window_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sliding_window(pointwise(2, 2), torch.zeros(1, 8, 8), (4, 4), 2, **kwargs)


# ---------------------------------------------------------------- predict_volume

@pytest.mark.parametrize("protocol", ["ssl4mis-2d", "strict"])
@pytest.mark.parametrize("shape", [(3, 20, 14), (1, 16, 16), (2, 9, 31), (20, 14)])
def test_predict_volume_2d_shape_and_dtype(protocol, shape):
    rng = np.random.default_rng(0)
    image = rng.standard_normal(shape).astype(np.float32)
    pred = predict_volume(pointwise(2, 4), image[None], 2, (16, 16), 4, protocol=protocol, batch_size=2)
    assert pred.shape == shape
    assert pred.dtype == np.uint8
    assert pred.max() < 4


@pytest.mark.parametrize("protocol", ["ssl4mis-2d", "strict"])
def test_predict_volume_2d_at_patch_size_is_the_plain_argmax(protocol):
    rng = np.random.default_rng(1)
    image = rng.standard_normal((3, 16, 12)).astype(np.float32)
    model = pointwise(2, 4)
    pred = predict_volume(model, image[None], 2, (16, 12), 4, protocol=protocol, batch_size=2)
    expected = model(torch.from_numpy(image)[:, None]).argmax(1).numpy()
    np.testing.assert_array_equal(pred, expected)
    assert not model.training


@pytest.mark.parametrize("protocol", ["ssl4mis-2d", "strict"])
def test_predict_volume_2d_constant_model(protocol):
    pred = predict_volume(Constant(4, 3), np.zeros((1, 2, 13, 21), np.float32), 2, (16, 16), 4, protocol=protocol)
    assert pred.shape == (2, 13, 21)
    assert np.all(pred == 3)


def test_predict_volume_2d_resizing_protocols():
    """Image = 2x2 constant blocks at twice the patch size, pointwise model: 'ssl4mis-2d' (order-0 zoom down and back)
    reproduces the full-resolution argmax exactly; 'strict' (bilinear) agrees on most voxels."""
    rng = np.random.default_rng(2)
    image = np.repeat(np.repeat(rng.standard_normal((1, 8, 8)).astype(np.float32), 2, 1), 2, 2)  # 2x2 blocks
    model = pointwise(2, 3)
    paper = predict_volume(model, image[None], 2, (8, 8), 3, protocol="ssl4mis-2d")
    strict = predict_volume(model, image[None], 2, (8, 8), 3, protocol="strict")
    plain = model(torch.from_numpy(image)[:, None]).argmax(1).numpy()
    np.testing.assert_array_equal(paper, plain)  # constant 2x2 blocks survive nearest down/up-sampling
    assert strict.shape == paper.shape
    assert np.mean(strict == plain) > 0.7


def test_predict_volume_3d_is_sliding_window_argmax():
    torch.manual_seed(0)
    image = np.random.default_rng(3).standard_normal((7, 10, 9)).astype(np.float32)
    model = pointwise(3, 3)
    pred = predict_volume(model, image[None], 3, (4, 6, 6), 3, overlap=0.5, mode="constant")
    assert pred.dtype == np.uint8 and pred.shape == image.shape
    np.testing.assert_array_equal(pred, whole(model, torch.from_numpy(image)).argmax(0).numpy())


# ---------------------------------------------------------------- channels

@pytest.mark.parametrize("dims, shape, patch", [(2, (3, 13, 9), (8, 8)), (3, (2, 7, 10, 9), (4, 6, 6))])
def test_multichannel_prediction_equals_the_whole_image(dims, shape, patch):
    """RGB 2D images and two-channel volumes: every channel reaches the network, windows stitch exactly."""
    image = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    model = pointwise(dims, 3, channels=shape[0])
    pred = predict_volume(model, image, dims, patch if dims == 3 else shape[1:], 3, overlap=0.5, mode="constant")
    with torch.no_grad():
        expected = model(torch.from_numpy(image)[None]).argmax(1)[0].numpy()
    np.testing.assert_array_equal(pred, expected)
    if dims == 3:  # a network that ignored the second channel would disagree somewhere
        drop = image.copy()
        drop[1] = 0
        assert not np.array_equal(predict_volume(model, drop, 3, patch, 3, overlap=0.5, mode="constant"), pred)
