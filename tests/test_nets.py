"""Network registry and shapes: MLP, DCGAN (28/32, gray/RGB), conditional + projection, U-Net, PatchGAN, spectral norm."""
from __future__ import annotations

import pytest
import torch
from advgan.nets.patchgan import receptive_field
from torch import nn

from advgan import nets


def test_registry():
    names = nets.available_nets()
    for n in ("mlp_g", "mlp_d", "dcgan_g", "dcgan_d", "cond_mlp_g", "cond_dcgan_g", "cond_mlp_d", "cond_dcgan_d",
              "proj_mlp_d", "proj_dcgan_d", "unet", "patchgan"):
        assert n in names
    with pytest.raises(ValueError, match="valid names: .*dcgan_g"):
        nets.create_net("stylegan")

    @nets.register_net("_test_identity")
    class Ident(nn.Module):
        def forward(self, x):
            return x

    assert isinstance(nets.create_net("_test_identity"), Ident)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 28, 28), (1, 32, 32), (3, 32, 32)])
def test_dcgan_shapes(shape):
    g = nets.create_net("dcgan_g", z_dim=8, out_shape=shape, width=8)
    d = nets.create_net("dcgan_d", in_shape=shape, width=8)
    x = g(torch.randn(3, 8))
    assert x.shape == (3, *shape) and float(x.abs().max()) <= 1
    assert d(x).shape == (3,)
    with pytest.raises(ValueError, match="divisible"):
        nets.create_net("dcgan_g", z_dim=8, out_shape=(1, 30, 30))


def test_mlp_and_conditional_shapes():
    assert nets.create_net("mlp_g", z_dim=2, out_shape=(2,))(torch.randn(5, 2)).shape == (5, 2)
    assert nets.create_net("mlp_d", in_shape=(2,))(torch.randn(5, 2)).shape == (5,)
    y = torch.tensor([0, 1, 2, 3, 4])
    g = nets.create_net("cond_dcgan_g", z_dim=4, out_shape=(1, 28, 28), num_classes=5, width=8)
    x = g(torch.randn(5, 4), y)
    assert x.shape == (5, 1, 28, 28)
    for name in ("cond_dcgan_d", "proj_dcgan_d"):
        d = nets.create_net(name, in_shape=(1, 28, 28), num_classes=5, width=8)
        out = d(x, y)
        assert out.shape == (5,)
        assert not torch.allclose(out, d(x, (y + 1) % 5))              # the label changes the score
    for name in ("cond_mlp_d", "proj_mlp_d"):
        assert nets.create_net(name, in_shape=(2,), num_classes=3)(torch.randn(4, 2), torch.tensor([0, 1, 2, 0])).shape == (4,)
    with pytest.raises(ValueError, match="num_classes"):
        nets.create_net("proj_mlp_d", in_shape=(2,), num_classes=1)


@pytest.mark.parametrize("hw", [(16, 16), (32, 48), (28, 28), (30, 20)])
def test_unet_is_sized_to_its_input(hw):
    u = nets.create_net("unet", in_channels=1, out_channels=3, depth=3, width=8, out_act="sigmoid")
    out = u(torch.rand(2, 1, *hw))
    assert out.shape == (2, 3, *hw) and 0 <= float(out.min()) and float(out.max()) <= 1


def test_unet_strict_size_and_skips():
    u = nets.create_net("unet", in_channels=2, out_channels=1, depth=2, width=4, pad=False)
    assert u(torch.rand(1, 2, 12, 8)).shape == (1, 1, 12, 8)
    with pytest.raises(ValueError, match="divisible by 4"):
        u(torch.rand(1, 2, 10, 8))
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        u(torch.rand(1, 3, 12, 8))
    # the skip connection: the first encoder's output feeds the outermost decoder (2*c0 input channels)
    assert u.dec[0][0].in_channels == 2 * u.enc[0][0].out_channels


def test_patchgan_shapes_receptive_field_and_spectral_norm():
    assert [receptive_field(n) for n in (1, 2, 3)] == [16, 34, 70]      # 70x70 PatchGAN at n_layers = 3
    d = nets.create_net("patchgan", in_channels=4, n_layers=2, width=8)
    assert d(torch.rand(2, 1, 28, 28), torch.rand(2, 3, 28, 28)).shape == (2, 1, 5, 5)
    with pytest.raises(ValueError, match="fewer layers"):
        nets.create_net("patchgan", in_channels=2, n_layers=4)(torch.rand(1, 2, 28, 28))
    sn = nets.create_net("patchgan", in_channels=2, n_layers=2, width=8, spectral_norm=True)
    sn.train()
    for _ in range(30):                                                 # power iterations run in train mode
        sn(torch.rand(2, 2, 28, 28))
    conv = sn.net[0]
    w = conv.weight.reshape(conv.weight.shape[0], -1)
    assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=0.05)


def test_spectral_norm_on_discriminators():
    from advgan.nets.common import has_spectral_norm

    for name, kw in (("dcgan_d", {"in_shape": (1, 28, 28)}), ("mlp_d", {"in_shape": (2,)}),
                     ("proj_dcgan_d", {"in_shape": (1, 28, 28), "num_classes": 3})):
        assert has_spectral_norm(nets.create_net(name, spectral_norm=True, **kw))
        assert not has_spectral_norm(nets.create_net(name, **kw))
