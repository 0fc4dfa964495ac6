"""``python -m stream`` is the ``sentiment-monitor`` command."""

from stream.entry import main

main()
