"""`python -m sluice.cli`: the `sluice` command without its console script."""

import sys

from sluice.cli.main import main

sys.exit(main())
