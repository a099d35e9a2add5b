"""``python -m fedsilo.cli``: the same app as the ``fedsilo`` command."""

from fedsilo.cli.app import main

main()
