"""The Dashboard: the farm's web interface, a separate process in front of the Server's API.

The browser talks only to the Dashboard. Each login's API token stays in the Dashboard's
memory (`sessions.py`), the pages' data comes from the Server's API through `upstream.py`,
and the Server's live events are relayed to each page as server-sent events.
"""
