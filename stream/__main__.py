"""``python -m stream`` is the ``sentiment-monitor`` command."""

from stream.cli import main

main()
