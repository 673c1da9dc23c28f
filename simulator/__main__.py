"""python -m simulator: run the simulated site until interrupted."""

from .cli import main

raise SystemExit(main())
