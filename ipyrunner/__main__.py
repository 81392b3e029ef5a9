"""`python -m ipyrunner`: see `ipyrunner.cli`."""

from .cli import main

raise SystemExit(main())
