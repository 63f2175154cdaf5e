"""Takes a shoot folder through Imagen and back, and never loses its place."""

DISTRIBUTION = "shoot-orchestrator"
"""The name it is installed by (`pipx install shoot-orchestrator`): `orchestrator` on the
package index is another project's. The import package and the command keep this one's name."""
