"""The official SDK (`imagen-ai-sdk`) as a user's script drives it, for benchmarks/speed.py.

    python benchmarks/sdk_run.py upload API_URL FOLDER PROJECT_NAME [--concurrency 8]
    python benchmarks/sdk_run.py quick-edit API_URL FOLDER PROJECT_NAME PROFILE DOWNLOAD_DIR

`upload`: a new project named PROJECT_NAME, then `upload_images` of every file in FOLDER.
`quick-edit`: the SDK's whole flow, `quick_edit(download=True)`: project, upload, edit, download
of the edits into DOWNLOAD_DIR, with the SDK's own concurrency.
The benchmark times this script as a process (start to exit), as a user would feel it, and
checks what arrived in the sandbox's ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from imagen_sdk import ImagenClient, quick_edit

API_KEY = "benchmark-key"


def files(folder: Path) -> list[str | Path]:
    """The files of `folder` (not its subfolders), by name."""
    return sorted(p for p in folder.iterdir() if p.is_file())


async def upload(api_url: str, paths: list[str | Path], name: str, concurrency: int) -> None:
    """A new project and `upload_images` of the files; fails if any upload failed."""
    async with ImagenClient(API_KEY, base_url=api_url) as client:
        project = await client.create_project(name)
        summary = await client.upload_images(project, paths, max_concurrent=concurrency)
    if summary.failed:
        raise SystemExit(f"the SDK failed {summary.failed} uploads")


async def whole_flow(
    api_url: str, paths: list[str | Path], name: str, profile: int, download_dir: Path
) -> None:
    """`quick_edit` with the downloads; fails unless every edit came down."""
    result = await quick_edit(
        API_KEY,
        profile,
        paths,
        project_name=name,
        download=True,
        download_dir=download_dir,
        base_url=api_url,
    )
    if len(result.downloaded_files or []) != len(paths):
        raise SystemExit(f"the SDK downloaded {len(result.downloaded_files or [])} edits")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("upload")
    up.add_argument("--concurrency", type=int, default=8)
    flow = commands.add_parser("quick-edit")
    for command in (up, flow):
        command.add_argument("api_url")
        command.add_argument("folder", type=Path)
        command.add_argument("name")
    flow.add_argument("profile", type=int)
    flow.add_argument("download_dir", type=Path)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    if args.command == "upload":
        asyncio.run(upload(args.api_url, files(args.folder), args.name, args.concurrency))
    else:
        asyncio.run(
            whole_flow(args.api_url, files(args.folder), args.name, args.profile, args.download_dir)
        )


if __name__ == "__main__":
    main()
