"""Payout and tax details: a partner's, per programme (the partner edits its own; the merchant's operator
may too), and the merchant's own (legal details, paying account, self-billing). IBANs and VAT numbers are
sealed at rest (billing/sealed.py) and only ever shown masked. Every change is audited and mailed to the
partner in the same transaction: a changed IBAN is the classic payout fraud, the partner must hear of it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg

from billing.public.payouts import sealed_where
from kernel import payout_details
from kernel.payout_details import DetailError
from kernel.sealed import Sealer, mask
from portal import mails
from portal.auth import Principal
from portal.errors import invalid, not_found
from portal.i18n import N_
from portal.operator_data import audit

# What the mail about a change calls each field (translated into the partner's language when sent).
MAIL_LABELS = {
    "legal_name": N_("Legal name"),
    "address": N_("Address"),
    "country": N_("Country"),
    "entity": N_("Business or individual"),
    "method": N_("Payout method"),
    "iban": "IBAN",
    "bic": "BIC",
    "paypal_email": N_("PayPal account"),
    "vat_number": N_("VAT number"),
}
FIELDS = ("legal_name", "address", "country", "entity", "method", "iban", "bic", "paypal_email", "vat_number")
_SEALED = ("iban", "vat_number")


def _detail_error(exc: DetailError) -> Exception:
    return invalid(exc.field, exc.detail, exc.reason)


async def _stored(conn: asyncpg.Connection, sealer: Sealer, merchant_id: int, partner_id: int, lock: bool = False):
    row = await conn.fetchrow(
        "SELECT * FROM partner_payout_details WHERE merchant_id = $1 AND partner_id = $2"
        + (" FOR UPDATE" if lock else ""),
        merchant_id,
        partner_id,
    )
    if row is None:
        return None, None
    plain = {name: row[name] for name in FIELDS if name not in _SEALED}
    plain["iban"] = (
        sealer.open_text(row["iban_sealed"], sealed_where(merchant_id, partner_id, "iban"))
        if row["iban_sealed"] is not None
        else None
    )
    plain["vat_number"] = (
        sealer.open_text(row["vat_sealed"], sealed_where(merchant_id, partner_id, "vat_number"))
        if row["vat_sealed"] is not None
        else None
    )
    return row, plain


async def stored_secrets(conn: asyncpg.Connection, sealer: Sealer, merchant_id: int, partner_id: int) -> dict:
    """The stored IBAN and VAT number in full (for a form that keeps them when left blank); never shown."""
    _row, plain = await _stored(conn, sealer, merchant_id, partner_id)
    return {"iban": plain["iban"], "vat_number": plain["vat_number"]} if plain else {}


def _shown(merchant_id: int, partner_id: int, row: asyncpg.Record | None) -> dict[str, Any]:
    """The details as anyone sees them: IBAN and VAT number masked, never in full."""
    if row is None:
        return {"merchant_id": merchant_id, "partner_id": partner_id, "set": False}
    return {
        "merchant_id": merchant_id,
        "partner_id": partner_id,
        "set": True,
        "legal_name": row["legal_name"],
        "address": row["address"],
        "country": row["country"],
        "entity": row["entity"],
        "method": row["method"],
        "iban": row["iban_masked"],
        "bic": row["bic"],
        "paypal_email": row["paypal_email"],
        "vat_number": row["vat_masked"],
        "updated_at": row["updated_at"].isoformat(),
        "updated_by": row["updated_by"],
    }


async def details(conn: asyncpg.Connection, sealer: Sealer, merchant_id: int, partner_id: int) -> dict[str, Any]:
    """A partner's details for one programme, masked (the caller has checked the tenancy)."""
    row = await conn.fetchrow(
        "SELECT * FROM partner_payout_details WHERE merchant_id = $1 AND partner_id = $2", merchant_id, partner_id
    )
    return _shown(merchant_id, partner_id, row)


async def partner_programmes(conn: asyncpg.Connection, partner_id: int) -> list[dict[str, Any]]:
    """The programmes that approved a partner, each with its details (masked) or none yet."""
    rows = await conn.fetch(
        """SELECT m.id, m.name, d.* FROM partner_programmes pp JOIN merchants m ON m.id = pp.merchant_id
           LEFT JOIN partner_payout_details d ON d.merchant_id = m.id AND d.partner_id = pp.partner_id
           WHERE pp.partner_id = $1 AND pp.status = 'approved' ORDER BY m.name, m.id""",
        partner_id,
    )
    out = []
    for r in rows:
        shown = _shown(r["id"], partner_id, r if r["legal_name"] is not None else None)
        shown["merchant_name"] = r["name"]
        out.append(shown)
    return out


async def save(
    conn: asyncpg.Connection,
    sealer: Sealer,
    who: Principal,
    merchant_id: int,
    partner_id: int,
    values: dict[str, Any],
) -> dict[str, Any]:
    """Replace a partner's details for one programme: checked (400 naming the field), sealed, audited with
    the names of the fields that changed (masked values), and mailed to the partner, in one transaction."""
    try:
        new = payout_details.check(values)
    except DetailError as exc:
        raise _detail_error(exc) from exc
    async with conn.transaction():
        old_row, old = await _stored(conn, sealer, merchant_id, partner_id, lock=True)
        fresh = {name: getattr(new, name) for name in FIELDS}
        changed = [name for name in FIELDS if (old or {}).get(name) != fresh[name]]
        if old is not None and not changed:
            return _shown(merchant_id, partner_id, old_row)
        iban_sealed = sealer.seal_text(new.iban, sealed_where(merchant_id, partner_id, "iban")) if new.iban else None
        vat_sealed = (
            sealer.seal_text(new.vat_number, sealed_where(merchant_id, partner_id, "vat_number"))
            if new.vat_number
            else None
        )
        row = await conn.fetchrow(
            """INSERT INTO partner_payout_details (merchant_id, partner_id, legal_name, address, country, entity,
                   method, iban_sealed, iban_masked, bic, paypal_email, vat_sealed, vat_masked, updated_at, updated_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now(), $14)
               ON CONFLICT (merchant_id, partner_id) DO UPDATE SET
                   legal_name = EXCLUDED.legal_name, address = EXCLUDED.address, country = EXCLUDED.country,
                   entity = EXCLUDED.entity, method = EXCLUDED.method, iban_sealed = EXCLUDED.iban_sealed,
                   iban_masked = EXCLUDED.iban_masked, bic = EXCLUDED.bic, paypal_email = EXCLUDED.paypal_email,
                   vat_sealed = EXCLUDED.vat_sealed, vat_masked = EXCLUDED.vat_masked, updated_at = now(),
                   updated_by = EXCLUDED.updated_by
               RETURNING *""",
            merchant_id,
            partner_id,
            new.legal_name,
            new.address,
            new.country,
            new.entity,
            new.method,
            iban_sealed,
            mask(new.iban) if new.iban else None,
            new.bic,
            new.paypal_email,
            vat_sealed,
            mask(new.vat_number) if new.vat_number else None,
            who.email,
        )
        shown_old = _shown(merchant_id, partner_id, old_row) if old_row is not None else {}
        shown_new = _shown(merchant_id, partner_id, row)
        detail = {
            "partner_id": partner_id,
            "by": "partner" if who.is_partner else who.role,
            "changed": changed,
            "before": {name: shown_old.get(name) for name in changed if name != "address"},
            "after": {name: shown_new.get(name) for name in changed if name != "address"},
        }
        await audit(conn, who, merchant_id, "update_payout_details", "partner", partner_id, detail)
        await _mail(conn, merchant_id, partner_id, who, changed, shown_new)
    return shown_new


async def _mail(
    conn: asyncpg.Connection, merchant_id: int, partner_id: int, who: Principal, changed: list[str], shown: dict
) -> None:
    """Tell the partner, at the address it signed up with, what changed and by whom (masked values), in its
    language (its user's setting, else this merchant's default): a changed IBAN is the classic payout fraud."""
    found = await conn.fetchrow(
        "SELECT p.email, m.name FROM partners p, merchants m WHERE p.id = $1 AND m.id = $2", partner_id, merchant_id
    )
    t = await mails.translations(conn, found["email"], merchant_id)
    values = {
        "entity": {"business": N_("a business"), "individual": N_("an individual")},
        "method": {"sepa": N_("SEPA bank transfer (EUR)"), "paypal": "PayPal"},
    }

    def value(name: str) -> str:
        shown_value = shown.get(name)
        if not shown_value:
            return t.gettext("(none)")
        word = values.get(name, {}).get(str(shown_value))
        return t.gettext(word) if word else str(shown_value)

    lines = [f"- {t.gettext(MAIL_LABELS[name])}: {value(name)}" for name in changed]
    if who.is_partner:
        by = t.gettext("you")
    else:
        by = t.gettext("an operator of %(merchant)s (%(email)s)") % {"merchant": found["name"], "email": who.email}
    words = {"merchant": found["name"], "by": by, "when": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}"}
    body = (
        t.gettext("Your payout and tax details for %(merchant)s were changed by %(by)s on %(when)s UTC:") % words
        + "\n\n"
        + "\n".join(lines)
        + "\n\n"
        + t.gettext(
            "Bank details are shown masked. If you did not make or expect this change, contact the merchant "
            "at once: payouts go to the account given here."
        )
        + "\n"
    )
    subject = t.gettext("Your payout details for %(merchant)s changed") % words
    await mails.queue(conn, found["email"], subject, body)


# -- the merchant's own ---------------------------------------------------------------------------

MERCHANT_FIELDS = ("legal_name", "country", "vat_number", "payout_iban", "payout_bic", "self_billing", "vat_rate")


async def merchant_settings(conn: asyncpg.Connection, merchant_id: int) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"SELECT id, name, {', '.join(MERCHANT_FIELDS)} FROM merchants WHERE id = $1", merchant_id
    )
    if row is None:
        raise not_found("merchant")
    out = dict(row)
    out["vat_rate"] = str(out["vat_rate"])
    return out


def check_merchant(values: dict[str, Any]) -> dict[str, Any]:
    """The merchant's payout settings from a form or body, each checked (400 naming the field)."""
    out: dict[str, Any] = {}
    try:
        if "country" in values:
            country = str(values["country"]).strip().upper()
            if len(country) != 2 or not country.isalpha():
                raise DetailError("country", "must be a two-letter ISO 3166 country code, e.g. ES")
            out["country"] = country
        if "legal_name" in values:
            out["legal_name"] = str(values["legal_name"]).strip()[:200] or None
        if "payout_iban" in values:
            out["payout_iban"] = payout_details.check_iban("payout_iban", str(values["payout_iban"]))
        if "payout_bic" in values:
            out["payout_bic"] = payout_details.check_bic("payout_bic", str(values["payout_bic"]))
        if "vat_number" in values:
            vat_country = out.get("country") or values.get("_current_country")
            if not vat_country:
                raise DetailError("vat_number", "set the country first: a VAT number is checked by its country")
            out["vat_number"] = payout_details.check_vat("vat_number", str(values["vat_number"]), str(vat_country))
        if "self_billing" in values:
            out["self_billing"] = bool(values["self_billing"])
        if "vat_rate" in values:
            try:
                rate = Decimal(str(values["vat_rate"]).strip().rstrip("%").strip())
            except InvalidOperation as exc:
                raise DetailError("vat_rate", "must be a percentage such as 21 or 5.5") from exc
            if not rate.is_finite() or not 0 <= rate < 100 or rate != rate.quantize(Decimal("0.01")):
                raise DetailError("vat_rate", "must be a percentage from 0 to 99.99, at most two decimals")
            out["vat_rate"] = rate
    except DetailError as exc:
        raise _detail_error(exc) from exc
    return out


async def save_merchant(
    conn: asyncpg.Connection, who: Principal, merchant_id: int, values: dict[str, Any]
) -> dict[str, Any]:
    async with conn.transaction():
        current = await conn.fetchrow("SELECT country FROM merchants WHERE id = $1 FOR UPDATE", merchant_id)
        if current is None:
            raise not_found("merchant")
        checked = check_merchant({**values, "_current_country": current["country"]})
        if checked:
            sets = ", ".join(f"{name} = ${n}" for n, name in enumerate(checked, start=2))
            await conn.execute(f"UPDATE merchants SET {sets} WHERE id = $1", merchant_id, *checked.values())
            await audit(
                conn,
                who,
                merchant_id,
                "update_payout_settings",
                "merchant",
                merchant_id,
                {name: (mask(v) if name == "payout_iban" else v) for name, v in checked.items()},
            )
    return await merchant_settings(conn, merchant_id)
