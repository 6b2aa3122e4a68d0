"""SQL migrations, the JSON Schemas of stream events, and of offers' fee plans and caps: the contracts."""

from __future__ import annotations

from pathlib import Path

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
EVENTS_DIR = Path(__file__).parent / "events"
OFFERS_DIR = Path(__file__).parent / "offers"  # fee_plan and caps, checked on every write (portal/terms_schema.py)
