"""``python -m services.cli``: the same as the ``zeroerrand`` command."""

from services.cli import main

main()
