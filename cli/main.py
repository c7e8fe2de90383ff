"""`mammo-tf`: the command group, its sectioned help and the one-line error contract.

Every command parses its options, calls one library function and prints.
Errors a user can fix (MammoError, bad flags, a full or read-only disk) print
one line on stderr and exit with code 2; anything else is a bug and keeps its traceback. TensorFlow is
imported only inside the commands that need it, so `--help` stays fast.
"""

from __future__ import annotations

import sys

import click

from mammo_tf import __version__
from mammo_tf.errors import MammoError, write_failure
from mammo_tf.io.quiet import quiet_tensorflow, verbose_requested

# Help sections in pipeline order; commands declare theirs with `section=`. The
# top-level help names the commands still planned for a section, so the map of
# the tool is visible from day one without pretending they exist.
SECTIONS = {
    "data": ("Data", ""),
    "train": ("Training", ""),
    "sample": ("Sampling", ""),
    "evaluate": ("Evaluation", ""),
    "export": ("Export", ""),
}


class SectionedCommand(click.Command):
    """A command that knows its help section."""

    def __init__(self, *args, section: str = "data", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.section = section


class SectionedGroup(click.Group):
    """A group whose `--help` lists commands by section, and whose errors are one line."""

    def __init__(self, *args, section: str = "data", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.section = section

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        by_section: dict[str, list[tuple[str, str]]] = {key: [] for key in SECTIONS}
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            section = getattr(command, "section", "data")
            by_section.setdefault(section, []).append((name, command.get_short_help_str(limit=70)))
        for key, rows in by_section.items():
            title, planned = SECTIONS.get(key, (key.title(), ""))
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
            elif planned and ctx.parent is None:
                with formatter.section(title):
                    formatter.write_text(f"({planned})")

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: D102
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as err:
            where = err.ctx.command_path if err.ctx else (prog_name or "mammo-tf")
            click.echo(f"{where}: {err.format_message()} (see --help)", err=True)
            sys.exit(2)
        except click.ClickException as err:
            click.echo(f"mammo-tf: {err.format_message()}", err=True)
            sys.exit(err.exit_code)
        except click.Abort:
            click.echo("mammo-tf: aborted", err=True)
            sys.exit(1)
        except Exception as err:
            # A user-fixable error, or a write that failed for lack of space, quota or permission wherever it
            # happened: one line. Anything else is a bug and keeps its traceback.
            failure = err if isinstance(err, MammoError) else write_failure(err)
            if failure is None:
                raise
            # One line whatever the message holds (a library's multi-line text must not break the contract).
            message = "; ".join(part.strip() for part in str(failure).splitlines() if part.strip())
            click.echo(f"mammo-tf: error: {message}", err=True)
            sys.exit(2)
        sys.exit(code if isinstance(code, int) else 0)


SectionedGroup.command_class = SectionedCommand
SectionedGroup.group_class = SectionedGroup


@click.group(cls=SectionedGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, "--version", prog_name="mammo-tf")
@click.option(
    "--verbose",
    is_flag=True,
    default=verbose_requested,
    show_default="off, or MAMMO_VERBOSE=1",
    help="Let TensorFlow print its own start-up and log lines (CUDA probing, CPU features) on stderr.",
)
def cli(verbose: bool) -> None:
    """GAN super-resolution and synthesis for calcifications in mammograms.

    Without --data (or MAMMO_DATA), commands use a small synthetic phantom
    dataset, generated once and cached, so every command runs with no set-up.
    """
    if not verbose:
        quiet_tensorflow()


def _register() -> None:
    from mammo_tf_cli.data import data
    from mammo_tf_cli.evaluate import evaluate_aug, evaluate_sr, ship, ship_sr
    from mammo_tf_cli.export import export
    from mammo_tf_cli.gan import evaluate_gan, synth, train_gan
    from mammo_tf_cli.insert import evaluate_insert, insert, train_insert
    from mammo_tf_cli.sample import detect, upscale
    from mammo_tf_cli.train import train_classifier, train_sr

    cli.add_command(data)
    commands = (
        ("train", train_sr),
        ("train", train_gan),
        ("train", train_classifier),
        ("train", train_insert),
        ("sample", upscale),
        ("sample", synth),
        ("sample", insert),
        ("sample", detect),
        ("evaluate", evaluate_sr),
        ("evaluate", evaluate_gan),
        ("evaluate", evaluate_aug),
        ("evaluate", evaluate_insert),
        ("export", ship_sr),
        ("export", ship),
        ("export", export),
    )
    for section, command in commands:
        command.section = section  # set here: the command modules do not import this one back
        cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="mammo-tf")


if __name__ == "__main__":
    main()
