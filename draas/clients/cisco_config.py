"""Cisco config as a tree, and the diffs the Cisco adapter pushes (no I/O, no netmiko).

A config is an ordered tree of lines: a parent line (``interface Vlan100``) owns the
indented lines under it. Three operations make config changes transactional:

- :func:`missing` — the lines of a candidate that the running config lacks, with the
  parents they need as context (napalm's "merge" diff);
- :func:`removals` — the lines to delete so that a block is gone again: a parent whose
  running children all belong to the block goes as a whole (``no interface Vlan100``),
  a shared parent (``router bgp 65010``) stays and only the block's lines in it go;
- :func:`commands` — the CLI lines that apply such a diff: parents entered, ``exit``
  after each sub-mode, ``no`` for removals.

Lines are compared after collapsing blanks. A running line that shows a secret as
``*****`` (the ASA hides pre-shared keys) matches any value in that place, so reading
back a masked key does not look like a change. The same masking hides secrets from
diffs, logs and error messages (:func:`mask_secrets`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from draas.errors import DraasError, PermanentError

#: Lines that are part of the output, not of the config.
_NOISE = re.compile(
    r"^(Building configuration\.\.\.|Current configuration\s*:|Using \d+ out of \d+ bytes|"
    r"Last configuration change|NVRAM config last updated|Cryptochecksum:|\[OK\])"
)
#: Lines that close a sub-mode: structure, not config.
_CLOSERS = frozenset({"exit", "exit-address-family", "exit-peer-policy", "exit-peer-session",
                      "exit-service-family", "exit-vrf", "end"})
_MASKED = re.compile(r"\*{5,}")
#: A secret keyword, its modifiers (encryption type, key id, hash) and the secret value.
_SECRET = re.compile(
    r"\b(pre-shared-key|password|passwd|secret|key-string|community|key(?! chain| config-key))"
    r"((?:\s+(?:\d{1,3}(?!\S)|address|hex|ascii|local|remote|md5|sha\S*))*)\s+(?!\*{5})(\S+)",
    re.IGNORECASE,
)


class CiscoError(DraasError):
    """Base of every error the Cisco adapter raises (see :mod:`draas.clients.cisco`)."""


class CiscoTemplateError(CiscoError, PermanentError):
    """A device template could not be rendered (missing variable, syntax error)."""


def normalize(line: str) -> str:
    """A config line as compared: trimmed, runs of blanks collapsed."""
    return " ".join(line.split())


#: Port names IOS, NX-OS and the ASA print in ACLs and object services instead of numbers.
PORT_NAMES: dict[str, str] = {
    "ftp-data": "20", "ftp": "21", "ssh": "22", "telnet": "23", "smtp": "25", "domain": "53",
    "bootps": "67", "bootpc": "68", "tftp": "69", "www": "80", "http": "80", "kerberos": "88",
    "pop3": "110", "sunrpc": "111", "ntp": "123", "netbios-ns": "137", "netbios-dgm": "138",
    "netbios-ssn": "139", "imap4": "143", "snmp": "161", "snmptrap": "162", "bgp": "179", "ldap": "389",
    "https": "443", "isakmp": "500", "syslog": "514", "ldaps": "636", "sqlnet": "1521",
}
_PORT_OPERATOR = re.compile(r"\b(eq|neq|lt|gt|range)((?: \S+){1,2})")
_FREE_TEXT = re.compile(r"^(description|remark|name|banner)\b|\bremark\b")


def port_numbers(line: str) -> str:
    """``line`` with well-known port names as numbers (``eq www`` -> ``eq 80``); free text untouched.

    Devices print such ports by name whatever was typed, so lines are compared this way:
    a re-run of a rendered ``eq 80`` against a device showing ``eq www`` is no change.
    """
    if _FREE_TEXT.search(line):
        return line
    return _PORT_OPERATOR.sub(
        lambda m: f"{m.group(1)} " + " ".join(PORT_NAMES.get(p, p) for p in m.group(2).split()), line)


def mask_secrets(text: str) -> str:
    """``text`` with values after secret keywords (``pre-shared-key X``) replaced by ``*****``."""
    return _SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)} *****", text)


def line_matches(candidate: str, running: str) -> bool:
    """True when the running line ``running`` is the candidate line (masked secrets match anything)."""
    if candidate == running:
        return True
    candidate, running = port_numbers(candidate), port_numbers(running)
    if candidate == running:
        return True
    if not _MASKED.search(running):
        return False
    pattern = "".join(r"\S+" if _MASKED.fullmatch(part) else re.escape(part)
                      for part in re.split(r"(\*{5,})", running))
    return re.fullmatch(pattern, candidate) is not None


@dataclass
class ConfigNode:
    """One config line and its sub-mode lines.

    ``new`` marks, in a diff from :func:`missing`, a line the device does not have yet
    (its children are new too); unmarked parents in a diff are context.
    """

    text: str
    children: list[ConfigNode] = field(default_factory=list)
    new: bool = False

    def find(self, text: str) -> ConfigNode | None:
        """The child that the candidate line ``text`` matches."""
        for child in self.children:
            if line_matches(text, child.text):
                return child
        return None

    def copy(self, new: bool = False) -> ConfigNode:
        return ConfigNode(self.text, [c.copy() for c in self.children], new=new)

    def lines(self, indent: str = " ", depth: int = -1) -> list[str]:
        """The subtree as indented lines (the root itself, ``depth=-1``, prints nothing)."""
        out = [indent * depth + self.text] if depth >= 0 else []
        for child in self.children:
            out.extend(child.lines(indent, depth + 1))
        return out

    def __len__(self) -> int:
        return sum(1 + len(c) for c in self.children)


def parse_config(text: str | Iterable[str]) -> ConfigNode:
    """Parse config text (a device's ``show running-config`` or a rendered template).

    Indentation decides nesting, whatever its width. Comment lines (``!``, ``:``),
    output lines such as ``Building configuration...``, the sub-mode closers ``exit`` /
    ``exit-address-family`` and a final ``end`` are dropped. Returns the root node,
    whose children are the top-level lines.
    """
    raw_lines = text.splitlines() if isinstance(text, str) else \
        [line for chunk in text for line in str(chunk).splitlines()]
    root = ConfigNode("")
    stack: list[tuple[int, ConfigNode]] = [(-1, root)]
    for raw in raw_lines:
        raw = raw.replace("\t", "    ").rstrip()
        stripped = raw.strip()
        if not stripped or stripped.startswith(("!", ":")) or _NOISE.match(stripped):
            continue
        if stripped.lower() in _CLOSERS:
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        while stack[-1][0] >= indent:
            stack.pop()
        node = ConfigNode(normalize(stripped))
        stack[-1][1].children.append(node)
        stack.append((indent, node))
    return root


def missing(candidate: ConfigNode, running: ConfigNode) -> ConfigNode:
    """The candidate lines absent from ``running``, with present parents kept as context.

    Lines the device lacks are copied with their whole subtree and marked ``new``.
    """
    out = ConfigNode("")
    for cand in candidate.children:
        run = running.find(cand.text)
        if run is None:
            out.children.append(cand.copy(new=True))
            continue
        sub = missing(cand, run)
        if sub.children:
            out.children.append(ConfigNode(cand.text, sub.children))
    return out


def _covers(block: ConfigNode, running: ConfigNode) -> bool:
    """True when every running line under ``running`` is in ``block`` (the block owns it)."""
    for run_child in running.children:
        match = next((b for b in block.children if line_matches(b.text, run_child.text)), None)
        if match is None or not _covers(match, run_child):
            return False
    return True


def removals(block: ConfigNode, running: ConfigNode) -> ConfigNode:
    """What to delete so that ``block`` is gone from ``running``.

    Leaves of the result are removed with ``no <line>``; inner nodes are shared parents
    entered as context. A block line without children, or whose running children all
    belong to the block, is removed as a whole. The order is the block's, reversed: what
    uses an object (``access-group``, ``crypto map``) goes before the object itself, which
    the ASA and IOS insist on.
    """
    out = ConfigNode("")
    for item in reversed(block.children):
        run = running.find(item.text)
        if run is None:
            continue
        if not item.children or _covers(item, run):
            out.children.append(ConfigNode(item.text))
            continue
        sub = removals(item, run)
        if sub.children:
            out.children.append(ConfigNode(item.text, sub.children))
    return out


def as_removal(added: ConfigNode) -> ConfigNode:
    """Turn a :func:`missing` result into the :func:`removals` form that undoes it.

    A ``new`` line goes as a whole (its children with it); context parents stay context.
    Last added goes first, as in :func:`removals`.
    """
    out = ConfigNode(added.text)
    for child in reversed(added.children):
        out.children.append(ConfigNode(child.text) if child.new else as_removal(child))
    return out


def commands(diff: ConfigNode, negate_leaves: bool = False, indent: str = " ") -> list[str]:
    """CLI lines that apply ``diff``.

    Args:
        diff: from :func:`missing` (add every line) or :func:`removals` (``negate_leaves``).
        negate_leaves: send ``no <line>`` for the leaves (removal), parents as context.
        indent: cosmetic indentation per level (devices ignore it).
    """
    out: list[str] = []

    def emit(node: ConfigNode, depth: int) -> None:
        if negate_leaves and not node.children:
            out.append(f"{indent * depth}no {node.text}")
            return
        out.append(indent * depth + node.text)
        for child in node.children:
            emit(child, depth + 1)
        if node.children:
            out.append(indent * depth + "exit")

    for top in diff.children:
        emit(top, 0)
    return out


def diff_lines(diff: ConfigNode, sign: str, running: ConfigNode | None = None) -> list[str]:
    """A readable, secret-free diff: ``+``/``-`` on changed lines, blanks on context parents.

    Args:
        diff: from :func:`missing` (``sign="+"``) or :func:`removals` (``sign="-"``).
        sign: ``+`` or ``-``.
        running: for removals, the running config, to show what a removed line takes with it.
    """
    out: list[str] = []

    def emit(node: ConfigNode, run: ConfigNode | None, depth: int, inherited_new: bool) -> None:
        pad = "  " * depth
        if sign == "+":
            is_new = inherited_new or node.new
            out.append(f"{'+' if is_new else ' '} {pad}{node.text}")
            for child in node.children:
                emit(child, None, depth + 1, is_new)
            return
        here = run.find(node.text) if run is not None else None
        if node.children:  # a shared parent
            out.append(f"  {pad}{node.text}")
            for child in node.children:
                emit(child, here, depth + 1, False)
            return
        gone = here.copy() if here is not None else ConfigNode(node.text)
        gone.text = node.text
        out.extend(f"- {pad}{line}" for line in ConfigNode("", [gone]).lines("  ", -1))

    for top in diff.children:
        emit(top, running, 0, False)
    return [mask_secrets(line) for line in out]


def touched(tree: ConfigNode, scope: ConfigNode) -> ConfigNode:
    """The top-level blocks of ``tree`` that ``scope`` names (what a push may have changed)."""
    out = ConfigNode("")
    for top in scope.children:
        node = tree.find(top.text)
        if node is not None:
            out.children.append(node)
    return out


def restore(before: ConfigNode, after: ConfigNode, scope: ConfigNode) -> list[str]:
    """Commands that bring the blocks named by ``scope`` back from ``after`` to ``before``.

    Lines added since ``before`` are removed (a new block as a whole), lines that went
    away are added again. ``scope`` (what was pushed) gives the exact text to negate
    where the device shows a secret masked.
    """
    before_part = touched(before, scope)
    after_part = touched(after, scope)
    added = _candidate_text(missing(after_part, before_part), scope)
    lost = missing(before_part, after_part)
    return commands(as_removal(added), negate_leaves=True) + commands(lost)


def _candidate_text(diff: ConfigNode, scope: ConfigNode) -> ConfigNode:
    """``diff`` with each line replaced by the matching ``scope`` line (unmasked secrets)."""
    out = ConfigNode(diff.text, new=diff.new)
    for child in diff.children:
        cand = next((c for c in scope.children if line_matches(c.text, child.text)), None)
        sub = _candidate_text(child, cand or ConfigNode(""))
        sub.text = cand.text if cand is not None else child.text
        out.children.append(sub)
    return out


# --------------------------------------------------------------------------- templates

def template_environment(templates_dir: str | Path) -> jinja2.Environment:
    """The jinja2 environment for device templates: undefined variables are errors."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # device config, not HTML
    )


def render_template(template: str, variables: Mapping[str, Any], templates_dir: str | Path) -> str:
    """Render ``template`` (a file name under ``templates_dir``) with ``variables``.

    Raises:
        CiscoTemplateError: a variable is undefined, the template is missing or invalid.
    """
    try:
        return template_environment(templates_dir).get_template(template).render(**variables)
    except jinja2.TemplateNotFound as exc:
        raise CiscoTemplateError(f"device template {template!r} not found under {templates_dir}") from exc
    except jinja2.UndefinedError as exc:
        raise CiscoTemplateError(f"device template {template!r}: {exc.message}") from exc
    except jinja2.TemplateSyntaxError as exc:
        raise CiscoTemplateError(f"device template {template!r} line {exc.lineno}: {exc.message}") from exc
