"""The terminal: `teambot ask` and `teambot chat` talk to the core through this adapter.

`reply.py` is its ReplyChannel (the answer growing in place, then its sources) and the tidy
warning lines shown after an answer.
"""
