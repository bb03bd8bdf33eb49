"""`python -m rssd ...` is the same as the `rssd` console script."""

from rssd.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
