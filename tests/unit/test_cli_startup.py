"""The command line: every command's --help, and `clickmint ingest` starting without the code it never runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from clickmint.cli import COMMANDS, build_parser


def test_top_level_help_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "clickmint", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name, (_, help_text, _) in COMMANDS.items():
        assert name in out
        assert help_text.split()[0] in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_builds_its_own_arguments(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    helps = []
    for argv in ([name, "--help"], []):  # chosen, then built for another command line (its arguments left out)
        with pytest.raises(SystemExit) as done:
            build_parser(argv).parse_args([name, "--help"])
        assert done.value.code == 0
        helps.append(capsys.readouterr().out)
    chosen, bare = helps
    assert f"usage: clickmint {name}" in chosen
    assert (chosen != bare) == (COMMANDS[name][2] is not None)


def test_ingest_starts_without_the_portal_or_the_pdf_renderer() -> None:
    """A supervisor restarts ingest after a crash: it should not import a second of code it never uses."""
    probe = (
        "import sys; from clickmint.cli import build_parser; build_parser(['ingest']).parse_args(['ingest']); "
        "import billing.runner; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'portal', 'fpdf', 'fontTools', 'starlette'}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
