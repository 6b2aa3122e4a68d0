"""Builds the portal application."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def home(request: Request) -> Response:
    return HTMLResponse(
        "<!doctype html><html lang=en><meta charset=utf-8><title>Clickmint</title>"
        "<body style='font-family:sans-serif;margin:4em'><h1>Clickmint portal</h1>"
        "<p>Partner and operator sign-in arrive with the portal release.</p></body></html>"
    )


def create_app() -> Starlette:
    return Starlette(routes=[Route("/healthz", healthz), Route("/", home)])
