"""Paired-data builders: each task's (x, y) against its definition, the registry, and input checks."""
from __future__ import annotations

import pytest
import torch

from advgan import data, pairs


def _step_image(h=16, w=16, col=8):
    img = torch.zeros(1, 1, h, w)
    img[..., col:] = 1.0
    return img


def test_registry_and_unknown_task(mnist):
    assert pairs.available() == ["colorize", "edges", "nextframe", "superres"]
    with pytest.raises(ValueError, match="valid: colorize, edges, nextframe, superres"):
        pairs.build("inpaint", mnist[1])


@pytest.mark.parametrize("task", ["edges", "superres", "nextframe"])
def test_tasks_on_mnist_give_image_pairs(task, mnist):
    ds = mnist[1].subset(50)
    p = pairs.build(task, ds)
    x, y = p[0]
    assert x.shape == y.shape == (1, 28, 28) and len(p) == len(ds)
    original = x if task == "nextframe" else y                   # nextframe: x is frame t, y the moved frame t+1
    assert torch.equal(original, ds.images[0])
    assert 0 <= float(p.x.min()) and float(p.x.max()) <= 1
    assert not torch.equal(x, y)


def test_colorize_rgb_uses_luminance_and_warns_on_gray(mnist):
    rgb = data.ImageDataset(torch.rand(6, 3, 8, 8), torch.zeros(6, dtype=torch.long), 2)
    p = pairs.build("colorize", rgb)
    x, y = p[2]
    assert x.shape == (1, 8, 8) and y.shape == (3, 8, 8)
    ref = 0.299 * y[0] + 0.587 * y[1] + 0.114 * y[2]
    assert torch.allclose(x[0], ref, atol=1e-6)
    with pytest.warns(UserWarning, match="identity"):
        g = pairs.build("colorize", mnist[1].subset(20))
    assert torch.equal(g[0][0], g[0][1])


def test_sobel_edges_on_a_step():
    e = pairs.sobel_edges(_step_image())
    assert float(e.max()) == pytest.approx(1.0)
    assert float(e[..., :, :6].abs().max()) == 0.0 and float(e[..., :, 10:].abs().max()) == 0.0  # flat regions
    assert float(e[..., 4, 7]) == pytest.approx(1.0) and float(e[..., 4, 8]) == pytest.approx(1.0)  # at the step


def test_canny_like_is_binary_and_thin():
    img = torch.zeros(1, 1, 24, 24)
    img[..., 6:18, 6:18] = 1.0                                   # a bright square
    e = pairs.canny_like(img, low=0.1, high=0.3, sigma=1.0)
    assert set(e.unique().tolist()) <= {0.0, 1.0}
    assert e[0, 0, 12].sum() <= 4                                 # a row crosses two thin vertical edges
    assert e[0, 0, 12, :4].sum() == 0 and e[0, 0, 12, 9:15].sum() == 0      # nothing in flat areas
    thick = (pairs.sobel_edges(img) > 0.1).float()
    assert e.sum() < thick.sum()                                 # non-maximum suppression thins the edges
    p = pairs.build("edges", data.ImageDataset(img, torch.zeros(1, dtype=torch.long), 2), canny=True)
    assert torch.equal(p[0][0], e[0])


def test_superres_matches_block_average_upsampled():
    y = torch.rand(1, 1, 16, 16)
    x = pairs.downsample_upsample(y, 4)
    small = torch.nn.functional.avg_pool2d(y, 4)
    assert x.shape == y.shape
    assert torch.allclose(torch.nn.functional.avg_pool2d(x, 4), small, atol=0.08)   # low frequencies kept
    const = torch.full((1, 1, 16, 16), 0.3)
    assert torch.allclose(pairs.downsample_upsample(const, 4), const, atol=1e-6)
    with pytest.raises(ValueError, match="factor"):
        pairs.build("superres", data.ImageDataset(y, torch.zeros(1, dtype=torch.long), 2), factor=1)


def test_nextframe_shift_and_rotation():
    x = torch.zeros(1, 1, 16, 16)
    x[..., 5, 6] = 1.0
    y = pairs.shift_rotate(x, dx=2, dy=1, angle=0)
    assert float(y[..., 6, 8]) == pytest.approx(1.0, abs=1e-5) and float(y.sum()) == pytest.approx(1.0, abs=1e-5)
    r = pairs.shift_rotate(x, 0, 0, 90)
    assert float(r.sum()) == pytest.approx(1.0, abs=1e-4) and float(r[..., 5, 6]) < 0.5        # it moved
    with pytest.raises(ValueError, match="motion"):
        pairs.nextframe(dx=0, dy=0, angle=0)


def test_lazy_path_equals_precomputed_and_bad_inputs(mnist):
    ds = mnist[1].subset(20)
    lazy = pairs.PairDataset(torch.utils.data.TensorDataset(ds.images, ds.labels), pairs.edges(), "edges", precompute=False)
    pre = pairs.build("edges", ds)
    assert lazy.x is None and pre.x is not None
    assert torch.allclose(lazy[3][0], pre[3][0], atol=1e-6) and torch.equal(lazy[3][1], pre[3][1])
    bad = data.ImageDataset(ds.images * 255, ds.labels, 10)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pairs.build("edges", bad)
    with pytest.raises(ValueError, match="low <= high"):
        pairs.build("edges", ds, canny=True, low=0.5, high=0.2)
