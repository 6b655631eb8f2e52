"""``python -m mrihisto_kedro.metrics.weights``: the ``mrihisto-weights`` command."""

from mrihisto_kedro.metrics.weights.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
