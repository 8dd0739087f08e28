"""``python -m jaxbp.cli``: the same as the ``jaxbp`` console command."""

import sys

from jaxbp.cli import main

sys.exit(main())
