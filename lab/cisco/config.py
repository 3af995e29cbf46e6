"""The emulator's configuration model: an ordered tree of config lines (parent line + children).

A device's running config is a tree whose root has the top-level lines as children;
sub-mode lines (``interface Vlan100``, ``router bgp 65000``...) carry their children.
Rendering indents children per platform (IOS/ASA one space, NX-OS two).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


def normalize(line: str) -> str:
    """A config line as the device stores it: trimmed, runs of blanks collapsed."""
    return " ".join(line.split())


@dataclass
class Node:
    """One config line and the lines of its sub-mode."""

    text: str
    children: list[Node] = field(default_factory=list)

    def find(self, text: str) -> Node | None:
        """The child whose line is exactly ``text`` (normalized), if any."""
        text = normalize(text)
        for child in self.children:
            if child.text == text:
                return child
        return None

    def add(self, text: str) -> Node:
        """The child ``text``, appended if it is not there yet."""
        existing = self.find(text)
        if existing is not None:
            return existing
        node = Node(normalize(text))
        self.children.append(node)
        return node

    def remove(self, text: str) -> list[Node]:
        """Remove the child ``text``; when there is none, every child starting with ``text ``.

        The prefix rule is what ``no ip address`` or ``no neighbor 10.0.0.1`` do on the
        real platforms: the arguments after the keyword need not be repeated.
        """
        text = normalize(text)
        exact = [c for c in self.children if c.text == text]
        gone = exact or [c for c in self.children if c.text.startswith(text + " ")]
        self.children = [c for c in self.children if all(c is not g for g in gone)]
        return gone

    def remove_exact(self, text: str) -> None:
        """Remove the child that is exactly ``text``, if any."""
        text = normalize(text)
        self.children = [c for c in self.children if c.text != text]

    def copy(self) -> Node:
        return Node(self.text, [c.copy() for c in self.children])

    def walk(self, depth: int = 0) -> Iterator[tuple[int, Node]]:
        """Every descendant with its depth (children of this node have depth ``depth``)."""
        for child in self.children:
            yield depth, child
            yield from child.walk(depth + 1)

    def line_count(self) -> int:
        return sum(1 for _ in self.walk())


def parse(text: str) -> Node:
    """Parse indented config text into a tree (used for baselines and in tests).

    Comment lines (``!``, ``:``) and blank lines are skipped; indentation decides nesting.
    """
    root = Node("")
    stack: list[tuple[int, Node]] = [(-1, root)]
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith(("!", ":")):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        while stack[-1][0] >= indent:
            stack.pop()
        node = Node(normalize(raw))
        stack[-1][1].children.append(node)
        stack.append((indent, node))
    return root


def render(root: Node, indent: str = " ", separators: bool = False,
           extra: dict[str, str] | None = None) -> list[str]:
    """Config lines with indentation.

    Args:
        root: the tree.
        indent: indentation per level.
        separators: put a ``!`` line after every top-level block (IOS and ASA style).
        extra: ``{regex: closing line}``: a child line matching regex is followed by the
            closing line at its own indentation (IOS ``exit-address-family``).
    """
    out: list[str] = []

    def emit(node: Node, depth: int) -> None:
        out.append(indent * depth + node.text)
        for child in node.children:
            emit(child, depth + 1)
        if extra and depth > 0:
            for pattern, closing in extra.items():
                if re.match(pattern, node.text):
                    out.append(indent * depth + closing)

    for top in root.children:
        emit(top, 0)
        if separators and top.children:
            out.append("!")
    return out


def section(root: Node, pattern: str) -> Node:
    """The top-level blocks in which any line matches ``pattern`` (IOS ``| section``)."""
    rx = re.compile(pattern)
    picked = Node("")
    for top in root.children:
        if rx.search(top.text) or any(rx.search(n.text) for _, n in top.walk()):
            picked.children.append(top)
    return picked


def starting_with(root: Node, words: Iterable[str]) -> Node:
    """The top-level blocks whose line starts with ``words`` (``show running-config interface``)."""
    prefix = normalize(" ".join(words)).lower()
    picked = Node("")
    for top in root.children:
        text = top.text.lower()
        if text == prefix or text.startswith(prefix + " "):
            picked.children.append(top)
    return picked
