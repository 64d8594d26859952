"""The `nl2code` group: `nl2code "intent"` needs no subcommand, and --help shows its options.

`nl2code INTENT` routes to the hidden `generate` command (nl2code.cli.generate); the root
--help lists generate's options (-n, -l, --json, --batch ...) next to the commands, since
that is what usage errors point to. `nl2code help [COMMAND]` is help, not an intent.
"""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

from nl2code import __version__

GROUP_OPTS = {"--help", "-h", "--version", "-V", "--install-completion", "--show-completion"}


class DefaultGroup(TyperGroup):
    """Route `nl2code "intent"` (no subcommand) to the hidden `generate` command."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args[:2] == ["train", "report"]:  # `train` takes a config path; its one subcommand
            args = ["train-report", *args[2:]]
        if args[:1] == ["help"]:  # `nl2code help [COMMAND]`; an intent "help" needs `nl2code -- help`
            args = [args[1], "--help"] if len(args) == 2 and args[1] in self.commands else ["--help"]
        if not args:
            if not sys.stdin.isatty():
                args = ["generate"]
        elif args[0] not in self.commands and args[0] not in GROUP_OPTS:
            args = ["generate", *args]
        return super().parse_args(ctx, args)

    def format_help(self, ctx, formatter) -> None:
        """Usage, the intent's options (generate's), then the group's options and commands."""
        formatter.write_usage(ctx.command_path, "[OPTIONS] INTENT")
        formatter.write_usage(ctx.command_path, "COMMAND [ARGS]...", prefix="   or: ")
        self.format_help_text(ctx, formatter)
        generate = self.commands.get("generate")
        if generate is not None:
            records = [rec for p in generate.get_params(ctx)
                       if p.param_type_name == "option" and p.name != "help" and (rec := p.get_help_record(ctx))]
            with formatter.section("Generating (nl2code [OPTIONS] INTENT; stdin when no INTENT)"):
                formatter.write_dl(records)
        self.format_options(ctx, formatter)  # the group's own options, then the commands
        self.format_epilog(ctx, formatter)

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        """Usage errors as one `nl2code: error:` line (exit 2) instead of click's block."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        # typer vendors click since 0.26; its exception classes live in typer._click
        from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError as ClickUsage

        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except ClickUsage as exc:
            message = " ".join(exc.format_message().split())
            sys.stderr.write(f"nl2code: error: {message} (see nl2code --help)\n")
            sys.exit(2)
        except ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except typer.Abort:
            sys.stderr.write("nl2code: error: interrupted\n")
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=DefaultGroup,
    help='Offline natural language to code.  nl2code "read csv file \'a.csv\'"',
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Build training corpora from recipes.", no_args_is_help=True)
model_app = typer.Typer(help="Inspect models.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")


def _version(value: bool):
    if value:
        typer.echo(f"nl2code {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
):
    """Offline natural language to code: `nl2code "intent"` prints a snippet that parses."""
