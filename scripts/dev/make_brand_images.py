"""Draw the brand icons: `python -m scripts.dev.make_brand_images` (the PNGs are committed)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

BRAND_DIR = Path(__file__).resolve().parents[2] / "custom_components" / "bitcoin_mining" / "brand"
ORANGE = (247, 147, 26, 255)
WHITE = (255, 255, 255, 255)


def draw_icon(size: int) -> Image.Image:
    """An orange disc with a white lightning bolt over a stylised container."""
    scale = size / 256
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((4 * scale, 4 * scale, 252 * scale, 252 * scale), fill=ORANGE)
    # The container: a white rounded box with ribs.
    draw.rounded_rectangle(
        (52 * scale, 150 * scale, 204 * scale, 200 * scale), radius=8 * scale, fill=WHITE
    )
    for x in range(70, 200, 22):
        draw.rectangle(((x) * scale, 158 * scale, (x + 6) * scale, 192 * scale), fill=ORANGE)
    # The bolt: grid power feeding the site.
    bolt = [(142, 40), (92, 118), (124, 118), (108, 140), (164, 96), (132, 96), (152, 40)]
    draw.polygon([(x * scale, y * scale) for x, y in bolt], fill=WHITE)
    return image


def main() -> None:
    """Write icon.png (256) and icon@2x.png (512)."""
    BRAND_DIR.mkdir(parents=True, exist_ok=True)
    draw_icon(256).save(BRAND_DIR / "icon.png", optimize=True)
    draw_icon(512).save(BRAND_DIR / "icon@2x.png", optimize=True)


if __name__ == "__main__":
    main()
