"""``python -m einforge``: the command line."""

from einforge.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
