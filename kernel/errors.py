"""The errors `clickmint` commands report as one clear line instead of a traceback.

ClickmintError
├── EmbeddedError     an embedded server could not start (clickmint.embedded)
├── ServicesError     no servers configured or reachable (clickmint.services)
├── MigrationError    a migration is malformed, edited after apply, or failed (clickmint.migrate)
└── PreflightError    a server is unsafe to run against, e.g. Redis may evict streams (kernel.preflight)
"""

from __future__ import annotations


class ClickmintError(RuntimeError):
    """A failure the command line explains in one line."""
