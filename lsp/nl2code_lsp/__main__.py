"""`python -m nl2code_lsp`: the same as the `nl2code-lsp` console script."""

from nl2code_lsp.server import main

if __name__ == "__main__":
    main()
