"""A thread's life: escalation rules and wording (`escalation.py`), the transitions after the
first answer (`lifecycle.py`: clicks, escalate, take, resolve, and the asker's window where a
platform has no threads) and a late mention's thread context (`context.py`)."""
