"""Shared rendering for every document and summary: escaping, jinja2 environments, rows, masking.

The DR plan, the run summaries every flow publishes and the DR test report render through
this module, so a value is escaped the same way everywhere and fixed prose lives in
templates (``configs/templates/reports``), not in Python literals.

- **Escaping**: :func:`escape_md` (text a Markdown renderer shows literally),
  :func:`escape_cell` (a Markdown table cell: pipes and newlines only, the cell may hold
  Markdown), :func:`escape_html`, :func:`code_span` and :func:`code_block`.
- **Environments**: :func:`markdown_env` escapes every ``{{ }}`` output with
  :func:`escape_md` (mark pre-rendered Markdown with ``|safe`` or return
  :class:`~markupsafe.Markup`); :func:`html_env` autoescapes; :func:`text_env` does
  neither (plain text, e.g. prose rendered into a view model). All three are
  ``StrictUndefined``: a misspelt variable is an error, never an empty cell.
- **Prose templates**: :func:`load_prose` renders the ``{% set name %}...{% endset %}``
  blocks of a template into :class:`Prose`: paragraphs (one item each) or facts (first
  line the label, the rest the value).
- **Rows**: :class:`Fact`, :class:`Row`, :class:`Table` and :func:`markdown_table`.
- **Masking**: :func:`mask_secrets` masks the values of secret-looking keys in mappings
  (the single definition of that rule; the state store's audit trail uses it) and
  :func:`mask_text` / :func:`mask_lines` mask known secret values in free text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup
from markupsafe import escape as _html_escape

__all__ = [
    "MASK", "NONE", "SECRET_KEY", "TEMPLATES_DIR", "TEXT_MASK", "Fact", "Prose", "Row", "Table",
    "code_block", "code_span", "escape_cell", "escape_html", "escape_md", "format_seconds",
    "format_ts", "html_env", "load_prose", "mask_lines", "mask_secrets", "mask_text", "markdown_env",
    "markdown_table", "paragraphs", "text_env",
]

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "configs" / "templates" / "reports"
"""Default location of the report templates."""

NONE = "—"
"""What an absent value (``None``) is printed as."""

MASK = "***"
"""What :func:`mask_secrets` puts in place of a secret-looking key's value."""

TEXT_MASK = "*****"
"""What :func:`mask_text` puts in place of a secret value (the ASA shows the same)."""

SECRET_KEY = re.compile(r"pass|secret|token|key|credential|authori[sz]ation", re.IGNORECASE)
"""Keys whose values :func:`mask_secrets` masks."""

TemplateDirs = Path | str | Sequence[Path | str] | None


# --- rows -------------------------------------------------------------------------------------------
# Plain frozen rows of text: templates only lay them out, so Markdown and HTML cannot disagree.


@dataclass(frozen=True)
class Fact:
    """A key-value row (``| label | value |``)."""

    label: str
    value: str


@dataclass(frozen=True)
class Row:
    """A generic table row as a list of cells."""

    cells: list[str]


@dataclass(frozen=True)
class Table:
    """A table with its headers, rows and what to print when it has no rows."""

    headers: list[str]
    rows: list[Row]
    empty: str = "None."


# --- escaping ---------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|~])")
# An underscore between two letters or digits never starts emphasis (CommonMark), so
# "America/New_York" stays readable; any other underscore is escaped.
_MD_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_MD_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")
# Block markers only count at the start of a line: list items ("- x", "1. x"), headings ("## x")
# and thematic breaks ("---").
_MD_LINE_START = re.compile(r"^(\s*)(\d{1,9}[.)](?=\s|$)|[-+](?=\s|$)|-(?=-)|#{1,6}(?=\s|$))")


def _escape_line_start(match: re.Match[str]) -> str:
    indent, marker = match.group(1), match.group(2)
    # Only ASCII punctuation can be backslash-escaped: "1." becomes "1\\.", "## x" becomes "\\## x".
    if marker.startswith("#"):
        return f"{indent}\\{marker}"
    return f"{indent}{marker[:-1]}\\{marker[-1]}"


def escape_md(value: Any) -> str:
    """Text that Markdown shows literally: no HTML, links, emphasis, table breaks or headings.

    Newlines become spaces so a value cannot start a line of its own (a heading, a list, a
    table row) and every value stays inside its table cell. ``None`` prints as :data:`NONE`;
    :class:`~markupsafe.Markup` is already Markdown (a macro's output) and is returned as is.
    """
    if isinstance(value, Markup):
        return str(value)
    if value is None:
        return NONE
    text = " ".join(str(value).split("\n")).replace("\r", " ")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _MD_UNDERSCORE.sub(r"\\_", text)
    text = _MD_ENTITY.sub(r"\\&", text)
    return _MD_LINE_START.sub(_escape_line_start, text)


def escape_cell(value: Any) -> str:
    """A Markdown table cell: pipes escaped, line breaks as ``<br>``; other Markdown is kept.

    For cells that hold Markdown on purpose (code spans, emphasis) or text that must stay
    searchable verbatim (diff lines); use :func:`escape_md` for untrusted display text.
    """
    if value is None:
        return NONE
    text = str(value).replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("|", "\\|").replace("\n", "<br>")


def escape_html(value: Any) -> Markup:
    """``value`` HTML-escaped (``None`` prints as :data:`NONE`)."""
    return _html_escape(NONE if value is None else value)


def _longest_run(text: str, char: str) -> int:
    return max((len(m) for m in re.findall(f"{re.escape(char)}+", text)), default=0)


def code_span(value: Any) -> Markup:
    """``value`` as an inline code span, fenced with more backticks than it contains."""
    text = " ".join(str(value).splitlines())
    fence = "`" * (_longest_run(text, "`") + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return Markup(f"{fence}{pad}{text}{pad}{fence}")


def code_block(lines: Iterable[str] | str, lang: str = "") -> str:
    """A fenced code block of ``lines``, shown verbatim (its fence is longer than any backtick run inside)."""
    text = lines if isinstance(lines, str) else "\n".join(lines)
    fence = "`" * max(3, _longest_run(text, "`") + 1)
    return f"{fence}{lang}\n{text}\n{fence}" if text else f"{fence}{lang}\n{fence}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any] | Row], *, empty: str | None = None) -> str:
    """A Markdown table; every cell goes through :func:`escape_cell` (pipes, newlines).

    Args:
        headers: the column headings.
        rows: one sequence of cells (or :class:`Row`) per row, as long as ``headers``.
        empty: printed instead of the table when there are no rows (default: the header only).

    Raises:
        ValueError: a row has a different number of cells than ``headers``.
    """
    body = []
    for row in rows:
        cells = row.cells if isinstance(row, Row) else list(row)
        if len(cells) != len(headers):
            raise ValueError(f"table row has {len(cells)} cells for {len(headers)} headers: {cells!r}")
        body.append("| " + " | ".join(escape_cell(c) for c in cells) + " |")
    if not body and empty is not None:
        return empty
    head = ["| " + " | ".join(escape_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(head + body)


# --- formatting -------------------------------------------------------------------------------------


def format_seconds(value: float | timedelta | None, digits: int = 2) -> str:
    """Seconds with ``digits`` decimals (``1.50``); ``None`` prints as :data:`NONE`."""
    if value is None:
        return NONE
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if math.isnan(seconds):
        return NONE
    return f"{seconds:.{digits}f}"


def format_ts(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    """A timestamp in UTC (naive means UTC); ``None`` prints as :data:`NONE`."""
    if value is None:
        return NONE
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return moment.strftime(fmt)


# --- environments -----------------------------------------------------------------------------------


def _md_filter(value: Any) -> Markup:
    return Markup(escape_md(value))


def _cell_filter(value: Any) -> Markup:
    return Markup(escape_cell(value))


def _fenced_filter(value: Iterable[str] | str, lang: str = "") -> Markup:
    return Markup(code_block(value, lang))


def _html_finalize(value: Any) -> Any:
    return NONE if value is None else value


def _one_line(value: Any) -> str:
    # A value interpolated into prose stays on its line, so it cannot split a paragraph.
    return NONE if value is None else " ".join(str(value).splitlines())


_COMMON_FILTERS: dict[str, Callable[..., Any]] = {"seconds": format_seconds, "ts": format_ts}
_MARKDOWN_FILTERS: dict[str, Callable[..., Any]] = {
    "md": _md_filter, "cell": _cell_filter, "code": code_span, "fenced": _fenced_filter,
}


def _loader(templates_dir: TemplateDirs) -> jinja2.FileSystemLoader:
    if templates_dir is None:
        paths: list[str] = [str(TEMPLATES_DIR)]
    elif isinstance(templates_dir, (str, Path)):
        paths = [str(templates_dir)]
    else:
        paths = [str(p) for p in templates_dir]
    return jinja2.FileSystemLoader(paths)


def _environment(templates_dir: TemplateDirs, *, kind: str) -> jinja2.Environment:
    finalize: Callable[[Any], Any] | None = {"markdown": escape_md, "html": _html_finalize,
                                             "prose": _one_line}.get(kind)
    env = jinja2.Environment(
        loader=_loader(templates_dir),
        undefined=jinja2.StrictUndefined,
        autoescape=kind == "html",
        finalize=finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(_COMMON_FILTERS)
    if kind == "markdown":
        env.filters.update(_MARKDOWN_FILTERS)
    return env


def markdown_env(templates_dir: TemplateDirs = None) -> jinja2.Environment:
    """Markdown templates: every ``{{ }}`` output is escaped with :func:`escape_md`.

    Filters: ``md`` (escape a value that is then wrapped in Markdown and marked ``|safe``, e.g.
    ``{{ ("**" ~ name|md ~ "**") | safe }}``; a plain ``{{ name }}`` is already escaped, and so is
    ``{{ names | join(", ") }}``, once), ``cell`` (:func:`escape_cell`), ``code``
    (:func:`code_span`), ``fenced`` (:func:`code_block`), ``seconds`` (:func:`format_seconds`),
    ``ts`` (:func:`format_ts`).

    Args:
        templates_dir: a directory, or directories searched in order (default :data:`TEMPLATES_DIR`).
    """
    return _environment(templates_dir, kind="markdown")


def html_env(templates_dir: TemplateDirs = None) -> jinja2.Environment:
    """HTML templates: autoescaped, ``None`` prints as :data:`NONE`; filters ``seconds`` and ``ts``."""
    return _environment(templates_dir, kind="html")


def text_env(templates_dir: TemplateDirs = None) -> jinja2.Environment:
    """Plain-text templates (no escaping): prose rendered into view models, escaped later by the layout."""
    return _environment(templates_dir, kind="text")


# --- prose templates --------------------------------------------------------------------------------


def paragraphs(text: str) -> list[list[str]]:
    """The paragraphs of ``text`` (separated by blank lines), each as its stripped lines."""
    out: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.strip():
            current.append(line.strip())
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


class Prose:
    """The ``{% set name %}...{% endset %}`` blocks of a rendered prose template.

    A block holds paragraphs separated by blank lines; a paragraph may be wrapped over
    several lines, which are joined with single spaces.
    """

    def __init__(self, name: str, module: Any) -> None:
        self.name, self._module = name, module

    def text(self, block: str) -> str:
        """The block's raw text.

        Raises:
            jinja2.UndefinedError: the template has no such block.
        """
        value = getattr(self._module, block, None)
        if value is None:
            raise jinja2.UndefinedError(f"prose template {self.name!r} has no block {block!r}")
        return str(value)

    def blocks(self, block: str) -> list[list[str]]:
        """The block's paragraphs, each as its stripped lines."""
        return paragraphs(self.text(block))

    def items(self, block: str) -> list[str]:
        """One string per paragraph of the block."""
        return [" ".join(p) for p in self.blocks(block)]

    def facts(self, block: str) -> list[Fact]:
        """One :class:`Fact` per paragraph: its first line is the label, the rest the value."""
        return [Fact(p[0], " ".join(p[1:])) for p in self.blocks(block)]


def load_prose(name: str, variables: Mapping[str, Any], *, templates_dir: TemplateDirs = None) -> Prose:
    """Render the prose template ``name`` with ``variables`` (plain text, ``StrictUndefined``).

    Every ``{{ }}`` value is printed on one line (its line breaks become spaces), so a value
    cannot split a paragraph; escaping is left to the layout template that prints the prose.

    Raises:
        jinja2.TemplateNotFound, jinja2.TemplateSyntaxError, jinja2.UndefinedError: as jinja2 does.
    """
    template = _environment(templates_dir, kind="prose").get_template(name)
    return Prose(name, template.make_module(dict(variables)))


# --- masking ----------------------------------------------------------------------------------------


def mask_secrets(value: Any) -> Any:
    """``value`` with the values of secret-looking keys (:data:`SECRET_KEY`) replaced by ``***``.

    Mappings are copied into dicts and lists/tuples into lists, recursively; anything else is
    returned unchanged. Audit details, run parameters and step details go through this before
    they are stored or shown.
    """
    if isinstance(value, Mapping):
        return {k: (MASK if SECRET_KEY.search(str(k)) else mask_secrets(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_secrets(v) for v in value]
    return value


def _secret_values(secrets: Iterable[str | None]) -> list[str]:
    # Longest first, so a secret that contains another is masked whole.
    return sorted({s for s in secrets if s}, key=len, reverse=True)


def mask_text(text: str, secrets: Iterable[str | None], *, mask: str = TEXT_MASK) -> str:
    """``text`` with every occurrence of each known secret value replaced by ``mask``."""
    return _replace_all(text, _secret_values(secrets), mask)


def _replace_all(text: str, values: list[str], mask: str) -> str:
    for value in values:
        text = text.replace(value, mask)
    return text


def mask_lines(lines: Iterable[str], secrets: Iterable[str | None], *, mask: str = TEXT_MASK) -> list[str]:
    """:func:`mask_text` applied to each line."""
    values = _secret_values(secrets)
    return [_replace_all(line, values, mask) for line in lines]
