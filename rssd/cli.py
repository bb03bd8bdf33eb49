"""The ``rssd`` command line: thin subcommands over the functions the notebooks use.

Each subcommand has an ``_add_<name>(subparsers)`` function that declares its arguments and sets ``func`` to a
handler; handlers import what they need lazily so that ``rssd --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys


def _cmd_priors(args: argparse.Namespace) -> int:
    from rssd.priors import PRIOR_SPECS, make_priors

    spec = PRIOR_SPECS[args.name]
    priors = make_priors(args.name)
    print(f"{args.name}: input {spec.image_size}px, {priors.shape[0]} priors")
    print(f"{'map':>5} {'size':>5} {'step':>6} {'min':>7} {'max':>7} {'boxes/cell':>10} {'priors':>7}")
    for k, f in enumerate(spec.feature_maps):
        b = spec.boxes_per_cell[k]
        print(
            f"{k:>5} {f:>5} {spec.steps[k]:>6g} {spec.min_sizes[k]:>7g} {spec.max_sizes[k]:>7g} {b:>10} {f * f * b:>7}"
        )
    return 0


def _add_priors(sub: argparse._SubParsersAction) -> None:
    from rssd.priors import PRIOR_SPECS

    p = sub.add_parser("priors", help="print the default-box layout of a model")
    p.add_argument("--name", default="ssd300", choices=sorted(PRIOR_SPECS))
    p.set_defaults(func=_cmd_priors)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rssd", description="SSD with Repulsion Loss.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in (_add_priors,):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
