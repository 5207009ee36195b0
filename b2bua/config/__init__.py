"""Parameters, their registry and the live view the engine reads."""
