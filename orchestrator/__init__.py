"""Takes a shoot folder through Imagen and back, and never loses its place."""
