"""Emulated devices (configs per context, faults) and the CLI state machine of one SSH session.

Nothing here does I/O: :class:`CliSession` turns one input line into the text the device
prints and :class:`Terminal` turns keystrokes into echo and lines for it, so the SSH server
and unit tests share the same behaviour.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lab.cisco.config import Node, normalize, parse, render, section, starting_with
from lab.cisco.grammar import Mode, grammar
from lab.cisco.platforms import (
    SYSTEM,
    Platform,
    baseline,
    config_footer,
    config_header,
    mask,
    platform,
    save_output,
    version_text,
)

_fault_ids = itertools.count(1)


@dataclass
class Context:
    """One configuration space: a whole device, or one ASA security context."""

    name: str
    running: Node
    startup: Node


@dataclass
class Fault:
    """A fault injected through the control API: reject a config line with an error.

    Attributes:
        context: only lines typed in this ASA context (None: any).
        pattern: only lines matching this regex (None: any line).
        after_lines: let this many config lines through first.
        message: the error printed (default: a platform-styled rejection).
        times: how many lines to reject before the fault clears itself (0: forever).
    """

    context: str | None = None
    pattern: re.Pattern[str] | None = None
    after_lines: int = 0
    message: str | None = None
    times: int = 1
    id: int = field(default_factory=lambda: next(_fault_ids))
    seen: int = 0
    fired: int = 0

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "context": self.context,
                "on_line_matching": self.pattern.pattern if self.pattern else None,
                "after_lines": self.after_lines, "message": self.message, "times": self.times,
                "seen": self.seen, "fired": self.fired}


class Device:
    """One emulated device with its contexts, faults and a history of config lines."""

    def __init__(self, spec: dict[str, Any], index: int, username: str, password: str, secret: str) -> None:
        self.name: str = spec["name"]
        self.spec_hostname: str = spec["hostname"]
        self.platform: Platform = platform(spec["platform"])
        self.role: str = spec.get("role", "")
        self.model: str = spec.get("model", "")
        self.multi_context: bool = bool(spec.get("multi_context")) and self.platform.name == "cisco_asa"
        self.username = username
        self.password = password
        self.secret = secret
        self.baseline = baseline({**spec, "multi_context": self.multi_context}, index)
        self.contexts: dict[str, Context] = {}
        self.faults: list[Fault] = []
        self.generation = 0
        self.history: deque[dict[str, Any]] = deque(maxlen=5000)
        self.config_lines = 0  # config lines accepted since start (tests read it via the control API)
        self.saves = 0
        self.reset()

    # -- state ------------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the baseline: running = startup = baseline, no faults, sessions to exec mode."""
        self.contexts = {name: Context(name, parse(text), parse(text)) for name, text in self.baseline.items()}
        self.faults.clear()
        self.generation += 1

    @property
    def default_context(self) -> str:
        """The config space the control API means without ``?context=``: system on a multi-context ASA."""
        return SYSTEM if self.multi_context else ""

    @property
    def login_context(self) -> str:
        """Where an SSH session starts: the admin context on a multi-context ASA.

        A real multi-context ASA is reached on the admin context's management address (the
        system execution space has no interfaces); ``admin-context`` in the system config
        names it.
        """
        if not self.multi_context:
            return ""
        for line in self.contexts[SYSTEM].running.children:
            if line.text.startswith("admin-context "):
                name = line.text.split(None, 1)[1]
                if name in self.contexts:
                    return name
        return "admin" if "admin" in self.contexts else SYSTEM

    def context(self, name: str | None) -> Context:
        key = self.default_context if name in (None, "") else name
        if key not in self.contexts:
            raise KeyError(name)
        return self.contexts[key]

    def hostname(self) -> str:
        for line in self.contexts[self.default_context].running.children:
            if line.text.startswith(("hostname ", "switchname ")):
                return line.text.split(None, 1)[1]
        return self.spec_hostname

    def create_context(self, name: str) -> bool:
        if name in self.contexts:
            return False
        text = f"hostname {name}\n"
        self.contexts[name] = Context(name, parse(text), parse(text))
        return True

    def delete_context(self, name: str) -> None:
        if name not in (SYSTEM, "admin"):
            self.contexts.pop(name, None)

    def save(self, context: str, all_contexts: bool = False) -> int:
        """Copy running to startup; returns the byte count the device reports."""
        names = list(self.contexts) if all_contexts else [context]
        size = 0
        for name in names:
            ctx = self.contexts[name]
            ctx.startup = ctx.running.copy()
            size += sum(len(line) + 1 for line in render(ctx.running, self.platform.indent))
        self.saves += 1
        return size

    def check_fault(self, context: str, line: str) -> str | None:
        """The error to print if an injected fault rejects ``line``, else None."""
        for fault in list(self.faults):
            if fault.context not in (None, "", context):
                continue
            fault.seen += 1
            if fault.seen <= fault.after_lines:
                continue
            if fault.pattern is not None and not fault.pattern.search(line):
                continue
            fault.fired += 1
            if fault.times and fault.fired >= fault.times:
                self.faults.remove(fault)
            return self.platform.error(fault.message or "% Configuration rejected (lab fault injected)")
        return None

    def rendered(self, context: str | None, which: str = "running") -> str:
        """A context's config as ``show running-config`` body lines (what the control API returns)."""
        ctx = self.context(context)
        tree = ctx.running if which == "running" else ctx.startup
        lines = render(tree, self.platform.indent, self.platform.separators, self.platform.closers)
        return "\n".join(mask(self.platform.name, line) for line in lines) + "\n"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "hostname": self.hostname(), "platform": self.platform.name,
                "role": self.role, "model": self.model, "multi_context": self.multi_context,
                "contexts": [c for c in self.contexts if c], "config_lines": self.config_lines,
                "saves": self.saves, "faults": [f.describe() for f in self.faults]}


@dataclass
class Reply:
    """What the device prints for one input line, after the line's end.

    ``echo`` is False for a password answer, whose keystrokes the device did not echo (the
    SSH server echoes every other keystroke as it arrives).
    """

    text: str
    echo: bool = True
    close: bool = False


@dataclass
class _Frame:
    mode: Mode
    node: Node


def _abbrev(word: str, full: str, minimum: int = 2) -> bool:
    """True when ``word`` is an accepted abbreviation of ``full`` (``conf`` for ``configure``)."""
    word = word.lower()
    return len(word) >= min(minimum, len(full)) and full.startswith(word)


class CliSession:
    """The CLI of one SSH session on ``device``: modes, prompts, commands, errors."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.plat = device.platform
        self.privileged = self.plat.starts_privileged
        self.context = device.login_context
        self.frames: list[_Frame] = []
        self.waiting: str | None = None  # enable-password | login-user | login-password | copy-dest
        self.generation = device.generation
        self._login_user = ""
        self._close = False  # set by exit/logout while handling a line

    # -- prompt -----------------------------------------------------------------------------
    def prompt(self) -> str:
        base = self.device.hostname()
        if self.device.multi_context and self.context != SYSTEM:
            base = f"{base}/{self.context}"
        if self.frames:
            base += f"({self.frames[-1].mode.name})"
        return base + ("#" if self.privileged else ">") + self.plat.prompt_tail

    def greeting(self) -> str:
        return "\r\n" + self.prompt()

    @property
    def secret_input(self) -> bool:
        """True while the device waits for a password: what is typed is not echoed."""
        return self.waiting in ("enable-password", "login-password")

    # -- entry point ------------------------------------------------------------------------
    def handle(self, raw: str) -> Reply:
        """Process one line typed by the client."""
        self._sync()
        if self.waiting:
            return self._answer(raw)
        prompt_before = self.prompt()
        self._close = False
        out = self._config(raw, prompt_before) if self.frames else self._exec(raw, prompt_before)
        if self._close:
            return Reply(out + ("\r\n" if out else ""), close=True)
        if self.waiting:  # a question (Password:) replaces the prompt
            return Reply(out)
        return Reply((out + "\r\n" if out else "") + self.prompt())

    def _sync(self) -> None:
        """Follow changes made behind this session's back (control API reset, context removed)."""
        if self.generation != self.device.generation or self.context not in self.device.contexts:
            self.generation = self.device.generation
            self.frames = []
            if self.context not in self.device.contexts:
                self.context = self.device.login_context

    def _answer(self, raw: str) -> Reply:
        what, self.waiting = self.waiting, None
        if what == "enable-password":
            if raw.strip() == self.device.secret:
                self.privileged = True
                return Reply(self.prompt(), echo=False)
            msg = "Invalid password" if self.plat.name == "cisco_asa" else "% Access denied"
            return Reply(msg + "\r\n" + self.prompt(), echo=False)
        if what == "login-user":
            self._login_user = raw.strip()
            self.waiting = "login-password"
            return Reply("Password: ")
        if what == "login-password":
            if self._login_user == self.device.username and raw.strip() == self.device.password:
                self.privileged = True
                return Reply(self.prompt(), echo=False)
            return Reply("Invalid password\r\n" + self.prompt(), echo=False)
        if what == "copy-dest":
            size = self.device.save(self.context)
            return Reply(save_output(self.plat.name, size) + "\r\n" + self.prompt())
        return Reply(self.prompt())

    # -- errors -----------------------------------------------------------------------------
    def _invalid(self, raw: str, prompt: str, word_index: int = 0) -> str:
        """The platform's invalid-input error with a caret under word ``word_index`` of ``raw``."""
        col = 0
        for i, m in enumerate(re.finditer(r"\S+", raw)):
            col = m.start()
            if i == word_index:
                break
        else:
            col = len(raw.rstrip())
        return " " * (len(prompt) + col) + "^\r\n" + self.plat.invalid

    def _incomplete(self) -> str:
        return self.plat.error("% Incomplete command.")

    # -- exec mode --------------------------------------------------------------------------
    def _exec(self, raw: str, prompt: str) -> str:
        words = raw.split()
        if not words:
            return ""
        w0 = words[0].lower()
        rest = words[1:]
        if _abbrev(w0, "enable", 2):
            if not self.privileged:
                self.waiting = "enable-password"
                return "Password: "
            return ""
        if _abbrev(w0, "disable", 4) and not self.plat.starts_privileged:
            self.privileged = False
            return ""
        if w0 == "login" and self.plat.name == "cisco_asa":
            self.waiting = "login-user"
            return "Username: "
        if w0 in ("exit", "logout", "quit"):
            self._close = True
            return ""
        if _abbrev(w0, "terminal", 4):
            return ""
        if _abbrev(w0, "show", 2):
            return self._show(raw, rest, prompt)
        if not self.privileged:
            return self._invalid(raw, prompt)
        if _abbrev(w0, "configure", 4):
            if rest and not _abbrev(rest[0], "terminal", 1):
                return self._invalid(raw, prompt, 1)
            self.frames = [_Frame(self._grammar(), self._ctx().running)]
            if self.plat.name == "cisco_asa":
                return ""
            return "Enter configuration commands, one per line. End with CNTL/Z."
        if _abbrev(w0, "write", 2) and self.plat.name != "cisco_nxos":
            if rest and not _abbrev(rest[0], "memory", 3):
                return self._invalid(raw, prompt, 1)
            all_contexts = len(rest) > 1 and rest[1].lower() == "all" and self.context == SYSTEM
            size = self.device.save(self.context, all_contexts=all_contexts)
            return save_output(self.plat.name, size)
        if w0 == "copy":
            if len(rest) != 2 or not _abbrev(rest[0], "running-config", 3) \
                    or not _abbrev(rest[1], "startup-config", 3):
                return self._invalid(raw, prompt, 1)
            if self.plat.name == "cisco_ios":
                self.waiting = "copy-dest"
                return "Destination filename [startup-config]? "
            size = self.device.save(self.context)
            return save_output(self.plat.name, size)
        if w0 == "changeto" and self.device.multi_context:
            return self._changeto(raw, rest, prompt)
        return self._invalid(raw, prompt)

    def _changeto(self, raw: str, rest: list[str], prompt: str) -> str:
        if rest and rest[0].lower() == "system" and len(rest) == 1:
            target = SYSTEM
        elif len(rest) == 2 and rest[0].lower() == "context":
            target = rest[1]
            if target not in self.device.contexts or target == SYSTEM:
                return f"ERROR: Invalid context name {target}"
        else:
            return self._invalid(raw, prompt, 1)
        self.context = target
        if self.frames:  # the ASA stays in configuration mode across changeto
            self.frames = [_Frame(self._grammar(), self._ctx().running)]
        return ""

    def _show(self, raw: str, rest: list[str], prompt: str) -> str:
        if not rest:
            return self._incomplete()
        what = rest[0].lower()
        if _abbrev(what, "running-config", 3):
            return self._show_config("running", raw, prompt)
        if _abbrev(what, "startup-config", 3) and self.privileged:
            return self._show_config("startup", raw, prompt)
        if _abbrev(what, "version", 3):
            return version_text(self.plat.name, self.device.hostname(), self.device.model)
        if _abbrev(what, "hostname", 4):
            return self.device.hostname()
        if what == "curpriv" and self.plat.name == "cisco_asa":
            level, modes = (15, "P_PRIV") if self.privileged else (1, "P_UNPR")
            if self.frames:
                modes += " P_CONF"
            user = self.device.username if self.privileged else "enable_1"
            return f"Username : {user}\r\nCurrent privilege level : {level}\r\nCurrent Mode/s : {modes}"
        if _abbrev(what, "clock", 2):
            return datetime.now(UTC).strftime("%H:%M:%S.000 UTC %a %b %d %Y")
        if what == "context" and self.device.multi_context and self.context == SYSTEM:
            rows = ["Context Name      Class                Interfaces           Mode         URL"]
            for name in self.device.contexts:
                if name != SYSTEM:
                    star = "*" if name == "admin" else " "
                    rows.append(f"{star}{name:<16} default              -                    Routed       disk0:/{name}.cfg")
            return "\r\n".join(rows)
        return self._invalid(raw, prompt, 1)

    def _show_config(self, which: str, raw: str, prompt: str) -> str:
        if not self.privileged:
            return self._invalid(raw, prompt, 1)
        ctx = self._ctx()
        tree = ctx.running if which == "running" else ctx.startup
        text, _, pipe = raw.partition("|")
        args = text.split()[2:]
        filtered = False
        if args and args[0].lower() == "all":
            args = args[1:]
        if args:
            filtered = True
            if args[0].lower() == "section" and len(args) > 1:
                tree = section(tree, " ".join(args[1:]))
            else:
                tree = starting_with(tree, self._config_aliases(args))
        pipe_words = pipe.split(None, 1)
        if pipe_words and _abbrev(pipe_words[0], "section", 1) and len(pipe_words) == 2:
            tree = section(tree, pipe_words[1].strip())
            pipe_words = []
        filtered = filtered or bool(pipe.strip())
        lines = render(tree, self.plat.indent, self.plat.separators and not filtered, self.plat.closers)
        lines = [mask(self.plat.name, line) for line in lines]
        if pipe_words:
            if len(pipe_words) != 2:
                return self._incomplete()
            op, pattern = pipe_words[0].lower(), pipe_words[1].strip()
            try:
                rx = re.compile(pattern)
            except re.error:
                return self._invalid(raw, prompt, len(text.split()) + 1)
            if _abbrev(op, "include", 1):
                lines = [line for line in lines if rx.search(line)]
            elif _abbrev(op, "exclude", 1):
                lines = [line for line in lines if not rx.search(line)]
            elif _abbrev(op, "begin", 1):
                first = next((i for i, line in enumerate(lines) if rx.search(line)), len(lines))
                lines = lines[first:]
            else:
                return self._invalid(raw, prompt, len(text.split()))
        elif not filtered:
            size = sum(len(line) + 1 for line in lines)
            name = "system" if self.context == SYSTEM else self.context
            lines = config_header(self.plat.name, which, name, size) + lines \
                + config_footer(self.plat.name)
        return "\r\n".join(lines)

    def _config_aliases(self, args: list[str]) -> list[str]:
        """``show running-config bgp`` and friends name a block by a shorter word."""
        first = args[0].lower()
        if first in ("bgp", "ospf", "eigrp") and self.plat.name == "cisco_nxos":
            return ["router", first, *args[1:]]
        if first == "vrf" and self.plat.name == "cisco_nxos":
            return ["vrf", "context", *args[1:]]
        return args

    # -- configuration mode ---------------------------------------------------------------------
    def _ctx(self) -> Context:
        return self.device.contexts[self.context]

    def _grammar(self) -> Mode:
        return grammar(self.plat.name, system_context=self.device.multi_context and self.context == SYSTEM)

    def _config(self, raw: str, prompt: str) -> str:
        line = normalize(raw)
        if not line:
            return ""
        words = line.split()
        w0 = words[0].lower()
        if w0 == "end" and len(words) == 1:
            self.frames = []
            return ""
        if w0 == "exit" and len(words) == 1:
            self.frames.pop()
            return ""
        for depth in range(len(self.frames) - 1, 0, -1):
            if line.lower() in self.frames[depth].mode.closers:
                del self.frames[depth:]
                return ""
        if w0 == "do" and len(words) > 1:
            return self._exec(raw.split(None, 1)[1], prompt)
        # The ASA and NX-OS run exec commands in configuration mode too.
        if self.plat.name != "cisco_ios" and (
                _abbrev(w0, "show", 2) or w0 in ("copy", "changeto") or _abbrev(w0, "write", 2)):
            return self._exec(raw, prompt)
        if _abbrev(w0, "terminal", 4):
            return ""
        return self._apply(raw, line, prompt)

    def _apply(self, raw: str, line: str, prompt: str) -> str:
        negate = line.lower().startswith("no ")
        body = line[3:].strip() if negate else line
        if line.lower() == "no":
            return self._incomplete()
        depth = self._resolve(body)
        if depth is None:
            return self._reject(raw, body, prompt, negate)
        fault = self.device.check_fault(self.context, line)
        self.device.history.append({"context": self.context, "line": line, "accepted": fault is None})
        if fault is not None:
            return fault
        self.device.config_lines += 1
        del self.frames[depth + 1:]
        frame = self.frames[depth]
        sub = frame.mode.submode_for(body)
        parent = frame.node
        out = ""
        if negate:
            parent.remove(body)
            if body.lower() in self.plat.stored_negations:
                parent.add("no " + body)
            if sub is not None and self._is_system_context_line(body):
                self.device.delete_context(body.split()[1])
            return out
        key = self.plat.single_key(body)
        if key is not None:
            parent.children = [c for c in parent.children
                               if c.text == body or not c.text.lower().startswith(key + " ")
                               or c.text.lower().endswith(" secondary")]
        parent.remove_exact("no " + body)
        node = parent.add(body)
        if sub is not None:
            self.frames.append(_Frame(sub, node))
            if self._is_system_context_line(body) and self.device.create_context(body.split()[1]):
                out = f"Creating context '{body.split()[1]}'... Done. ({len(self.device.contexts) - 1})"
        return out

    def _is_system_context_line(self, body: str) -> bool:
        return (self.device.multi_context and self.context == SYSTEM
                and body.lower().startswith("context ") and len(body.split()) == 2)

    def _resolve(self, body: str) -> int | None:
        """The frame depth that accepts ``body``: innermost strict match, else a generous mode."""
        for depth in range(len(self.frames) - 1, -1, -1):
            if self.frames[depth].mode.knows(body):
                return depth
        for depth in range(len(self.frames) - 1, -1, -1):
            if self.frames[depth].mode.generous:
                return depth
        return None

    def _reject(self, raw: str, body: str, prompt: str, negate: bool) -> str:
        self.device.history.append({"context": self.context, "line": normalize(raw), "accepted": False})
        words = body.split()
        known = set().union(*(f.mode.first_words() for f in self.frames))
        offset = 1 if negate else 0
        if words and words[0].lower() in known:
            if len(words) == 1:
                return self._incomplete()
            return self._invalid(raw, prompt, offset + 1)
        return self._invalid(raw, prompt, offset)


class Terminal:
    """The terminal side of one session: per-keystroke echo and line editing, as on the real CLIs.

    IOS, IOS-XE, NX-OS and the ASA echo each character as it is typed (not at Enter), so a
    client typing one key at a time sees it come back before the next. :meth:`feed` takes
    whatever the client wrote (one key or a pasted block of lines) and returns what the device
    prints: the echo, and at each line end the device's answer and next prompt. Editing keys:
    Backspace (DEL ``0x7f`` or ``^H``) erases the last character (``\\b \\b``), ``^U`` the line,
    ``^W`` the last word; ``^C`` abandons the line, ``^Z`` is ``end``; escape sequences (arrow
    keys) and other control characters are swallowed. Nothing is echoed while the device asks
    for a password. CR, LF and CRLF all end a line.
    """

    ERASE = "\b \b"

    def __init__(self, session: CliSession) -> None:
        self.session = session
        self.buffer: list[str] = []
        self.closed = False
        self._skip_lf = False  # a CR ended the last line: a following LF belongs to it
        self._escape = ""  # the escape sequence being swallowed ("" when none)

    def greeting(self) -> str:
        return self.session.greeting()

    def feed(self, data: str) -> str:
        """Process typed ``data``; returns everything the device prints in answer."""
        out: list[str] = []
        for ch in data:
            if self.closed:
                break
            if self._escape:
                self._escape = self._escaped(self._escape + ch)
                continue
            if ch == "\n" and self._skip_lf:
                self._skip_lf = False
                continue
            self._skip_lf = ch == "\r"
            if ch in "\r\n":
                self._enter(out)
            elif ch in "\x7f\x08":
                if self.buffer:
                    self.buffer.pop()
                    self._echo(out, self.ERASE)
            elif ch == "\x15":  # ^U: erase the line
                self._echo(out, self.ERASE * len(self.buffer))
                self.buffer.clear()
            elif ch == "\x17":  # ^W: erase the last word and the blanks after it
                keep = "".join(self.buffer).rstrip()
                keep = keep[:len(keep) - len(keep.split()[-1])] if keep.split() else ""
                self._echo(out, self.ERASE * (len(self.buffer) - len(keep)))
                self.buffer = list(keep)
            elif ch == "\x03":  # ^C: abandon the line
                self.buffer.clear()
                out.append("^C\r\n" + self.session.prompt())
            elif ch == "\x1a":  # ^Z: end configuration mode
                self.buffer.clear()
                self._echo(out, "^Z")
                if self.session.frames:
                    self._run("end", out)
                else:
                    out.append("\r\n" + self.session.prompt())
            elif ch == "\x1b":
                self._escape = ch
            elif ch >= " " or ch == "\t":
                self.buffer.append(ch)
                self._echo(out, ch)
            # other control characters: ignored, like the real CLIs do
        return "".join(out)

    def _echo(self, out: list[str], text: str) -> None:
        if text and not self.session.secret_input:
            out.append(text)

    @staticmethod
    def _escaped(seq: str) -> str:
        """What is left of escape sequence ``seq`` to swallow ("" once it is complete).

        ``ESC [ ... final`` (final byte 0x40-0x7e: arrow keys ``ESC [ A``), ``ESC O x``, or
        ``ESC`` and one character.
        """
        if len(seq) == 2:
            return seq if seq[1] in "[O" else ""
        if seq[1] == "O" or "\x40" <= seq[-1] <= "\x7e":
            return ""
        return seq

    def _enter(self, out: list[str]) -> None:
        line = "".join(self.buffer)
        self.buffer.clear()
        self._run(line, out)

    def _run(self, line: str, out: list[str]) -> None:
        try:
            reply = self.session.handle(line)
        except Exception:  # an emulator bug must not hang the client until its timeout
            logging.getLogger("lab.cisco").exception("%s: error handling a line", self.session.device.name)
            reply = Reply("% Internal emulator error (see the lab log)\r\n" + self.session.prompt())
        out.append("\r\n" + reply.text)
        self.closed = reply.close
