"""One module per command group. Each defines `app` (a typer app); `cli/app.py` registers it
with one line. A module stays import-light: heavy modules are imported inside commands."""
