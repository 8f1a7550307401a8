"""The conditional-GAN core: GAN, ConditionalGAN, Pix2Pix, their networks, losses, metrics and figures."""
from . import figures, losses, metrics, nets
from .gan import GAN, ConditionalGAN, ConditionalGANConfig, GANConfig
from .pix2pix import Pix2Pix, Pix2PixConfig

__all__ = ["GAN", "GANConfig", "ConditionalGAN", "ConditionalGANConfig", "Pix2Pix", "Pix2PixConfig",
           "figures", "losses", "metrics", "nets"]
