"""The front/worker split of one node (shared design ``cluster.md`` §5).

``frames`` (the wire values), ``link`` (one ordered, acknowledged, request/notify channel over a
stream), ``worker`` (a media worker process: rooms and media behind a link), ``front`` (the
HTTP process: spawns and watches workers, places rooms, relays sessions).
"""
