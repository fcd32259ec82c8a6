"""The operator's knowledge commands, in one place.

`changes.py` holds each change once (ingest, refresh, add, remove a source); `commands.py` runs
them for the CLI, sending them to the running server through `admin.py` (the loopback admin API
and the server's hold on an embedded data folder) or running them in its own process;
`evaluate.py` is `teambot eval`; `catalog.py` says whether there is a catalog to list at all.
Nothing here imports the console or the server: they import this.
"""
