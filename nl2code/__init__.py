"""nl2code: offline natural-language-to-code generation.

An intent goes in, code that parses comes out. The package is importable without torch;
heavy modules (model, decode, engine, train) import it lazily.
"""

__version__ = "0.1.0"
