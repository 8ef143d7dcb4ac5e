"""Fig. 2 of the paper: operations of one forward pass against input size, direct against FFT.

Analytic (no timing, the same in quick and full mode). The paper's setting is S=128, f=96, f'=256, k=7 and
n in {8, 16, 32, 64}. Left panel: the paper's own counts (``fftconv.costs.direct_ops`` and ``fft_ops`` with the
constant C stated). Right panel: the real flops each method executes here, for all three passes: direct/im2col at
2 flops per multiply-add, and fftconv at the FFT size its default policy chooses (real FFTs at 2.5 N log2 N, complex
GEMMs at 8 flops per complex multiply-add over the half spectrum, each conjugate pair once; small kernels are
transformed by DFT-matrix products when fftconv chooses to, counted as such). The values read from the paper's own Fig. 2
(``experiments/data/mathieu2014.json``) are drawn and tabulated beside the formulas: operation counts do not
depend on the hardware.
"""

from __future__ import annotations

from .harness import paper, points
from .harness.results import missing_fields

NAME = "opcounts"
DESCRIPTION = "Fig. 2: operation counts vs input size (paper formulas with C stated, and flops fftconv executes)"

BATCH, IN_MAPS, OUT_MAPS, KERNEL = 128, 96, 256, 7
INPUT_SIZES = (8, 16, 32, 64)


def add_arguments(parser) -> None:
    parser.add_argument("--fft-constant", type=float, default=5.0,
                        help="the constant C of the paper's FFT cost 2C n^2 log2 n (not stated by the paper; "
                             "default 5, the usual 5 N log2 N, which matches its Figure 2)")


def validate(row: dict) -> str | None:
    return missing_fields(row, "n", "fft_constant", "S", "f", "f_out", "k", "paper_direct_ops", "paper_fft_ops",
                          "direct_flops", "fft_size_fast", "fftconv_fast_forward_total", "fftconv_fast_forward_products",
                          "fftconv_fast_input_total", "fftconv_fast_weight_total")


def measure(ctx) -> None:
    from fftconv import ConvGeometry, fft_shape_for
    from fftconv.costs import direct_flops, direct_ops, executed_flops, fft_ops

    constant = getattr(ctx.options, "fft_constant", 5.0)
    for n in ctx.progress(INPUT_SIZES, desc=NAME):
        key = {"n": n, "fft_constant": constant}
        if ctx.results.has(key):
            continue
        geometry = ConvGeometry.from_shapes((BATCH, IN_MAPS, n, n), (OUT_MAPS, IN_MAPS, KERNEL, KERNEL))
        row = {**key, "S": BATCH, "f": IN_MAPS, "f_out": OUT_MAPS, "k": KERNEL,
               "paper_direct_ops": direct_ops(BATCH, IN_MAPS, OUT_MAPS, n, KERNEL),
               "paper_fft_ops": fft_ops(BATCH, IN_MAPS, OUT_MAPS, n, constant),
               "direct_flops": direct_flops(geometry)}
        for policy in ("fast", "pow2"):
            fft_shape = fft_shape_for(geometry, policy)
            row[f"fft_size_{policy}"] = fft_shape[0]
            for pass_name in points.PASSES:
                count = executed_flops(geometry, fft_shape, pass_name)
                row[f"fftconv_{policy}_{pass_name}_transforms"] = count.transforms
                row[f"fftconv_{policy}_{pass_name}_products"] = count.products
                row[f"fftconv_{policy}_{pass_name}_total"] = count.total
                row[f"fftconv_{policy}_kernels_by_gemm"] = count.kernels_by_gemm
        ctx.append(row)


def _rows(ctx) -> list[dict]:
    """The shown rows with the asked ``--fft-constant`` (a redraw reads the constant from the rows)."""
    constant = getattr(ctx.options, "fft_constant", 5.0)
    rows = sorted((row for row in ctx.rows() if row["fft_constant"] == constant), key=lambda row: row["n"])
    if not rows:
        saved = sorted({row["fft_constant"] for row in ctx.rows()})
        raise SystemExit(f"{NAME}: no results with fft_constant={constant} in {ctx.results.path} (saved: "
                         f"{', '.join(f'{c:g}' for c in saved) or 'none'}); run without --plot-only to compute them")
    return rows


def plot(ctx) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .harness.style import markdown_table, save_figure, write_table

    rows = _rows(ctx)
    constant = rows[0]["fft_constant"]
    ns = [row["n"] for row in rows]
    setting = f"S={rows[0]['S']}, f={rows[0]['f']}, f'={rows[0]['f_out']}, k={rows[0]['k']}"
    figure2 = paper.load()["fig2"]

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    left.plot(ns, [row["paper_direct_ops"] for row in rows], "o--", color="tab:blue",
              label="direct  S f' f (n-k+1)² k²")
    left.plot(ns, [row["paper_fft_ops"] for row in rows], "s-", color="tab:red",
              label=f"FFT (paper, Table 1, C={constant:g}, log₂)")
    left.plot(figure2["n"], figure2["direct"], "o", mfc="none", ms=10, color="tab:blue",
              label="direct, read from the paper's Fig. 2")
    left.plot(figure2["n"], figure2["fft"], "s", mfc="none", ms=10, color="tab:red",
              label="FFT, read from the paper's Fig. 2")
    left.set(xlabel="n (input size)", ylabel="operations (paper's count)",
             title="Paper's formulas (reproduces its Fig. 2)")
    left.legend(fontsize=8)

    right.plot(ns, [row["direct_flops"] for row in rows], "o--", color="tab:blue",
               label="direct / im2col (2 flops per MAC)")
    # The three passes transform the same S f + S f' + f f' maps and do the same GEMMs: one line covers them.
    right.plot(ns, [row["fftconv_fast_forward_total"] for row in rows], "s-", color="tab:red",
               label="fftconv (each of the three passes)")
    right.plot(ns, [row["fftconv_fast_forward_products"] for row in rows], "^-", color="tab:orange", alpha=0.7,
               label="fftconv: complex GEMMs only")
    right.set(xlabel="n (input size)", ylabel="real flops executed", yscale="log",
              title="Flops executed (fftconv at its default FFT size)")
    right.legend(fontsize=8)
    fig.suptitle(f"Operations vs input size, {setting}. Analytic: no timing, machine-independent; "
                 f"the same in quick and full mode; {ctx.short_provenance()}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, ctx.out_dir, "fig2_opcounts")
    plt.close(fig)

    read = dict(zip(figure2["n"], zip(figure2["direct"], figure2["fft"])))
    header = ["n", "FFT size", "paper direct ops", f"paper FFT ops (C={constant:g})", "paper direct/FFT",
              "paper's Fig. 2, read: direct", "paper's Fig. 2, read: FFT",
              "direct flops", "kernels by DFT matrix", "fftconv fwd flops", "of which GEMM", "fftconv bprop flops",
              "fftconv accGrad flops", "direct/fftconv fwd"]
    body = []
    for row in rows:
        forward = row["fftconv_fast_forward_total"]
        body.append([row["n"], row["fft_size_fast"], f"{row['paper_direct_ops']:.3e}", f"{row['paper_fft_ops']:.3e}",
                     f"{row['paper_direct_ops'] / row['paper_fft_ops']:.1f}x",
                     *((f"{v:.2e}" for v in read[row["n"]]) if row["n"] in read else ("-", "-")),
                     f"{row['direct_flops']:.3e}",
                     "yes" if row.get("fftconv_fast_kernels_by_gemm") else "no", f"{forward:.3e}",
                     f"{row['fftconv_fast_forward_products'] / forward:.0%}",
                     f"{row['fftconv_fast_input_total']:.3e}", f"{row['fftconv_fast_weight_total']:.3e}",
                     f"{row['direct_flops'] / forward:.1f}x"])
    text = (f"# Operation counts (paper Fig. 2), {setting}\n\n"
            f"Analytic, machine-independent, identical in quick and full mode; {ctx.provenance_note().strip()} "
            f"The columns 'read' are the values of the paper's Fig. 2 ({figure2['source']}; {paper.citation()}). "
            "Paper counts: one operation per "
            f"multiply-add for direct, its Table 1 forward row with C={constant:g} for FFT. Executed flops: 2 per "
            "multiply-add for direct/im2col; fftconv at the FFT size of its default `fast` policy (equal to the "
            "`pow2` size for these n), real FFTs at 2.5 N log2 N, complex GEMMs at 8 flops per complex MAC over the "
            "half spectrum (each conjugate pair once); kernels (and the weight gradient's inverse) go through DFT-matrix products instead of FFTs "
            "where fftconv picks that (column 'kernels by DFT matrix'), counted at 8 flops per complex MAC.\n\n"
            + markdown_table(header, body))
    write_table(ctx.out_dir, "opcounts", text)
