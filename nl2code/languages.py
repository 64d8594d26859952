"""The ground floor: what nl2code knows about each target language, in one table.

Every other module reads language facts from here (names, aliases, the tag token the model
sees, the tree-sitter grammar, comment prefixes, which checks apply, the highlighter's
lexer), together with the tokenizer's special token ids and the slot placeholders. This
module imports nothing from nl2code but errors, so any part of the house may import it.

Adding a language: one `Language(...)` line below, its grammar wheel in pyproject.toml, and
a model trained with examples in it (the tag token must be in the tokenizer's vocabulary).
"""

from __future__ import annotations

from dataclasses import dataclass

from nl2code.errors import UsageError

# Special token ids shared by the tokenizer, the model and the decoder.
PAD, UNK, BOS, EOS = 0, 1, 2, 3

# Slot placeholders (nl2code.slots): single vocabulary pieces, plain identifiers.
MAX_SLOTS = 10
VAR_PREFIX = "var_"
STR_PREFIX = "str_"
PLACEHOLDERS = [f"{VAR_PREFIX}{i}" for i in range(MAX_SLOTS)] + [
    f"{STR_PREFIX}{i}" for i in range(MAX_SLOTS)
]


@dataclass(frozen=True)
class Language:
    name: str  # canonical name, as in --lang, config.json "languages" and Example.lang
    grammar: str  # tree-sitter grammar module (exposes language())
    aliases: tuple[str, ...] = ()  # other spellings: editor languageIds, file kinds
    comment: str = "#"  # line-comment prefix (the language server reads intents from these)
    not_intents: tuple[str, ...] = ()  # comment openings that are never intents
    compile_check: bool = False  # also ask Python's own compiler (tree-sitter accepts too much)
    repair: bool = False  # offer bracket-balanced variants of near misses
    danger_check: bool = False  # judge candidates for destructive actions (nl2code.safety)
    quote_slots: bool = False  # quote a bare string slot that would be wrong code (slots.restore)
    lexer: str = "text"  # the highlighter's (pygments) lexer name

    @property
    def tag(self) -> str:
        """The token that starts the model's source and names the target language."""
        return f"<{self.name}>"


REGISTRY: dict[str, Language] = {lang.name: lang for lang in (
    Language("python", "tree_sitter_python", aliases=("py", "python3"),
             not_intents=("#!", "# -*-", "# type:", "# noqa", "# pragma", "# fmt:"),
             compile_check=True, repair=True, danger_check=True, quote_slots=True, lexer="python"),
    Language("bash", "tree_sitter_bash", aliases=("sh", "shell", "shellscript", "zsh"),
             not_intents=("#!", "# shellcheck"), danger_check=True, lexer="bash"),
    Language("javascript", "tree_sitter_javascript", aliases=("js",), comment="//",
             not_intents=("//#", "// @ts-", "// eslint", "//!"), lexer="javascript"),
)}

# The order of the tag tokens in the vocabulary: fixed, because trained tokenizers hold them.
LANGUAGES: tuple[str, ...] = tuple(REGISTRY)
LANG_TAGS: list[str] = [REGISTRY[name].tag for name in LANGUAGES]
ALIASES: dict[str, str] = {alias: lang.name for lang in REGISTRY.values() for alias in lang.aliases}


def lookup(name: str) -> Language | None:
    """The language a name or alias (any case) stands for, or None."""
    if not isinstance(name, str):
        return None
    key = name.strip().lower()
    return REGISTRY.get(ALIASES.get(key, key))


def canonical_lang(lang: str, known: list[str] | tuple[str, ...] | None = None) -> str:
    """The canonical name for lang; a UsageError naming the choices when it is unknown.

    known narrows the choices (e.g. to the languages a loaded model was trained on).
    """
    found = lookup(lang)
    if found is None:
        choices = sorted(known) if known is not None else sorted(LANGUAGES)
        raise UsageError(f"unknown language {lang!r}: choose one of {', '.join(choices)}")
    if known is not None and found.name not in known:
        raise UsageError(f"this model was not trained for {found.name}: it knows {', '.join(known)}")
    return found.name


def get(name: str) -> Language:
    """The Language for a canonical name or alias (UsageError when unknown)."""
    return REGISTRY[canonical_lang(name)]
