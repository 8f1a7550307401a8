"""``python -m advgan``: the same as the ``advgan`` console script."""
from .cli import main

raise SystemExit(main())
