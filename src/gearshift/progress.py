"""Progress bars for long work, as callbacks the library can call without knowing about rich."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

StepCallback = Callable[[int, int, str], None]
"""progress(done, total, message): `done` of `total` steps finished; `message` says what now."""


@contextmanager
def step_progress(console: Console, title: str) -> Iterator[StepCallback]:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[message]}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(title, total=None, message="")

        def update(done: int, total: int, message: str) -> None:
            bar.update(task, completed=done, total=total, message=message)

        yield update


@contextmanager
def stages(console: Console) -> Iterator[Callable[[str], StepCallback]]:
    """One bar per stage of a long job: `stage(title)` adds a bar and returns its callback."""
    columns = (
        TextColumn("[bold]{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[message]}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:

        def stage(title: str) -> StepCallback:
            task = bar.add_task(title, total=None, message="")

            def update(done: int, total: int, message: str) -> None:
                bar.update(task, completed=done, total=total, message=message)

            return update

        yield stage
