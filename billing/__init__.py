"""Billing: ingest of the event streams into PostgreSQL, fees, ledger, statements."""
