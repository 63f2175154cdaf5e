"""Imagen's API as typed Python: the client, its models and errors, and the file-type rules."""
