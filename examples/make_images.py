"""Draw the sample product images in lychee_gradio/assets/images/ (run once; the PNGs are committed).

Drawn by this project with Pillow, so they are free to use: simple cups, mugs and a plate, two
of them with the minimalist mountain line pattern of the coffee-cup example (docs/design.md).
"""

from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 256
OUT = Path(__file__).resolve().parent.parent / "lychee_gradio" / "assets" / "images"


def canvas(background=(236, 236, 232)):
    image = Image.new("RGB", (SIZE, SIZE), background)
    return image, ImageDraw.Draw(image)


def mountains(draw, left, right, base, height, colour=(40, 40, 40)):
    step = (right - left) / 6
    points = [(left + i * step, base - (height if i % 2 else 0) * (0.6 if i in (1, 5) else 1)) for i in range(7)]
    draw.line(points, fill=colour, width=3, joint="curve")


def mug(draw, body, handle_colour, body_colour):
    x0, y0, x1, y1 = body
    draw.ellipse((x1 - 22, y0 + 30, x1 + 32, y1 - 40), outline=handle_colour, width=10)
    draw.rounded_rectangle(body, radius=18, fill=body_colour, outline=(90, 90, 90), width=2)


def main():
    OUT.mkdir(parents=True, exist_ok=True)

    image, draw = canvas()
    mug(draw, (60, 60, 180, 210), (250, 250, 250), (250, 250, 250))
    mountains(draw, 72, 168, 150, 40)
    image.save(OUT / "mountain_cup.png")

    image, draw = canvas((220, 226, 232))
    draw.rounded_rectangle((90, 30, 166, 226), radius=14, fill=(178, 184, 190), outline=(110, 115, 120), width=3)
    draw.rectangle((86, 30, 170, 56), fill=(60, 60, 64))
    image.save(OUT / "steel_tumbler.png")

    image, draw = canvas()
    mug(draw, (60, 70, 180, 210), (30, 70, 170), (40, 90, 200))
    image.save(OUT / "blue_mug.png")

    image, draw = canvas((245, 240, 230))
    mug(draw, (60, 70, 180, 210), (180, 30, 30), (210, 40, 40))
    image.save(OUT / "red_mug.png")

    image, draw = canvas((200, 210, 200))
    draw.ellipse((28, 68, 228, 188), fill=(252, 252, 252), outline=(150, 150, 150), width=3)
    mountains(draw, 70, 186, 140, 30)
    image.save(OUT / "mountain_plate.png")

    image, draw = canvas()
    draw.polygon([(80, 50), (176, 50), (160, 216), (96, 216)], fill=(214, 236, 242), outline=(120, 160, 175))
    draw.rectangle((92, 140, 164, 214), fill=(120, 72, 40))
    image.save(OUT / "glass_latte.png")


if __name__ == "__main__":
    main()
