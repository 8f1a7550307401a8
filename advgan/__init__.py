"""advgan: the GAN workshop (one min-max engine, GAN / cGAN / pix2pix, AdvGAN attacker) and the CLI."""
from . import data

__version__ = "0.1.0"
__all__ = ["data"]
from . import losses, metrics, nets, pairs  # noqa: E402  (the cGAN core)
from .gan import GAN, ConditionalGAN, ConditionalGANConfig, GANConfig  # noqa: E402
from .pix2pix import Pix2Pix, Pix2PixConfig  # noqa: E402

__all__ += ["GAN", "GANConfig", "ConditionalGAN", "ConditionalGANConfig", "Pix2Pix", "Pix2PixConfig",
            "nets", "pairs", "metrics", "losses"]
from .attacker import AdvGAN, AdvGANConfig  # noqa: E402  (the AdvGAN attacker)

__all__ += ["AdvGAN", "AdvGANConfig"]
