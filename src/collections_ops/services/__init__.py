"""What the commands do. Each function takes its collaborators (clients, connections) and
returns plain data or yields events; rendering is the CLI's job."""
