"""``python -m compress`` is the same as ``ecc``."""

import sys

from compress.cli import main

sys.exit(main())
