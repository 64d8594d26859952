"""Destructive candidates: judged on the syntax tree, flagged, ranked last.

nl2code never executes generated code. Still, a user may paste a suggestion into a shell, so
every candidate that deletes or overwrites files, formats a disk or shuts the machine down
is flagged (`danger` in --json, a warning on stderr, a mark in the editor) and ranked after
every candidate that does not (nl2code.rerank).

bash: the candidate is parsed with tree-sitter-bash and each command is judged on its
name and words, wherever it stands: in a pipeline, a list, a loop, `$(...)`, behind
sudo/env/nohup/time/xargs, in `find -exec`, or in `sh -c '...'`. Redirections that overwrite
a file (`>`, `>|`, not `>>` and not /dev/null) are flagged as overwrites. A few whole-text
patterns (fork bomb, download piped into a shell, recursive chmod/chown of /) stay regexes.

Python: calls are judged on Python's own syntax tree: os.remove/unlink/rmdir,
shutil.rmtree, Path.unlink/rmdir delete files; subprocess.*, os.system/popen/exec*/spawn*
with a constant command are judged as that shell command (`subprocess.call(['shutdown',
...])` is flagged, `subprocess.call(['./test.sh'])` is not).
"""

from __future__ import annotations

import ast
import re
import shlex

# reasons (what --json "danger" lists)
ROOT_DELETE = "recursive delete of / or a system folder"
DELETES = "deletes files"
OVERWRITES = "overwrites files"
FORMAT = "filesystem format (mkfs)"
DISK_WRITE = "raw write to a disk device"
SHUTDOWN = "shuts down or reboots the machine"
SYSTEM_FILE = "overwrite of a system file"
_SYSTEM_FILE = re.compile(r"^/etc/(?:passwd|shadow|sudoers|fstab|group|hosts)$|^/(?:boot|bin|sbin|lib|usr)/")

# each may end in /* (`rm -rf ~/*` empties the folder just as `rm -rf ~` removes it)
_ROOTISH = r"""(?:/\*?|(?:~|\$HOME|\$\{HOME\}|/(?:bin|boot|dev|etc|home|lib|lib64|opt|root|sbin|srv|usr|var))/?\*?)"""
_ROOTISH_RX = re.compile(rf"^{_ROOTISH}$")
_DISK = re.compile(r"^/dev/(?:sd[a-z]|nvme\d|hd[a-z]|vd[a-z]|xvd[a-z]|mmcblk\d|disk\d)")
_HARMLESS_DEV = re.compile(r"^/dev/(?:null|zero|stdout|stderr|tty|fd/\d+)$")

PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("rm --no-preserve-root", re.compile(r"--no-preserve-root")),
    ("download piped into a shell", re.compile(r"\b(?:curl|wget)\b[^|;&]*\|\s*(?:sudo\s+)?(?:ba|z|da|k)?sh\b")),
    ("fork bomb", re.compile(r":\s*\(\s*\)\s*\{\s*:\s*\|\s*:\s*&\s*\}\s*;\s*:")),
    ("recursive chmod 777 of / or a system folder",
     re.compile(rf"\bchmod\s+(?:-[a-zA-Z]*\s+)*-[a-zA-Z]*R[a-zA-Z]*\s+(?:0?777|a\+rwx)\s+{_ROOTISH}(?:\s|$|;)")),
    ("recursive chown of /", re.compile(r"\bchown\s+(?:-[a-zA-Z]*\s+)*-[a-zA-Z]*R[a-zA-Z]*\s+\S+\s+/(?:\s|$|;)")),
]

_DELETERS = {"rm", "unlink", "rmdir", "shred", "srm", "wipe", "trash-empty"}
_FORMATTERS = {"mkswap", "wipefs"}
_SHUTDOWN = {"shutdown", "reboot", "halt", "poweroff"}
_SHELLS = {"sh", "bash", "zsh", "dash", "ksh"}
# prefixes that run the command after them: name -> options that take a value
_WRAPPERS = {"sudo": {"-u", "-g", "-C", "-p"}, "doas": {"-u"}, "nohup": set(), "time": set(),
             "command": set(), "exec": set(), "builtin": set(), "nice": {"-n"}, "ionice": {"-c", "-n"},
             "timeout": {"-s", "-k"}, "env": {"-u"}, "stdbuf": {"-i", "-o", "-e"}, "watch": {"-n"},
             "xargs": {"-I", "-i", "-n", "-P", "-L", "-d", "-E", "-s", "-a", "--delimiter", "--max-args"}}
_MAX_DEPTH = 4  # sh -c 'sh -c "..."' nesting judged


# What an intent must say for a flagged candidate to be what was asked for (word stems): a
# candidate that deletes files answers "delete all .tmp files" and keeps its flag (and the
# warning), but is not ranked last for it. Wiping / or a disk, system files, fork bombs and
# piping downloads into a shell are never "asked for".
_ASKED = {
    DELETES: ("delet", "remov", "eras", "rm", "clean", "purg", "wip", "unlink", "discard", "prun",
              "get rid", "rmdir", "shred"),
    OVERWRITES: ("writ", "sav", "stor", "overwrit", "replac", "redirect", "output", "dump", "truncat",
                 "empt", "creat", "put", "edit", "chang", "modif", "substitut", "updat", "insert",
                 "append", "copy", "log", "record", "print", "export"),
    SHUTDOWN: ("shut", "reboot", "restart", "halt", "power off", "poweroff"),
}
_INTENT_WORD = re.compile(r"[a-z]+(?: (?:off|rid))?")


def asked_for(reasons: list[str], intent: str) -> bool:
    """Whether every danger reason is something the intent asks for (see _ASKED)."""
    if not reasons:
        return True
    words = _INTENT_WORD.findall(intent.lower())
    for reason in reasons:
        stems = _ASKED.get(reason)
        if not stems or not any(w.startswith(st) or w == st for w in words for st in stems):
            return False
    return True


def dangers(code: str, lang: str = "bash") -> list[str]:
    """What code would destroy, as short reasons (empty when nothing)."""
    if lang == "python":
        return _python(code)
    return _bash(code, 0)


# -- bash ------------------------------------------------------------------------------------

def _bash(code: str, depth: int) -> list[str]:
    found: list[str] = []
    try:
        from nl2code.syntax import _parser

        tree = _parser("bash").parse(code.encode("utf-8", "surrogatepass"))
    except Exception:  # no grammar installed: the text patterns still apply
        tree = None
    if tree is not None:
        stack = [tree.root_node]
        while stack:
            node = stack.pop()
            if node.type == "command":
                found += _command(_words(node), depth)
            elif node.type == "file_redirect":
                found += _redirect(node)
            stack.extend(node.children)
    found += [name for name, rx in PATTERNS if rx.search(code)]
    return list(dict.fromkeys(found))


def _unquote(node) -> str:
    text = node.text.decode("utf-8", "replace")
    try:
        parts = shlex.split(text)
    except ValueError:
        return text
    return "".join(parts) if parts else text


def _words(command) -> list[str]:
    """A command's name and arguments as the shell would see them (quotes removed)."""
    words = []
    for child in command.children:
        if child.type in ("variable_assignment", "file_redirect", "herestring_redirect"):
            continue
        if child.type == "command_name" or child.is_named:
            words.append(_unquote(child))
    return words


def _strip_wrappers(words: list[str]) -> list[str]:
    """`sudo -u x nice -n 5 xargs -0 rm -rf` -> `rm -rf`."""
    while words:
        name = words[0].rsplit("/", 1)[-1]
        if name not in _WRAPPERS:
            return words
        takes_value = _WRAPPERS[name]
        i = 1
        while i < len(words):
            w = words[i]
            if name == "env" and "=" in w and not w.startswith("-"):
                i += 1
            elif name == "timeout" and re.fullmatch(r"\d+[smhd]?", w):
                i += 1
            elif w.startswith("-") and w != "-":
                i += 2 if w in takes_value else 1
            else:
                break
        words = words[i:]
    return words


def _command(words: list[str], depth: int) -> list[str]:
    words = _strip_wrappers(words)
    if not words:
        return []
    name, args = words[0].rsplit("/", 1)[-1], words[1:]
    if name in _DELETERS:
        if name == "rm" and any(a.startswith("-") and not a.startswith("--") and "r" in a.lower() for a in args) \
                and any(_ROOTISH_RX.match(a) for a in args if not a.startswith("-")):
            return [ROOT_DELETE]
        return [DELETES]
    if name.startswith("mkfs") or name in _FORMATTERS:
        return [FORMAT]
    if name in _SHUTDOWN or (name == "init" and args[:1] in (["0"], ["6"])):
        return [SHUTDOWN]
    if name == "dd":
        targets = [a[3:] for a in args if a.startswith("of=")]
        if any(_DISK.match(t) for t in targets):
            return [DISK_WRITE]
        return [OVERWRITES] if any(not _HARMLESS_DEV.match(t) for t in targets) else []
    if name == "find":
        return _find(args, depth)
    if name == "truncate":
        return [OVERWRITES]
    if name == "sed" and any(re.fullmatch(r"-[a-zA-Z]*i.*|--in-place(=.*)?", a) for a in args):
        return [OVERWRITES]
    if name == "tee" and any(not a.startswith("-") and not _HARMLESS_DEV.match(a) for a in args) \
            and not any(a in ("-a", "--append") for a in args):
        return [OVERWRITES]
    if name in _SHELLS and "-c" in args and depth < _MAX_DEPTH:
        i = args.index("-c")
        return _bash(args[i + 1], depth + 1) if i + 1 < len(args) else []
    if name == "eval" and args and depth < _MAX_DEPTH:
        return _bash(" ".join(args), depth + 1)
    return []


def _find(args: list[str], depth: int) -> list[str]:
    out = []
    if "-delete" in args:
        out.append(DELETES)
    for i, a in enumerate(args):
        if a in ("-exec", "-execdir", "-ok", "-okdir"):
            end = next((j for j in range(i + 1, len(args)) if args[j] in (";", "+", "\\;")), len(args))
            out += _command(args[i + 1 : end], depth)
    return out


def _redirect(node) -> list[str]:
    """`> file` and `>| file` overwrite it (so does `&>`); appending and /dev/null do not."""
    op = next((c.type for c in node.children if not c.is_named), "")
    if op not in (">", ">|", "&>"):
        return []
    target = next((c for c in node.children if c.is_named and c.type != "file_descriptor"), None)
    if target is None:
        return []
    path = _unquote(target)
    if _DISK.match(path):
        return [DISK_WRITE]
    if _HARMLESS_DEV.match(path) or path.startswith("&") or path == "-":
        return []
    return [SYSTEM_FILE] if _SYSTEM_FILE.match(path) else [OVERWRITES]


# -- python ----------------------------------------------------------------------------------

_PY_DELETE = {"os.remove", "os.unlink", "os.rmdir", "os.removedirs", "shutil.rmtree", "os.truncate"}
_PY_DELETE_METHODS = {"unlink", "rmdir", "rmtree"}  # Path(...).unlink(), x.rmtree()
_PY_RUN = {"os.system", "os.popen", "subprocess.call", "subprocess.run", "subprocess.Popen",
           "subprocess.check_call", "subprocess.check_output", "subprocess.getoutput",
           "subprocess.getstatusoutput", "commands.getoutput"}
_PY_RUN_PREFIX = ("os.exec", "os.spawn", "os.posix_spawn")


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _text(node) -> str | None:
    """A string constant's value; an f-string with each {...} as the word VALUE."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "VALUE" for v in node.values)
    return None


def _constant_command(args: list[ast.expr]) -> str | None:
    """The shell command a run-call's first argument spells, as far as it is constant:
    a string, or a list whose program name is a string (its other constant words kept)."""
    if not args:
        return None
    first = args[0]
    if isinstance(first, (ast.List, ast.Tuple)):
        words = [_text(e) for e in first.elts]
        if not words or words[0] is None:
            return None
        return shlex.join(w for w in words if w is not None)
    return _text(first)


def _python(code: str) -> list[str]:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    found: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name in _PY_DELETE or (isinstance(node.func, ast.Attribute) and node.func.attr in _PY_DELETE_METHODS):
            found.append(DELETES)
            continue
        command = None
        if name in _PY_RUN:
            command = _constant_command(node.args)
        elif name.startswith(_PY_RUN_PREFIX):  # os.execv(path, args), os.spawnl(mode, path, ...)
            program = next((t for t in map(_text, node.args) if t is not None), None)
            command = shlex.quote(program) if program is not None else None
        if command is not None:
            found += _bash(command, 1)
    return list(dict.fromkeys(found))
