"""``manage.py compile_contracts``: compile contracts/src into contracts/build/*.json.

``--check`` compiles and compares instead of writing, and exits 1 naming what is out of date (CI and
the tests use it to catch a source edited without a rebuild). Compiler errors come out as
``file:line: Type: message`` lines and exit 1, never a traceback.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from marketplace.chain import build


class Command(BaseCommand):
    help = "Compile contracts/src (solc 0.8.28, foundry.toml's settings) into contracts/build/<Contract>.json."
    requires_system_checks: list[str] = []  # compiling needs neither the database nor the chain settings

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--check", action="store_true",
                            help="write nothing; exit 1 if contracts/build differs from a fresh compile")
        parser.add_argument("--build-dir", type=Path, default=build.BUILD_DIR,
                            help="where the artifacts go (default: contracts/build)")

    def handle(self, *args: Any, check: bool, build_dir: Path, **options: Any) -> None:
        try:
            artifacts = build.compile_contracts()
        except build.BuildError as exc:
            raise CommandError(f"compiling the contracts failed:\n{exc}") from None
        if check:
            problems = build.build_differences(artifacts, build_dir)
            if problems:
                raise CommandError(build.describe(problems))
            self.stdout.write(f"{build_dir} is up to date ({len(artifacts)} artifacts)")
            return
        for path in build.write_build(build_dir, artifacts):
            self.stdout.write(f"wrote {path}")
