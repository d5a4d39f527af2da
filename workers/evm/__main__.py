"""``python -m workers.evm``: see `workers.evm.cli`."""
import sys

from .cli import main

sys.exit(main())
