"""Start the app: `python launch.py [--model PATH_OR_ID] [--port 7860] [--demo] ...` (the flags of `lychee load`)."""

import sys

from lychee_gradio.cli import main

if __name__ == "__main__":
    sys.exit(main(["load", *sys.argv[1:]]))
