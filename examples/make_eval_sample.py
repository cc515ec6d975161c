"""Build the sample evaluation set: lychee_gradio/assets/eval/sample.jsonl, its shape images, and images.zip.

Drawn and written by this project (free to use). Shapes and colours make the relevance plain to a
person; the first-stage order deliberately puts relevant documents low, as a weak first stage would.
With the tiny random model the metrics are meaningless; with real weights they are the point.
"""

import json
import zipfile
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent.parent / "lychee_gradio" / "assets" / "eval"
SIZE = 160
COLOURS = {"red": (215, 40, 40), "blue": (40, 80, 210), "green": (40, 160, 70), "yellow": (235, 200, 40)}


def draw(shape: str, colour: str) -> str:
    image = Image.new("RGB", (SIZE, SIZE), (245, 245, 240))
    pen = ImageDraw.Draw(image)
    fill, box = COLOURS[colour], (30, 30, SIZE - 30, SIZE - 30)
    if shape == "circle":
        pen.ellipse(box, fill=fill)
    elif shape == "square":
        pen.rectangle(box, fill=fill)
    else:
        pen.polygon([(SIZE // 2, 25), (SIZE - 25, SIZE - 30), (25, SIZE - 30)], fill=fill)
    name = f"images/{colour}_{shape}.png"
    image.save(HERE / name)
    return name


def main() -> None:
    (HERE / "images").mkdir(exist_ok=True)
    img = {f"{c} {s}": draw(s, c) for c in COLOURS for s in ("circle", "square", "triangle")}
    lines = [
        # text query -> image documents (binary)
        {
            "query": "a red circle",
            "documents": [
                {"image": img["blue square"]},
                {"image": img["green triangle"]},
                {"image": img["red square"]},
                {"image": img["red circle"]},
                {"image": img["yellow circle"]},
            ],
            "relevant": [3],
        },
        {
            "query": "a blue shape with four equal sides",
            "documents": [
                {"image": img["blue circle"]},
                {"image": img["red square"]},
                {"image": img["green square"]},
                {"image": img["blue triangle"]},
                {"image": img["blue square"]},
            ],
            "relevant": [4],
        },
        {
            "query": "一个绿色的三角形",
            "documents": [
                {"image": img["green circle"]},
                {"image": img["yellow triangle"]},
                {"image": img["green square"]},
                {"image": img["green triangle"]},
            ],
            "relevant": [3],
        },
        # image query -> text documents (binary, two relevant)
        {
            "query": {"image": img["yellow circle"]},
            "documents": [
                "a red triangle",
                "a blue square",
                "a yellow disc on a light background",
                "黄色的圆形",
                "a green circle",
            ],
            "relevant": [2, 3],
        },
        # image query -> mixed documents (graded: exact 2, partly 1)
        {
            "query": {"image": img["red triangle"]},
            "documents": [
                "a green square",
                {"image": img["red circle"]},
                {"text": "red triangle", "image": img["red triangle"]},
                "a triangle, colour unknown",
                {"image": img["blue triangle"]},
            ],
            "labels": [0, 1, 2, 1, 1],
        },
        # product descriptions (graded), with the e-commerce instruction
        {
            "query": "white ceramic coffee cup with a minimalist mountain line pattern",
            "instruction": "Given a product search query, rank products by how well they match the user's "
            "requirements for color, pattern and material.",
            "documents": [
                "不锈钢真空保温旅行杯,双层设计,500ml,防漏硅胶圈",
                "经典红色陶瓷马克杯,亮光釉面,400ml",
                "白色简约陶瓷咖啡杯碟套装,纯色无图案,200ml",
                "北欧风手绘山形白瓷咖啡杯,高温釉下彩工艺,容量350ml",
                "White porcelain mug with a hand-drawn mountain line pattern, 300 ml",
                "Ceramic dinner plate, white, with a minimalist mountain line print",
            ],
            "labels": [0, 0, 1, 2, 2, 1],
        },
        {
            "query": "保温杯 500ml 不锈钢",
            "documents": [
                "北欧风手绘山形白瓷咖啡杯,容量350ml",
                "双层玻璃拿铁杯,耐热高硼硅,250ml",
                "Insulated stainless steel tumbler with lid, 20 oz",
                "不锈钢真空保温旅行杯,双层设计,500ml,防漏硅胶圈",
                "儿童卡通塑料水杯,带吸管,450ml",
            ],
            "labels": [0, 0, 1, 2, 0],
        },
        # a query whose first stage found nothing relevant: it scores 0 before and after
        {"query": "a purple hexagon", "documents": [{"image": img["red circle"]}, {"image": img["blue square"]}], "relevant": []},
    ]
    with (HERE / "sample.jsonl").open("w", encoding="utf-8") as out:
        for line in lines:
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    # The same images as a zip, for the app's Evaluate tab (paths relative to the zip's root).
    with zipfile.ZipFile(HERE / "images.zip", "w") as bundle:
        for path in sorted((HERE / "images").glob("*.png")):
            bundle.write(path, f"images/{path.name}")


if __name__ == "__main__":
    main()
