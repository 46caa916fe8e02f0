"""Reports: request records -> metrics, figures and one HTML page.

`frame` reads records into numpy columns; `control_log` reads control logs and derives
variant-over-time segments; `summary` computes per-policy metrics and the summary.json document;
`compare` checks the simulator against live runs; `figures` (matplotlib) and `html` render them.
Nothing here imports `serving` or a web library; `figures` is the only module that needs
matplotlib's pyplot, so import it explicitly.
"""
