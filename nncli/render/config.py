"""``nncli config``: the resolved configuration as YAML, the form a spec is written in."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from nncli.render.console import escape

if TYPE_CHECKING:
    from nncli.train.resolve import ResolvedConfig


def show(console: Console, result: ResolvedConfig) -> None:
    """The spec after --set, then the data and train sections with every default, then what loading
    the data found, each as a YAML document under a comment line."""
    import yaml

    doc = result.to_json()
    parts = [("spec after --set", doc["spec"]), ("data (every default filled in)", doc["data"])]
    parts.append(("train (every default filled in)", doc["train"]))
    if doc["loaded"] is not None:
        parts.append(("the data as loaded", doc["loaded"]))
    for title, value in parts:
        console.print(f"# {title}", style="dim")
        console.print(escape(yaml.safe_dump(value, sort_keys=False).rstrip()), soft_wrap=True)
