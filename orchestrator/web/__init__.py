"""The studio's web page, served by `orchestrator daemon` at `/` and by `orchestrator ui`."""
