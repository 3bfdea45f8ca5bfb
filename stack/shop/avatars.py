"""Avatars: a deterministic identicon (SVG) per name, as a signup page shows before a photo.

``render(name)`` costs some CPU (a hash, then 12×12 cells of markup) and returns ~10 KB of
text: worth remembering, which is what lab 01's ``avatar_cache`` exercise does — and where
an unbounded memo becomes a memory leak.
"""

import hashlib

CELLS = 12      # the grid is CELLS × CELLS, mirrored left to right
CELL_PX = 8


def render(name: str) -> str:
    """The SVG markup of ``name``'s avatar: the same name always gives the same picture."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()
    digest += hashlib.sha256(digest).digest()          # 64 bytes: enough bits for half the grid
    hue = int.from_bytes(digest[:2], "big") % 360
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{CELLS * CELL_PX}" height="{CELLS * CELL_PX}" '
             f'viewBox="0 0 {CELLS * CELL_PX} {CELLS * CELL_PX}">',
             f'<title>{_escaped(name)}</title>']
    half = (CELLS + 1) // 2
    for row in range(CELLS):
        for col in range(half):
            bit = digest[(row * half + col) % len(digest)] >> ((row + col) % 8) & 1
            fill = f"hsl({hue},65%,45%)" if bit else f"hsl({hue},20%,94%)"
            for x in {col, CELLS - 1 - col}:
                parts.append(f'<rect x="{x * CELL_PX}" y="{row * CELL_PX}" width="{CELL_PX}" height="{CELL_PX}" '
                             f'fill="{fill}" shape-rendering="crispEdges"/>')
    parts.append("</svg>")
    return "\n".join(parts)


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
