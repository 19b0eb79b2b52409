"""The command line's shared flags: one spelling per concept, nnU-Net's own (``-d -c -tr -p -f -device``), with the
long forms earlier versions of each subcommand took kept as aliases so that nothing a user typed breaks.

Each concept is a parent parser (:func:`nnunet_flags`) that a subcommand includes; what differs between
subcommands (one value or several, a default, required or not) is given where the subcommand includes it.
"""

from __future__ import annotations

import argparse
from typing import Any

#: concept -> its flags: nnU-Net's first, then the long aliases; ``dest`` of the parsed value
FLAGS: dict[str, tuple[tuple[str, ...], str]] = {
    "dataset": (("-d", "--dataset-id", "--dataset_id"), "dataset_id"),
    "configuration": (("-c", "--configuration", "--configurations", "--config"), "configurations"),
    "trainer": (("-tr", "--trainer", "--trainers"), "trainers"),
    "plans": (("-p", "--plans"), "plans"),
    "fold": (("-f", "--fold", "--folds"), "folds"),
    "device": (("-device", "--device"), "device"),
}


def nnunet_flags(**concepts: dict[str, Any]) -> argparse.ArgumentParser:
    """A parent parser with the flags of each named concept of :data:`FLAGS`, each given its ``add_argument``
    options (``nargs``, ``default``, ``required``, ``help``, ...; ``aliases``: extra flags this subcommand keeps
    for the concept, ``dest``: where the value goes when not the concept's usual place)."""
    parent = argparse.ArgumentParser(add_help=False)
    for concept, options in concepts.items():
        flags, dest = FLAGS[concept]
        options = dict(options)
        aliases = tuple(options.pop("aliases", ()))
        parent.add_argument(*flags, *aliases, dest=options.pop("dest", dest), **options)
    return parent
