"""``python -m advgan.cli`` (and ``torchrun --nproc_per_node N -m advgan.cli ...``)."""
import sys

from advgan.cli import main

sys.exit(main())
