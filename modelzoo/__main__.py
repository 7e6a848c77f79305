"""``python -m modelzoo``: the ``modelzoo`` command."""

from modelzoo.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
