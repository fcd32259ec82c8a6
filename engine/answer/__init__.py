"""Composing one answer: the `Turn` every step of the core takes and the `Grounds` the model is
asked with (`turn.py`), the prompt and its token budget (`prompt.py`, `budget.py`), the
follow-up rewrite (`followup.py`), reading attachments (`attachments.py`), collecting the
model's stream (`stream.py`), the answer's parts (`compose.py`) and the rule that an answer
always ends (`ending.py`). Knows nothing of threads' lifecycle."""
