"""Rerank the ten coffee-cup descriptions against an image query, through a running app.

python examples/rerank_texts.py [--url http://127.0.0.1:7860/] [--top-n 5]
"""

import argparse
from pathlib import Path

from gradio_client import Client, handle_file

ASSETS = Path(__file__).resolve().parent.parent / "lychee_gradio" / "assets"  # the sample files the app ships

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--url", default="http://127.0.0.1:7860/")
parser.add_argument("--top-n", type=int, default=0, help="0 = all")
args = parser.parse_args()

documents = (ASSETS / "data" / "cups.txt").read_text(encoding="utf-8")  # blocks separated by '---' lines
client = Client(args.url, verbose=False)
table, results = client.predict(
    query_image=handle_file(ASSETS / "images" / "mountain_cup.png"),
    documents=documents,
    instruction="Given a product image and description, determine if the description accurately reflects "
    "the visual features and key attributes of the product.",
    top_n=args.top_n,
    api_name="/rerank",
)
print(table)
best = results[0]
print(f"\nbest: input #{best['index'] + 1} with {best['score']:.3f}: {best['text']}")
