"""The typer commands: parse options, get collaborators from the context, call one service,
render the result."""
