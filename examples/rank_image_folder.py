"""Rank every image of a folder against a text query, through a running app.

python examples/rank_image_folder.py "a white cup with mountains" [FOLDER] [--url ...] [--top-n 5]
"""

import argparse
from pathlib import Path

from gradio_client import Client, handle_file

ASSETS = Path(__file__).resolve().parent.parent / "lychee_gradio" / "assets"  # the sample files the app ships
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"}

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("query")
parser.add_argument("folder", nargs="?", type=Path, default=ASSETS / "images")
parser.add_argument("--url", default="http://127.0.0.1:7860/")
parser.add_argument("--top-n", type=int, default=0, help="0 = all")
args = parser.parse_args()

paths = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
client = Client(args.url, verbose=False)
_, results = client.predict(
    query_text=args.query, images=[handle_file(p) for p in paths], top_n=args.top_n, api_name="/rank_images"
)
for row in results:
    print(f"{row['rank']:>3}  {row['score']:.3f}  {paths[row['index']]}")
