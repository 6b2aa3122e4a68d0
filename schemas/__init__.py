"""SQL migrations and the JSON Schemas of stream events: the contracts between the parts."""

from __future__ import annotations

from pathlib import Path

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
EVENTS_DIR = Path(__file__).parent / "events"
