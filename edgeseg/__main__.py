"""``python -m edgeseg``: the same CLI as the ``edgeseg`` command."""

from edgeseg.cli import main

main()
