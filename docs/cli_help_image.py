"""Write ``docs/images/cli-help.svg``: ``interlock --help`` as a terminal
shows it, rendered by rich (the library that formats the help).

    .venv/bin/python docs/cli_help_image.py     (or: make screenshots)
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

OUT = Path(__file__).resolve().parent / "images" / "cli-help.svg"
WIDTH = 100


def main() -> int:
    env = {**os.environ, "COLUMNS": str(WIDTH), "FORCE_COLOR": "1", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    shown = subprocess.run(
        [sys.executable, "-m", "interlock", "--help"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    console = Console(record=True, width=WIDTH, file=io.StringIO(), force_terminal=True)
    console.print(Text.from_ansi(shown))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    svg = console.export_svg(title="interlock --help")
    # rich names a web font as a fallback; the image loads nothing from elsewhere.
    OUT.write_text(re.sub(r',\s*url\("https?://[^"]*"\) format\("[^"]*"\)', "", svg))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
