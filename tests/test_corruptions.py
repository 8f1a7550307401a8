"""``attacks.corrupt`` / ``Corruption``: the contract of every corruption, its building blocks, bad input.

Real images: MNIST-5k digits (1 channel, 28 x 28) and crops of scikit-learn's sample photographs
(3 channels, 64 x 64). The comparison with the reference implementation is in
``test_corruptions_reference.py``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from corruption_reference import mnist_images, rgb_crops

import attacks
from attacks import CORRUPTION_FAMILIES, CORRUPTIONS, Corruption, corrupt, corruption_names
from attacks.corruptions import RANDOM_CORRUPTIONS, _ops, jpeg, weather
from attacks.corruptions.blur import disk_kernel, zoom_factors

#: the reference's strength is not monotone in severity for these; the smallest step ratio
#: d(s+1) / d(s) it shows on digits or photos (measured against imagecorruptions), with a margin:
#: saturate 2 -> 3 (desaturate 0.1x -> saturate 2x), spatter 3 -> 4 (water -> mud), glass 3 -> 4,
#: frost 3 -> 4 and fog 3 -> 4 (nearly equal settings); motion blur 4 -> 5 saturates on small images
#: (both smear a digit over the whole image: the reference gives 0.161 / 0.162 on 32 px digits)
NOT_MONOTONE = {"saturate": 0.5, "spatter": 0.7, "glass_blur": 0.85, "frost": 0.9, "fog": 0.9, "motion_blur": 0.97}


@pytest.fixture(scope="module")
def digits():
    return mnist_images(8)[0]


@pytest.fixture(scope="module")
def photos():
    return rgb_crops(4, 64)


def _batches(digits, photos):
    return {"gray28": digits, "rgb64": photos}


# ---------------------------------------------------------------------- the contract, per corruption
def test_names_and_families():
    assert len(CORRUPTIONS) == 19 and len(set(CORRUPTIONS)) == 19
    assert CORRUPTIONS[:4] == ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur")
    assert CORRUPTIONS[-1] == "saturate"
    assert sum(CORRUPTION_FAMILIES.values(), ()) == CORRUPTIONS
    assert attacks.corrupt is corrupt and "Corruption" in attacks.__all__
    assert corruption_names("all") == CORRUPTIONS
    assert corruption_names("noise") == ("gaussian_noise", "shot_noise", "impulse_noise")
    assert corruption_names("common") == CORRUPTIONS[:15]
    assert corruption_names(["fog", "snow"]) == ("fog", "snow")
    assert corruption_names("fog") == ("fog",)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_shape_dtype_range_and_input_untouched(name, digits, photos):
    for x in (digits, photos, torch.rand(2, 1, 5, 7), torch.rand(1, 3, 33, 20)):
        before = x.clone()
        for s in (1, 5):
            y = corrupt(x, name, s)
            assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
            assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
            assert y.data_ptr() != x.data_ptr()
        assert torch.equal(x, before)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_seeded_determinism_and_seed_dependence(name, digits, photos):
    for x in (digits, photos):
        a, b = corrupt(x, name, 3, seed=7), corrupt(x, name, 3, seed=7)
        assert torch.equal(a, b)
        other = corrupt(x, name, 3, seed=8)
        if name in RANDOM_CORRUPTIONS:
            assert not torch.equal(a, other)
        else:
            assert torch.equal(a, other)
    if name in RANDOM_CORRUPTIONS:  # every image gets its own draw
        same = photos[:1].expand(2, -1, -1, -1).contiguous()
        y = corrupt(same, name, 3, seed=1)
        assert not torch.equal(y[0], y[1])


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_cpu_chunks_change_nothing_but_the_draws(name, photos, monkeypatch):
    """Large CPU batches run in chunks: deterministic corruptions give exactly the one-pass result, random ones
    stay seeded, in range and drawn per image."""
    from attacks.corruptions import api

    x = torch.cat([photos, photos.flip(-1)])  # 8 photos
    whole = corrupt(x, name, 3, seed=5)
    monkeypatch.setattr(api, "CPU_CHUNK_VALUES", 3 * x[0].numel())  # 3 images a chunk: 3 + 3 + 2
    chunked = corrupt(x, name, 3, seed=5)
    assert chunked.shape == x.shape and chunked.min() >= 0 and chunked.max() <= 1
    assert torch.equal(chunked, corrupt(x, name, 3, seed=5))
    if name in RANDOM_CORRUPTIONS:  # the chunks draw from one generator in turn, not each from the seed
        same = corrupt(photos[:1].expand(8, -1, -1, -1).contiguous(), name, 3, seed=5)
        assert not torch.equal(same[0], same[3]) and not torch.equal(same[3], same[6])
    else:
        assert torch.equal(chunked, whole)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_distance_rises_with_severity(name, digits, photos):
    for tag, x in _batches(digits, photos).items():
        d = [float((corrupt(x, name, s, seed=3) - x).abs().mean()) for s in range(1, 6)]
        if name == "saturate" and tag == "gray28":
            # a gray image has no saturation: severities 1-3 leave it unchanged (as in the reference),
            # 4-5 add a fixed saturation (hue 0, red) that reads back darker in luma
            assert max(d[:3]) < 1e-6 and 0.005 < d[3] < d[4], d
            continue
        assert d[4] > d[0] > 0, (tag, d)
        floor = NOT_MONOTONE.get(name, 1.0)
        for s in range(4):
            ok = d[s + 1] >= floor * d[s] if name in NOT_MONOTONE else d[s + 1] > d[s]
            assert ok, f"{name} on {tag}: distances {[round(v, 4) for v in d]} fall from severity {s + 1} to {s + 2}"


def test_global_rng_untouched_and_dtypes(digits):
    state = torch.get_rng_state()
    for name in CORRUPTIONS:
        corrupt(digits[:2], name, 2, seed=5)
    assert torch.equal(state, torch.get_rng_state())
    for dt in (torch.float64, torch.float16, torch.bfloat16):
        y = corrupt(digits[:2].to(dt), "gaussian_noise", 1)
        assert y.dtype == dt and float(y.min()) >= 0 and float(y.max()) <= 1
    # float64 work stays float64: agrees with float32 to rounding
    a = corrupt(digits[:2].double(), "defocus_blur", 3).float()
    assert torch.allclose(a, corrupt(digits[:2], "defocus_blur", 3), atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda(photos):
    x = photos.cuda()
    for name in CORRUPTIONS:
        y = corrupt(x, name, 3)
        assert y.device == x.device and y.shape == x.shape
        assert torch.equal(y, corrupt(x, name, 3))
        if name not in RANDOM_CORRUPTIONS:
            assert torch.allclose(y.cpu(), corrupt(photos, name, 3), atol=2 / 255)


def test_library_code_has_no_numpy_or_reference():
    src = Path(attacks.__file__).parent / "corruptions"
    for f in src.glob("*.py"):
        text = f.read_text()
        assert "import numpy" not in text and "imagecorruptions" not in text, f.name


# ---------------------------------------------------------------------- the Corruption object
def test_corruption_object_is_attack_like(digits):
    c = Corruption("fog", 3, seed=2)
    assert c.name == "fog" and c.severity == 3 and c.family == "weather" and c.random
    y = c(None, digits, torch.zeros(len(digits), dtype=torch.long))
    assert torch.equal(y, corrupt(digits, "fog", 3, seed=2))
    assert torch.equal(c(torch.nn.Linear(2, 2), digits, None), y)  # the model is ignored
    d = c.describe()
    assert json.loads(json.dumps(d)) == d and d["severity"] == 3 and d["name"] == "fog"
    assert repr(c) == "Corruption('fog', severity=3, seed=2)"
    assert c == Corruption("fog", 3, seed=2) and c != Corruption("fog", 4, seed=2)
    assert not Corruption("contrast", 1).random
    assert c.with_seed(9) == Corruption("fog", 3, seed=9) and c.seed == 2
    with torch.autocast("cpu", dtype=torch.bfloat16):  # evaluation under amp: still full precision
        assert torch.equal(c(None, digits), y)
    with pytest.raises(ValueError, match="not a targeted attack"):
        c(None, digits, torch.zeros(len(digits), dtype=torch.long), target=torch.ones(len(digits), dtype=torch.long))


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad, exc, match", [
    (("fogg", 3), ValueError, "unknown corruption 'fogg'; valid corruptions: gaussian_noise, shot_noise"),
    ((3, 3), TypeError, "corruption name must be a string"),
    (("fog", 0), ValueError, "severity must be from 1"),
    (("fog", 6), ValueError, "severity must be from 1"),
    (("fog", 2.0), TypeError, "severity must be an int"),
    (("fog", True), TypeError, "severity must be an int"),
])
def test_bad_name_or_severity(bad, exc, match, digits):
    before = digits.clone()
    with pytest.raises(exc, match=match):
        corrupt(digits, *bad)
    with pytest.raises(exc, match=match):
        Corruption(*bad)
    assert torch.equal(digits, before)


def test_bad_images_get_the_shared_hints(digits):
    with pytest.raises(TypeError, match="0-255 integer pixels"):
        corrupt((digits * 255).to(torch.uint8), "fog", 1)
    with pytest.raises(ValueError, match="0-255 pixels: divide by 255"):
        corrupt(digits * 255, "fog", 1)
    with pytest.raises(ValueError, match="normalized"):
        corrupt((digits - 0.5) / 0.5, "fog", 1)
    with pytest.raises(ValueError, match="NaN"):
        corrupt(torch.full((1, 1, 8, 8), float("nan")), "fog", 1)
    with pytest.raises(ValueError, match="4-D"):
        corrupt(digits[0], "fog", 1)
    with pytest.raises(ValueError, match="channel"):
        corrupt(torch.rand(1, 2, 8, 8), "fog", 1)
    with pytest.raises(ValueError, match="channel"):
        corrupt(torch.rand(1, 4, 8, 8), "fog", 1)
    with pytest.raises(TypeError, match="torch.Tensor"):
        corrupt(digits.tolist(), "fog", 1)
    # a NumPy array follows the shared dtype policy: accepted as a tensor, never written
    arr = digits.numpy().copy()
    assert torch.equal(corrupt(arr, "fog", 1), corrupt(digits, "fog", 1)) and np.array_equal(arr, digits.numpy())
    with pytest.raises(TypeError, match="seed must be an int"):
        corrupt(digits, "fog", 1, seed=1.5)
    with pytest.raises(ValueError, match="unknown corruption or group"):
        corruption_names("blurs")
    with pytest.raises(ValueError, match="unknown corruption 'x'"):
        corruption_names(["fog", "x"])


# ---------------------------------------------------------------------- building blocks
def test_border_rules_match_numpy_pad():
    v = np.arange(5.0)
    rules = {"replicate": "edge", "reflect101": "reflect", "symmetric": "symmetric"}
    for mode, np_mode in rules.items():
        for p in (1, 3, 4, 12):
            idx = _ops.border_index(5, p, p, mode, torch.device("cpu")).numpy()
            assert np.array_equal(v[idx], np.pad(v, p, mode=np_mode)), (mode, p)
            x = torch.arange(5.0).view(1, 1, 1, 5)
            assert np.array_equal(_ops.pad2d(x, 0, p, mode)[0, 0, 0].numpy(), np.pad(v, p, mode=np_mode)), (mode, p)


def test_filters_and_resampling():
    k = _ops.gaussian_taps(2.0)  # scipy's radius rule: int(4 * 2 + 0.5) = 8
    assert k.numel() == 17 and math.isclose(float(k.sum()), 1.0, rel_tol=1e-6)
    x = torch.rand(2, 3, 20, 24)
    const = torch.full((1, 1, 9, 9), 0.3)
    assert torch.allclose(_ops.gaussian_blur(const, 3.0), const, atol=1e-6)  # a blur keeps constants
    delta = torch.zeros(5, 5)
    delta[2, 3] = 1.0  # correlate with a shifted delta = read one pixel to the right
    y = _ops.correlate(x, delta, "replicate")
    assert torch.allclose(y[..., :-1], x[..., 1:], atol=1e-5)
    disk = disk_kernel(6, 0.5)
    assert disk.shape == (17, 17) and math.isclose(float(disk.sum()), 1.0, rel_tol=1e-5)
    assert torch.allclose(disk, disk.flip(0)) and torch.allclose(disk, disk.T)
    assert len(zoom_factors(1)) == 12 and zoom_factors(5)[-1] == pytest.approx(1.30)
    assert torch.equal(_ops.clipped_zoom(x, 1.0), x)


def test_motion_taps_follow_the_line():
    oy, ox, w = _ops.line_taps(10, 3.0, torch.tensor([0.0, 90.0, -45.0]), 100, 100)
    assert torch.equal(oy[0], torch.zeros(21, dtype=torch.long)) and torch.equal(ox[0], torch.arange(21))
    assert torch.equal(ox[1], torch.zeros(21, dtype=torch.long)) and torch.equal(oy[1], torch.arange(21))
    assert (oy[2] <= 0).all() and (ox[2] >= 0).all()
    assert torch.allclose(w.sum(1), torch.ones(3, dtype=w.dtype))
    _, _, w_small = _ops.line_taps(10, 3.0, torch.tensor([0.0]), 8, 8)  # taps reaching the side are dropped
    assert (w_small[0, 8:] == 0).all() and (w_small[0, :8] > 0).all()


def test_plasma_fractal_and_jpeg_pieces():
    g = torch.Generator().manual_seed(0)
    m = weather.plasma_fractal(3, 32, 2.0, g, torch.empty(0))
    assert m.shape == (3, 32, 32)
    assert torch.allclose(m.amin((1, 2)), torch.zeros(3)) and torch.allclose(m.amax((1, 2)), torch.ones(3))
    smooth = weather.plasma_fractal(4, 64, 3.0, torch.Generator().manual_seed(1), torch.empty(0))
    rough = weather.plasma_fractal(4, 64, 1.2, torch.Generator().manual_seed(1), torch.empty(0))
    step = lambda t: float((t[:, 1:] - t[:, :-1]).abs().mean())  # noqa: E731
    assert step(smooth) < step(rough)  # the decay sets the roughness
    d = jpeg.dct_matrix(dtype=torch.float64)
    assert torch.allclose(d @ d.T, torch.eye(8, dtype=torch.float64), atol=1e-12)
    q50 = jpeg.quant_table(jpeg._LUMA_TABLE, 50)
    assert q50[0, 0] == 16 and q50[7, 7] == 99  # quality 50 is the Annex K table itself
    q10 = jpeg.quant_table(jpeg._LUMA_TABLE, 10)
    assert q10[0, 0] == 80 and q10.max() == 255  # (16 * 500 + 50) // 100, and the baseline cap
    flat = torch.full((1, 3, 16, 16), 0.5)
    assert torch.allclose(jpeg.jpeg_roundtrip(flat, 10), torch.round(flat * 255) / 255, atol=1 / 255)


def test_colour_corruptions_on_gray_read_back_as_luma(digits):
    gray = digits[:2]
    rgb = gray.expand(-1, 3, -1, -1).contiguous()
    for name in ("brightness", "saturate", "contrast", "pixelate", "zoom_blur", "defocus_blur"):
        for s in (1, 4):
            expect = _ops.luma(corrupt(rgb, name, s))
            assert torch.allclose(corrupt(gray, name, s), expect, atol=1e-5), (name, s)
