"""Baseline JPEG compression in torch: encode and decode a batch, 8-bit samples throughout.

The steps of the JPEG standard (ITU-T T.81) as a libjpeg encoder and decoder run them with their
defaults: RGB -> YCbCr (JFIF), chroma averaged over 2 x 2 pixels (4:2:0), the image padded to whole
16 x 16 macroblocks by repeating its last row and column, an orthonormal 8 x 8 DCT per block,
quantisation by the Annex K tables scaled for the quality (libjpeg's rule), then the inverse path
with the chroma upsampled by the triangle ("fancy") filter. 1-channel images are coded as gray
JPEGs (luma only). The entropy coding is lossless and left out.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: quality setting (1-100) per severity
JPEG_QUALITY = (25, 18, 15, 10, 7)

# ITU-T T.81 Annex K, tables K.1 (luminance) and K.2 (chrominance)
_LUMA_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
_CHROMA_TABLE = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
)  # fmt: skip


def quant_table(
    base: tuple[int, ...], quality: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """An 8 x 8 quantisation table for ``quality`` (libjpeg's integer scaling, baseline range 1..255)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    table = [min(255, max(1, (b * scale + 50) // 100)) for b in base]
    return torch.tensor(table, device=device, dtype=dtype).view(8, 8)


def dct_matrix(*, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Orthonormal 8-point DCT-II matrix D (coefficients = D @ block @ D.T)."""
    k = torch.arange(8, dtype=torch.float64).view(8, 1)
    n = torch.arange(8, dtype=torch.float64).view(1, 8)
    d = torch.cos((2 * n + 1) * k * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.to(device=device, dtype=dtype)


def _code_blocks(plane: torch.Tensor, table: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Quantise and restore every 8 x 8 block of level-shifted planes (N, C, 8a, 8b)."""
    n, c, h, w = plane.shape
    blocks = plane.reshape(n, c, h // 8, 8, w // 8, 8).transpose(3, 4)
    coef = d @ blocks @ d.T
    coef = torch.round(coef / table) * table
    back = d.T @ coef @ d
    return back.transpose(3, 4).reshape(n, c, h, w)


def _rgb_to_ycc(rgb: torch.Tensor) -> torch.Tensor:
    r, g, b = rgb.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168735892 * r - 0.331264108 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418687589 * g - 0.081312411 * b + 128
    return torch.stack((y, cb, cr), 1)


def _ycc_to_rgb(ycc: torch.Tensor) -> torch.Tensor:
    y, cb, cr = ycc[:, 0], ycc[:, 1] - 128, ycc[:, 2] - 128
    return torch.stack((y + 1.402 * cr, y - 0.344136286 * cb - 0.714136286 * cr, y + 1.772 * cb), 1)


def _sample(v: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit sample values."""
    return torch.round(v).clamp_(0, 255)


def jpeg_roundtrip(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode and decode images in [0, 1] as JPEG at ``quality``; returns values on the 8-bit grid / 255."""
    n, c, h, w = x.shape
    d = dct_matrix(device=x.device, dtype=x.dtype)
    luma_q = quant_table(_LUMA_TABLE, quality, device=x.device, dtype=x.dtype)
    px = _sample(x * 255)
    hp, wp = -(-h // 16) * 16, -(-w // 16) * 16
    px = _pad_end(px, hp - h, wp - w)
    if c == 1:
        out = _sample(_code_blocks(px - 128, luma_q, d) + 128)
        return out[..., :h, :w] / 255
    ycc = _sample(_rgb_to_ycc(px))
    y = _sample(_code_blocks(ycc[:, :1] - 128, luma_q, d) + 128)
    chroma = torch.round(F.avg_pool2d(ycc[:, 1:], 2))
    chroma_q = quant_table(_CHROMA_TABLE, quality, device=x.device, dtype=x.dtype)
    chroma = _sample(_code_blocks(chroma - 128, chroma_q, d) + 128)
    chroma = chroma[..., : -(-h // 2), : -(-w // 2)]  # the decoder upsamples only the image's own chroma
    chroma = _sample(F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False))
    ycc = torch.cat((y[..., :h, :w], chroma[..., :h, :w]), 1)
    return _sample(_ycc_to_rgb(ycc)) / 255


def _pad_end(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """Repeat the last row / column ``ph`` / ``pw`` times."""
    if ph:
        x = torch.cat((x, x[..., -1:, :].expand(*x.shape[:-2], ph, x.shape[-1])), -2)
    if pw:
        x = torch.cat((x, x[..., -1:].expand(*x.shape[:-1], pw)), -1)
    return x


def jpeg_compression(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Lossy JPEG compression at the severity's quality."""
    return jpeg_roundtrip(x, JPEG_QUALITY[severity - 1])
