"""The README's configuration table, generated from Settings so the two cannot drift."""

from __future__ import annotations

from core.config import Settings


def settings_table() -> str:
    """A Markdown table of every ANBU_* variable, its default and meaning."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "(unset)" if default is None else f"`{default}`"
        lines.append(f"| `ANBU_{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(lines)
