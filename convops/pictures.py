"""The convolution-arithmetic guide's pictures (Dumoulin & Visin), for
``convops shape``: along each dimension, the input as the kernel sees it
(padding, and for a transposed convolution the zeros inserted between
inputs, with negative padding cropping), and the kernel's taps at each
output position; as text, or drawn with matplotlib (PNG, animated GIF).
"""

from __future__ import annotations

from typing import NamedTuple

from . import arithmetic

INPUT, PAD, INSERTED = "x", "0", "."


class Layout(NamedTuple):
    """One dimension: the cells the kernel slides over, the distance between
    consecutive kernel positions, the kernel, its dilation, and the outputs."""

    cells: tuple
    step: int
    kernel: int
    dilation: int
    outputs: int

    def taps(self, o: int) -> list[int]:
        return [o * self.step + t * self.dilation for t in range(self.kernel)]


def layout(i, k, s, pad, d, transposed=False, a=0) -> Layout:
    lo, hi = pad
    if transposed:  # the equivalent direct convolution: zeros inserted, padded by d*(k-1) - p (+ a), stride 1
        eq = arithmetic.transpose_equivalent(i, k, s, pad, d, a)
        inserted = []
        for j in range(i):
            inserted += [INPUT] + ([INSERTED] * (s - 1) if j < i - 1 else [])
        before, after = eq.padding  # negative: that many cells are cropped
        inserted = inserted[max(-before, 0):len(inserted) - max(-after, 0)]
        cells = [PAD] * max(before, 0) + inserted + [PAD] * max(after, 0)
        return Layout(tuple(cells), 1, k, d, eq.output_size)
    return Layout(tuple([PAD] * lo + [INPUT] * i + [PAD] * hi), s, k, d, arithmetic.conv_output_size(i, k, s, pad, d))


def text(lay: Layout, shown: int = 8) -> list[str]:
    lines = ["input   " + " ".join(lay.cells)]
    for o in range(min(lay.outputs, shown)):
        row = [" "] * len(lay.cells)
        for pos in lay.taps(o):
            if pos < len(row):
                row[pos] = "#"
        lines.append(f"out {o:<3} " + " ".join(row))
    if lay.outputs > shown:
        lines.append(f"... {lay.outputs - shown} more output positions")
    lines.append("legend: x input, 0 padding, . zero inserted between inputs (transposed), # kernel tap")
    return lines


_COLORS = {INPUT: "#5b8fd6", PAD: "#ffffff", INSERTED: "#dfe7f3"}
MAX_FRAMES = 64


def draw(path: str, layouts: list) -> None:
    """The last two dims (one dim: a single row) as the guide draws them:
    input cells blue, padding white, inserted zeros pale, the kernel's taps
    shaded, and the output grid beside it with the current output marked.
    A .png shows the first output; a .gif slides over up to 64 of them."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import animation
    from matplotlib.patches import Rectangle

    rows_l, cols_l = (layouts[-2], layouts[-1]) if len(layouts) >= 2 else (None, layouts[-1])
    in_rows = len(rows_l.cells) if rows_l else 1
    in_cols, out_rows, out_cols = len(cols_l.cells), rows_l.outputs if rows_l else 1, cols_l.outputs
    fig, (ax_in, ax_out) = plt.subplots(1, 2, figsize=(2 + 0.45 * (in_cols + out_cols), 1.5 + 0.45 * max(in_rows, out_rows)),
                                        gridspec_kw={"width_ratios": [max(in_cols, 1), max(out_cols, 1)]})

    def cell_kind(r, c):
        kinds = {cols_l.cells[c], rows_l.cells[r] if rows_l else INPUT}
        return PAD if PAD in kinds else INSERTED if INSERTED in kinds else INPUT

    positions = [(r, c) for r in range(out_rows) for c in range(out_cols)][:MAX_FRAMES]

    def frame(n):
        orow, ocol = positions[n] if positions else (None, None)
        for ax in (ax_in, ax_out):
            ax.clear()
            ax.set_aspect("equal")
            ax.axis("off")
        for r in range(in_rows):
            for c in range(in_cols):
                kind = cell_kind(r, c)
                ax_in.add_patch(Rectangle((c, -r - 1), 1, 1, facecolor=_COLORS[kind], edgecolor="#888",
                                          ls="--" if kind == PAD else "-", lw=0.8))
        if orow is not None:
            taps_r = rows_l.taps(orow) if rows_l else [0]
            for r in taps_r:
                for c in cols_l.taps(ocol):
                    if r < in_rows and c < in_cols:
                        ax_in.add_patch(Rectangle((c, -r - 1), 1, 1, facecolor="#1d3f73", alpha=0.55, lw=0))
        for r in range(out_rows):
            for c in range(out_cols):
                current = (r, c) == (orow, ocol)
                ax_out.add_patch(Rectangle((c, -r - 1), 1, 1, facecolor="#2f8f5b" if current else "#b9e0c8",
                                           edgecolor="#555", lw=0.8))
        for ax, w, h, title in ((ax_in, in_cols, in_rows, "input (padded)"), (ax_out, out_cols, out_rows, "output")):
            ax.set_xlim(-0.2, max(w, 1) + 0.2)
            ax.set_ylim(-max(h, 1) - 0.2, 0.2)
            ax.set_title(title, fontsize=9)
        return []

    frame(0)
    fig.tight_layout()
    if path.lower().endswith(".gif"):
        anim = animation.FuncAnimation(fig, frame, frames=max(len(positions), 1), blit=False)
        anim.save(path, writer=animation.PillowWriter(fps=2))
    else:
        fig.savefig(path, dpi=100)
    plt.close(fig)
