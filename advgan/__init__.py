"""advgan: the GAN workshop (one min-max engine, GAN / cGAN / pix2pix, AdvGAN attacker) and the CLI."""
from . import data

__version__ = "0.1.0"
__all__ = ["data"]
