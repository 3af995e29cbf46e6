"""The Markdown summary every flow run publishes as its artifact: outcome, steps, the flow's own sections.

A flow (through its run context) builds a :class:`RunSummaryView` and renders it with
:func:`render_run_summary`; the layout and its fixed wording are the templates
``run_summary.md.j2`` and ``steps_table.md.j2`` in configs/templates/reports. The summary shows:

- the title and the flow run id, with "dry run: nothing was changed" for dry runs;
- why the request was refused (``refused``), or the error a failed run ended with (``error``);
- one table row per step (:func:`steps_table`): outcome (``failed: <error>``), whether it
  changed anything (``would change`` in a dry run), seconds, and the first
  :data:`MAX_DIFF_LINES` lines of its diff; *Machine* and *Wave* columns appear when a step
  has them;
- the flow's own sections (:class:`Section`): a heading with a Markdown body, or with a table.

Known secret values given in ``RunSummaryView.secrets`` are masked in the whole text, as a
last line of defence; diff lines should already be masked by whoever produced them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from draas.models.results import StepResult
from draas.reports.render import (
    escape_cell,
    escape_md,
    markdown_env,
    markdown_table,
    mask_text,
)

__all__ = [
    "MAX_DIFF_LINES", "RUN_SUMMARY_TEMPLATE", "STEPS_TABLE_TEMPLATE", "RunSummaryView", "Section",
    "render_run_summary", "steps_table",
]

RUN_SUMMARY_TEMPLATE = "run_summary.md.j2"
STEPS_TABLE_TEMPLATE = "steps_table.md.j2"
MAX_DIFF_LINES = 40
"""Diff lines shown per step in the steps table; the rest is counted ("... N more")."""


class Section(BaseModel):
    """A section of the summary under the steps: a heading with a Markdown body, or with a table.

    Give ``body`` (Markdown, printed as is) or ``headers`` and ``rows`` (cells are escaped for a
    table: pipes and line breaks; they may hold inline Markdown such as code spans).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    heading: str
    body: str | None = None
    headers: list[str] | None = None
    rows: list[list[str]] = Field(default_factory=list)
    empty: str | None = None
    """Printed instead of a table without rows (default: the header row alone)."""

    @model_validator(mode="after")
    def _body_or_table(self) -> Section:
        if (self.body is None) == (self.headers is None):
            raise ValueError(f"section {self.heading!r}: give either a body or table headers, not both or neither")
        if self.headers is not None:
            for row in self.rows:
                if len(row) != len(self.headers):
                    raise ValueError(f"section {self.heading!r}: a row has {len(row)} cells for "
                                     f"{len(self.headers)} headers")
        return self

    def markdown(self) -> str:
        """The section's content (without its heading) as Markdown."""
        if self.body is not None:
            return self.body.strip("\n")
        return markdown_table(self.headers or [], self.rows, empty=self.empty)


def _section(value: Any) -> Any:
    # (heading, body) or (heading, headers, rows), as the brief for callers allows.
    if isinstance(value, tuple):
        if len(value) == 2:
            return {"heading": value[0], "body": value[1]}
        if len(value) == 3:
            return {"heading": value[0], "headers": list(value[1]), "rows": [list(r) for r in value[2]]}
    return value


class RunSummaryView(BaseModel):
    """Everything a run summary shows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str
    run_id: str
    dry_run: bool = False
    error: str | None = None
    """The error the run failed with (``Type: message``), shown as a code block."""
    refused: str | None = None
    """Why the request was refused before anything changed."""
    steps: list[StepResult] = Field(default_factory=list)
    sections: list[Section] = Field(default_factory=list)
    secrets: list[str] = Field(default_factory=list, repr=False)
    """Known secret values, masked wherever they appear in the rendered text."""

    @field_validator("sections", mode="before")
    @classmethod
    def _sections(cls, value: Any) -> Any:
        return [_section(v) for v in value] if isinstance(value, (list, tuple)) else value

    @property
    def failed_steps(self) -> list[StepResult]:
        return [s for s in self.steps if not s.ok]


def _table_variables(steps: Sequence[StepResult], dry_run: bool) -> dict[str, Any]:
    return {
        "steps": list(steps),
        "dry_run": dry_run,
        "machines": any(s.machine for s in steps),
        "waves": any(s.wave is not None for s in steps),
        "max_diff_lines": MAX_DIFF_LINES,
    }


def steps_table(steps: Iterable[StepResult], *, dry_run: bool = False, templates_dir: Path | None = None) -> str:
    """The steps as a Markdown table (no trailing newline).

    Columns: #, Step, Target, Machine and Wave (when any step has them), Outcome (``ok``,
    ``skipped`` or ``failed: <error>``), Changed (``yes``/``no``, ``would change`` in a dry run),
    Seconds, Changes (the first :data:`MAX_DIFF_LINES` diff lines, then ``... N more``).

    Args:
        steps: the run's steps, in order.
        dry_run: the whole run is a dry run (a changed step then "would change" even if the step
            itself was not marked ``dry_run``).
        templates_dir: where ``steps_table.md.j2`` is (default configs/templates/reports).
    """
    env = markdown_env(templates_dir)
    return env.get_template(STEPS_TABLE_TEMPLATE).render(**_table_variables(list(steps), dry_run)).rstrip("\n")


def _mask(text: str, secrets: Iterable[str]) -> str:
    # The secret as given, and as the summary may have escaped it (text, table cell).
    values = {form for s in secrets if s for form in (s, escape_md(s), escape_cell(s))}
    return mask_text(text, values)


def render_run_summary(view: RunSummaryView, *, templates_dir: Path | None = None) -> str:
    """The run summary as Markdown, ending with one newline.

    Raises:
        jinja2.TemplateError: a template is missing or broken (``StrictUndefined``: a misspelt
            variable is an error).
    """
    env = markdown_env(templates_dir)
    text = env.get_template(RUN_SUMMARY_TEMPLATE).render(view=view, **_table_variables(view.steps, view.dry_run))
    return _mask(text.rstrip("\n") + "\n", view.secrets)
