"""A thread's life: escalation rules and wording (`escalation.py`), the transitions after the
first answer (`lifecycle.py`: escalate, take, resolve, feedback, the windows of platforms without
threads) and a late mention's thread context (`context.py`)."""
