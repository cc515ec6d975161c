"""Score one (query, document) pair through a running app.

lychee load --demo            # or: lychee load --model /models/lychee-rerank-mm
python examples/score_pair.py [--url http://127.0.0.1:7860/]
"""

import argparse
from pathlib import Path

from gradio_client import Client, handle_file

ASSETS = Path(__file__).resolve().parent.parent / "lychee_gradio" / "assets"  # the sample files the app ships

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--url", default="http://127.0.0.1:7860/")
args = parser.parse_args()

client = Client(args.url, verbose=False)
markdown, details = client.predict(
    query_text="white ceramic coffee cup with a minimalist mountain line pattern",
    document_text="北欧风手绘山形白瓷咖啡杯,高温釉下彩工艺,容量350ml",
    document_image=handle_file(ASSETS / "images" / "mountain_cup.png"),
    api_name="/score",
)
print(
    f"score {details['score']:.3f} ({details['verdict']}), "
    f"logit(yes) {details['yes_logit']:.3f}, logit(no) {details['no_logit']:.3f}"
)
