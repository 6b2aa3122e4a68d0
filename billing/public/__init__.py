"""Billing's public interface: the one part of billing another service may import.

Each module here re-exports exactly what the portal uses of the billing module of the same name, each name
with a one-line docstring. import-linter allows `portal.** -> billing.public.**` and nothing else across
the services (pyproject.toml, docs/architecture.md); a portal module importing billing.figures directly
fails `lint-imports`. Add a name here (with its docstring) before the portal uses it.
"""
