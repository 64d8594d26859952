"""A small deny-list of destructive shell patterns.

nl2code never executes generated code. Still, a user may paste a suggestion into a shell,
so bash candidates that match these patterns are flagged (`danger` in --json, a warning on
stderr) and ranked last. The list is deliberately short and specific: false alarms on
ordinary commands (`rm -rf ./build`, `dd if=a of=b`) would train users to ignore it.
"""

from __future__ import annotations

import re

# each may end in /* (`rm -rf ~/*` empties the folder just as `rm -rf ~` removes it)
_ROOTISH = r"""(?:/\*?|(?:~|\$HOME|/(?:bin|boot|dev|etc|home|lib|lib64|opt|root|sbin|srv|usr|var))/?\*?)"""

PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("recursive delete of / or a system folder",
     re.compile(rf"""\brm\s+(?:-[a-zA-Z]*\s+)*-[a-zA-Z]*[rR][a-zA-Z]*\s+(?:-[a-zA-Z-]+\s+)*['"]?{_ROOTISH}['"]?(?:\s|$|;|&|\|)""")),
    ("rm --no-preserve-root", re.compile(r"--no-preserve-root")),
    ("filesystem format (mkfs)", re.compile(r"\bmkfs(?:\.\w+)?\b")),
    ("raw write to a disk device (dd of=/dev/...)", re.compile(r"\bdd\b[^|;&]*\bof=/dev/(?!null\b|zero\b|stdout\b|stderr\b)")),
    ("redirect onto a disk device", re.compile(r">\s*/dev/(?:sd[a-z]|nvme\d|hd[a-z]|vd[a-z]|xvd[a-z]|mmcblk\d)")),
    ("download piped into a shell", re.compile(r"\b(?:curl|wget)\b[^|;&]*\|\s*(?:sudo\s+)?(?:ba|z|da|k)?sh\b")),
    ("fork bomb", re.compile(r":\s*\(\s*\)\s*\{\s*:\s*\|\s*:\s*&\s*\}\s*;\s*:")),
    ("recursive chmod 777 of / or a system folder",
     re.compile(rf"\bchmod\s+(?:-[a-zA-Z]*\s+)*-[a-zA-Z]*R[a-zA-Z]*\s+(?:0?777|a\+rwx)\s+{_ROOTISH}(?:\s|$|;)")),
    ("recursive chown of /", re.compile(r"\bchown\s+(?:-[a-zA-Z]*\s+)*-[a-zA-Z]*R[a-zA-Z]*\s+\S+\s+/(?:\s|$|;)")),
    ("overwrite of a system file", re.compile(r">\s*/etc/(?:passwd|shadow|sudoers|fstab)\b")),
]


def dangers(code: str) -> list[str]:
    """Names of the destructive patterns that code matches (empty when none)."""
    return [name for name, rx in PATTERNS if rx.search(code)]
