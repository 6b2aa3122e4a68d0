"""`python -m clickmint` is the `clickmint` command."""

from clickmint.cli import main

raise SystemExit(main())
