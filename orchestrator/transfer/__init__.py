"""Presigned uploads and downloads: streamed, verified, atomic, retried, globally limited."""
