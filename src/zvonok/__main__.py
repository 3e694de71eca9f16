"""``python -m zvonok``: the same command as ``zvonok``; also the serving image ``zvonok serve``
execs into (``node``: ``serve --settings-fd N``), which must not import the CLI. No RFC."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from .node import is_handover

    if is_handover(sys.argv[1:]):
        from .node import main as serve_handed_over

        serve_handed_over(sys.argv[1:])
    else:
        from .cli import main

        main()
