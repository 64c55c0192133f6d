"""The documentation states what the code does: its preset tables match the PRESETS dicts."""

from __future__ import annotations

from pathlib import Path

from dim.config import PRESET_FIELDS, PRESETS

DOCS = Path(__file__).resolve().parents[1] / "docs"


def markdown_table(text: str, first_cell: str) -> list[list[str]]:
    """The rows of the Markdown table whose header starts with ``| first_cell |`` (header first)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_cell} |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    return [rows[0], *rows[2:]]  # without the --- row


def test_the_dim_preset_table_matches_the_presets():
    header, *rows = markdown_table((DOCS / "dim.md").read_text(), "setting")
    assert header[1:] == list(PRESETS)
    assert [row[0] for row in rows] == [name.replace("_", " ") for name in PRESET_FIELDS]
    for row, name in zip(rows, PRESET_FIELDS):
        assert row[1:] == [str(PRESETS[preset][name]) for preset in PRESETS], name
