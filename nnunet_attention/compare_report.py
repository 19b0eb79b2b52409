"""``compare``'s ``report.html``: one self-contained page (pictures embedded as data URIs, no external files or
scripts) that opens in a browser from the output folder: what was compared, the leaderboard, the controls table,
the rank and significance pictures, the per-case Dice, and the gallery."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:12px}"
         "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f3f3f3}"
         "img{max-width:100%;margin:0.5em 0}li{margin:0.2em 0}")


def embedded_picture(path: Path, caption: str) -> str:
    """``<figure>`` with the PNG at ``path`` as a data URI."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def table_html(table: pd.DataFrame) -> str:
    """A table with Dice-like values to 4 decimals and p-values to 2 significant digits (as the markdown)."""
    formatters = {column: (lambda v: f"{v:.2g}") if column.startswith("Wilcoxon") else (lambda v: f"{v:.4f}")
                  for column in table.columns if pd.api.types.is_float_dtype(table[column])}
    return table.to_html(index=False, formatters=formatters, na_rep="", border=0)


def write_report(path: Path, title: str, header: list[str], sections: list[tuple[str, str, list[tuple[Path, str]]]]
                 ) -> None:
    """Write the page: ``title``, the ``header`` lines (what was compared, what was left out and why) as a list,
    then per section ``(heading, HTML body, [(picture, caption), ...])``. Written whole to a hidden sibling first,
    so an interrupted run leaves no half page under the report's name."""
    from .atomic import atomic_path

    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><ul>"]
    parts += [f"<li>{html.escape(line)}</li>" for line in header]
    parts.append("</ul>")
    for heading, body, pictures in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{body}")
        parts += [embedded_picture(picture, caption) for picture, caption in pictures]
    parts.append("</body></html>")
    with atomic_path(path) as partial:
        Path(partial).write_text("\n".join(parts), encoding="utf-8")
