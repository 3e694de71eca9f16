"""``zvonok bench``: the load generator and measurement of what the SFU costs (client side only).

Owns nothing at import time; ``runner.run_bench`` is the entry point the CLI calls. The server
package never imports this package. Implements no RFC by itself (see ``client`` for the WebRTC
subset the generator speaks).
"""
