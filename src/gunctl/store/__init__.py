"""The session history: what was worked, for how long, and how each session ended.

``gunctl.store.history`` holds the SQLite store; it is imported on first use so
that commands which never touch the history start without it.
"""
