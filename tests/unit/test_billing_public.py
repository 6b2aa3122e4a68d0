"""billing/public/ is billing's published surface for the portal: exactly what the portal uses, each name
documented and the very object of the billing module it comes from (no second copy of any rule)."""

import ast
import importlib
import itertools
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PUBLIC = sorted(p.stem for p in (ROOT / "billing" / "public").glob("*.py") if p.stem != "__init__")
PORTAL = "\n".join(p.read_text() for p in sorted((ROOT / "portal").glob("*.py")))


def documented(path: pathlib.Path) -> dict[str, str]:
    """Name -> the string literal that follows its assignment (an attribute docstring)."""
    body = ast.parse(path.read_text()).body
    found = {}
    for this, after in itertools.pairwise(body):
        if isinstance(this, ast.Assign) and isinstance(this.targets[0], ast.Name):
            if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
                found[this.targets[0].id] = after.value.value
    return found


def test_there_is_a_public_interface():
    assert {"figures", "statements", "payouts", "review", "loyalty_ledger"} <= set(PUBLIC)


@pytest.mark.parametrize("name", PUBLIC)
def test_each_name_is_billings_own_object_documented_and_used_by_the_portal(name):
    public = importlib.import_module(f"billing.public.{name}")
    impl = importlib.import_module(f"billing.{name}")
    docs = documented(ROOT / "billing" / "public" / f"{name}.py")
    assert public.__all__, name
    for attr in public.__all__:
        assert getattr(public, attr) is getattr(impl, attr), f"billing.public.{name}.{attr}"
        doc = docs.get(attr, "")
        assert doc.strip() and "\n" not in doc.strip(), f"billing.public.{name}.{attr} needs a one-line docstring"
        assert re.search(rf"\b{attr}\b", PORTAL), f"billing.public.{name}.{attr} is not used by the portal"
    extra = {n for n in vars(public) if not n.startswith("_")} - set(public.__all__) - {"annotations"}
    assert not extra, f"billing.public.{name} exposes names outside __all__: {extra}"


def test_the_portal_imports_billing_only_through_its_public_interface():
    imports = re.findall(r"^\s*(?:from|import) (billing[\w.]*)", PORTAL, re.M)
    assert imports
    assert all(i == "billing.public" or i.startswith("billing.public.") for i in imports), imports
