"""The terminal: `teambot ask` and `teambot chat` talk to the core through this adapter.

`convert.py` turns a typed line into an `Inbound`; `reply.py` is its ReplyChannel (the answer
growing in place, then its sources) and the tidy warning lines shown after an answer. It runs
in the CLI's own process, so it has no place in the platform registry (nothing to serve).
"""
