"""defenses: adversarial augmentation, robust fine-tuning, attacker <-> defender rounds."""
__all__: list[str] = []
