"""The refusals a person reads on a page, in the page's language. The JSON API answers in English (its
`detail`, documented in OpenAPI); a page looks that English up here. Each refusal a partner's pages can show
is marked for the catalogues with its values by name, and read back out of the English text
(i18n.reading), so nothing that raises a refusal changes. A detail not listed here is shown as it is."""

from __future__ import annotations

import re

from portal import i18n
from portal.i18n import N_

MESSAGES = (
    # forms and links
    N_("the form expired; reload the page and try again"),
    N_("the sign-in form expired; reload the page and try again"),
    N_("missing or wrong CSRF token; reload the page and try again"),
    N_("the reset link is invalid, used or expired; ask for a new one"),
    N_("the invitation link is invalid, used, withdrawn or expired"),
    N_("too many requests; retry in %(seconds)s s"),
    # a field's value (after "name: ")
    N_("is required"),
    N_("must be a string"),
    N_("must be %(lo)s to %(hi)s characters"),
    N_("must not hold control characters"),
    N_("must be an integer"),
    N_("must be between %(lo)s and %(hi)s"),
    N_("must be one of %(options)s"),
    N_("must be an http or https URL with a host"),
    N_('must be a decimal string such as "12.50"'),
    N_("must be a date like 2026-11-30"),
    N_("must be on or before to, at most 366 days before it"),
    N_("is not an e-mail address"),
    N_("is not your current password"),
    N_("does not match the new password"),
    N_("a password has at least %(num)s characters"),
    N_("a password has at most %(num)s characters"),
    # the partner's pages
    N_("no such creative on this offer"),
    N_("the deep link's host is not allowed for this offer (allowed: %(hosts)s)"),
    N_("the retail price must be at least the wholesale price %(price)s"),
    N_("at most %(num)s postbacks per partner"),
    # payout and tax details (kernel/payout_details.py; a library's reason in brackets: REASONS below)
    N_("is not a valid IBAN (%(reason)s)"),
    N_("is not a valid BIC (%(reason)s)"),
    N_("is not a valid %(country)s VAT number (%(reason)s)"),
    N_("must be 4 to 20 letters and digits"),
    N_("must be a two-letter ISO 3166 country code, e.g. DE"),
    N_("must be business or individual"),
    N_("must be sepa or paypal"),
    N_("is required for a SEPA bank transfer"),
    N_("must be the e-mail address of the PayPal account"),
    N_("set the country first: a VAT number is checked by its country"),
    # the operator's pages
    N_("is required for a network operator"),
    N_("must be after starts_at"),
    N_('must be above zero ("none" for no maximum)'),
    N_("choose a file"),
    N_("must differ from base"),
    N_("only a pending invitation can be withdrawn"),
    N_("must be a month written YYYY-MM"),
    N_("only a SEPA batch has a schema version"),
    N_("a SEPA credit transfer is in EUR"),
    N_("a PayPal batch has no schema version to choose"),
    N_("no such member of this programme"),
    N_("an adjustment needs a reason (1 to 500 characters)"),
    N_("points must be a non-zero whole number (at most 1,000,000,000)"),
    N_("the member has %(balance)s points, %(points)s were asked for"),
    N_("the partner is not approved in this offer's programme"),
    N_("must be later than valid_from"),
)
# Why a library refused an IBAN, a BIC or a VAT number, by the machine code kernel/payout_details.py gives its
# exception class (REASONS there); said in place of the library's English words in brackets. A code not listed
# here ("other") leaves the library's words.
REASONS = {
    "checksum": N_("the check digits are wrong"),
    "national_checksum": N_("the national check digits are wrong"),
    "length": N_("it has the wrong number of characters"),
    "format": N_("it has characters or a structure this number cannot have"),
    "country_code": N_("the country code is unknown"),
    "bank_code": N_("the bank code is not valid"),
    "branch_code": N_("the branch code is not valid"),
    "account_code": N_("the account number is not valid"),
    "component": N_("a part of the number is not valid"),
}
_READ = [(message, i18n.reading(message)) for message in MESSAGES]
_FIELD = re.compile(r"(\w+): (.+)\Z", re.S)


def _said(text: str, reason: str | None) -> str | None:
    for message, pattern in _READ:
        found = pattern.match(text)
        if found is not None:
            values = found.groupdict()
            if "reason" in values and reason in REASONS:
                values["reason"] = i18n.gettext_(REASONS[reason])
            return i18n.gettext_(message) % values
    return None


def shown(detail: str, reason: str | None = None) -> str:
    """A refusal's detail in the page's language: "email: is not an e-mail address" -> "email: n'est pas une
    adresse e-mail" (fr); the field's name stays the one the form sends. `reason` (ApiError.reason): why a
    library refused the value, said in place of its English words in brackets."""
    said = _said(detail, reason)
    if said is not None:
        return said
    field = _FIELD.match(detail)
    if field is not None and (message := _said(field.group(2), reason)) is not None:
        return f"{field.group(1)}: {message}"
    return detail
