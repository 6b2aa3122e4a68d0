"""What the portal refuses, as one exception carrying the HTTP status and a machine-readable code.

ApiError(status, code, detail[, pointer][, reason])
  ├── 400 invalid_json, invalid_field (an IBAN, BIC or VAT number: with `reason`), unknown_field,
  │       invalid_fee_plan, invalid_caps (with `pointer`),
  │       invalid_token, url_not_allowed, ...
  ├── 401 unauthenticated
  ├── 403 forbidden, csrf, cross_origin
  ├── 404 not_found        (also what another tenant's object looks like: never 403)
  ├── 409 conflict
  ├── 413 too_large
  ├── 415 unsupported_media_type (a public write that is not JSON)
  ├── 429 rate_limited     (with Retry-After)
  └── 503 redis_unavailable (the rate limits or cap counters cannot be read; with Retry-After for limits)
"""

from __future__ import annotations


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        retry_after: int | None = None,
        pointer: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after = retry_after
        self.pointer = pointer  # the JSON pointer of the offending value in the request body, when known
        # why a library refused the value (kernel.payout_details.REASONS): in the JSON body as `reason`, and
        # said by a page in its language (portal/refusals.py) where the detail has the library's English words
        self.reason = reason


def not_found(what: str = "object") -> ApiError:
    return ApiError(404, "not_found", f"no such {what}")


def invalid(field: str, detail: str, reason: str | None = None) -> ApiError:
    return ApiError(400, "invalid_field", f"{field}: {detail}", reason=reason)
