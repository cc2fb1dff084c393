"""The HTML pieces of `report.html`: a `Html` markup type, the tags, tables and figures, the inline style and the
page shell. Text that is not `Html` is escaped on output, so model replies and run files never become markup.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone

CSS = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; color: #222;
       max-width: 1240px; margin: 0 auto; padding: 16px 28px 48px; background: #fff; }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 2px solid #e3e6ea; }
h3 { font-size: 15px; margin: 18px 0 6px; }
nav a { margin-right: 14px; color: #1f5fa8; text-decoration: none; }
.meta, .note, figcaption { color: #5a6270; font-size: 13px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13px; }
th, td { border: 1px solid #dde1e6; padding: 4px 9px; text-align: left; vertical-align: top; }
th { background: #f1f3f6; font-weight: 600; }
tr:nth-child(even) td { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.text { white-space: pre-wrap; word-break: break-word; max-width: 460px; font-family: ui-monospace, Menlo,
          "DejaVu Sans Mono", monospace; font-size: 12px; }
.ci { color: #6b7380; font-size: 12px; }
.bar { display: inline-block; height: 9px; background: #7aa6d8; border-radius: 2px; margin-left: 8px; }
.badge { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; color: #fff; }
.done, .pass { background: #2e8b57; } .reused { background: #4a78b5; }
.failed, .fail { background: #c0392b; } .gated { background: #d68910; } .unknown { background: #888; }
img { max-width: 100%; border: 1px solid #eef0f3; }
figure { margin: 8px 0 16px; }
details { margin: 6px 0; } summary { cursor: pointer; font-weight: 600; }
pre { background: #f6f8fa; padding: 8px; font-size: 12px; overflow-x: auto; }
ul.tree { list-style: none; padding-left: 18px; } ul.tree li::before { content: "└ "; color: #999; }
"""


class Html(str):
    """Markup built by this module; every other string is escaped on output."""


def text(x) -> str:
    """`x` escaped, unless it is markup built here."""
    return x if isinstance(x, Html) else html.escape("" if x is None else str(x))


def join(parts: Iterable) -> Html:
    """The parts, each escaped unless it is markup, as one piece of markup."""
    return Html("".join(text(p) for p in parts))


def tag(name: str, content, **attrs) -> Html:
    """`<name attrs>content</name>`; a trailing "_" in an attribute name is dropped (`class_`)."""
    attributes = "".join(f' {k.rstrip("_")}="{html.escape(str(v))}"' for k, v in attrs.items())
    return Html(f"<{name}{attributes}>{text(content)}</{name}>")


def table(header: Sequence | None, rows: Iterable[Sequence]) -> Html:
    """A table (without a header row when `header` is None); a cell is text, Html, or a (content, class) pair."""
    head = [tag("tr", join(tag("th", h) for h in header))] if header is not None else []
    body = (tag("tr", join(cell(c) for c in row)) for row in rows)
    return tag("table", join([*head, *body]))


def facts(pairs: Iterable[tuple[str, object]]) -> Html:
    """A two-column key/value table, keys as row headers."""
    rows = (tag("tr", join([tag("th", key), tag("td", value)])) for key, value in pairs)
    return tag("table", join(rows))


def cell(cell) -> Html:
    """A table cell: text or markup, or a (content, css class) pair."""
    if isinstance(cell, tuple):
        return tag("td", cell[0], class_=cell[1])
    return tag("td", cell)


def note(text) -> Html:
    """A small grey paragraph."""
    return tag("p", text, class_="note")


def image(png: bytes, alt: str, caption: str = "") -> Html:
    """A PNG embedded as a data URI, with an optional caption."""
    data = base64.b64encode(png).decode("ascii")
    img = Html(f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">')
    return tag("figure", join([img, tag("figcaption", caption) if caption else ""]))


def badge(status) -> Html:
    """A coloured status label."""
    known = status in ("done", "reused", "failed", "gated", "pass", "fail")
    return tag("span", status or "unknown", class_=f"badge {status if known else 'unknown'}")


def fmt(x, digits: int = 3) -> str:
    """A number for a table: ints as they are, floats with `digits` decimals."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return "" if x is None else str(x)
    return str(x) if isinstance(x, int) else f"{x:.{digits}f}"


def seconds(s) -> str:
    """A duration: seconds below two minutes, else minutes."""
    if not isinstance(s, int | float):
        return "—"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def page(lineage: Mapping, sections: Sequence[tuple[str, str, Html]]) -> str:
    """The whole document: head with inline style, title block, navigation, then the sections."""
    title = f"posttrain report: {lineage.get('recipe') or lineage.get('output') or 'run'}"
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = f"output {lineage.get('output', '?')} · posttrain {lineage.get('posttrain_version', '?')} · generated {generated}"
    nav = tag("nav", join(tag("a", label, href=f"#{anchor}") for anchor, label, _ in sections))
    body = [tag("h1", title), tag("p", meta, class_="meta"), nav]
    body += [tag("section", join([tag("h2", label), content]), id=anchor) for anchor, label, content in sections]
    head = Html('<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">')
    head = join([head, tag("title", title), tag("style", Html(CSS))])
    return "<!DOCTYPE html>\n" + tag("html", join([tag("head", head), tag("body", join(body))]), lang="en") + "\n"
