"""The wire between coordinator and parties: messages, error faults, and :func:`serve`.

``messages``: :class:`Message` (JSON header + safetensors arrays), :class:`TaskKind`,
:class:`Fault`. ``serve``: one route table per party role -> the party's bytes handler.
"""
