"""``python -m fedsilo``: the same app as the ``fedsilo`` command (and ``python -m fedsilo.cli``)."""

from fedsilo.cli.app import main

main()
