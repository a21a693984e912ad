r"""A seeded ablation on the built-in data: StoP against I-JEPA, with error bars.

    python -m recipes.ablation                       # StoP vs I-JEPA, seeds 0, 1, 2
    python -m recipes.ablation --variants=stop,ijepa,stop_sigma0.1,stop_sigma0.5 --seeds=0,1,2,3,4
    python -m recipes.ablation --variants=stop,stop_noise_context,stop_noise_both,ijepa
    python -m recipes.ablation --override=train.epochs=20   # applied to every variant

Every cell (one variant, one seed) pretrains the tiny procedural recipe of the
variant with `train.seed` = the seed (which seeds the initial weights, the masks, the
StoP noise and the data order; StoP and I-JEPA of one seed start from the same
encoder weights and see the same images), then probes its target encoder on held-out
labelled procedural images (the same images for every cell): logistic regression
(`protocol="search"`) and cosine kNN (k=20) on the `shape`, `count`, `position` and `color`
labels, plus the random initial encoder of every seed as a floor. As in `recipes.demo`,
the kNN reads the features without their `--knn_removed_components` (default 8)
largest principal directions, fitted on the probe's training split without labels;
on the raw features it sits at chance for every encoder (docs/diagnostics.md). A cell's result is
written to `<output_dir>/cells/<variant>__seed<seed>.json` (written whole, then
renamed), so an interrupted ablation started again skips the finished cells and
resumes the one it was in (the pretraining run resumes from its last epoch).

At the end it writes `<output_dir>/summary.json`, `<output_dir>/table.md` (mean,
standard deviation and 95% t-interval of each probe over seeds, and the paired
difference to I-JEPA of the same seeds) and `<output_dir>/ablation.png`.

Variants (`--variants`): `stop` (sigma 0.25, tied covariance), `ijepa`,
`stop_sigma0.1`, `stop_sigma0.5`, `stop_learned` (untied `A`), `stop_low_rank`
(rank 8), `stop_isotropic` (fixed `sigma I` in the predictor width), and the paper's
placement ablation: `stop_noise_context` (noise on the context tokens only, masked
tokens noise-free) and `stop_noise_both` (`JEPAPredictor(noise_on=...)`; the official
code, and the library's default, put it on the masked tokens only).

The default (2 variants x 3 seeds of the 12-epoch tiny recipe) is sized for under 45
minutes on 2 CPU cores (measured figures in recipes/README.md). The Keras backend
defaults to TensorFlow, as in `recipes.demo`.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

from absl import flags  # noqa: E402

from keras_flexpredict.utils.atomic_write import atomic_write_bytes  # noqa: E402
from keras_flexpredict.utils.atomic_write import atomic_write_json  # noqa: E402
from keras_flexpredict.utils.atomic_write import atomic_write_text  # noqa: E402
from recipes import cli  # noqa: E402
from recipes.demo import KNN_REMOVED_COMPONENTS  # noqa: E402

# name -> (recipe, overrides, title)
VARIANTS = {
    "stop": ("stop_tiny_procedural", [], "StoP (sigma 0.25)"),
    "ijepa": ("ijepa_tiny_procedural", [], "I-JEPA"),
    "stop_sigma0.1": ("stop_tiny_procedural", ["model.predictor.sigma=0.1"], "StoP sigma 0.1"),
    "stop_sigma0.5": ("stop_tiny_procedural", ["model.predictor.sigma=0.5"], "StoP sigma 0.5"),
    "stop_learned": ("stop_tiny_procedural", ['model.predictor.covariance="learned"'], "StoP learned A"),
    "stop_low_rank": (
        "stop_tiny_procedural",
        ['model.predictor.covariance="low_rank"', "model.predictor.noise_rank=8"],
        "StoP low-rank A",
    ),
    "stop_isotropic": ("stop_tiny_procedural", ['model.predictor.covariance="isotropic"'], "StoP isotropic"),
    "stop_noise_context": ("stop_tiny_procedural", ['model.predictor.noise_on="context"'], "StoP noise on context"),
    "stop_noise_both": ("stop_tiny_procedural", ['model.predictor.noise_on="both"'], "StoP noise on both"),
}
RANDOM = "random"
# The main object's colour was added after the first ablation runs (the demo shows it
# in place of the shape); a cell probed without one of these labels is probed again.
PROBE_LABELS = ("shape", "count", "position", "color")
L2_STRENGTHS = (1e-4, 1e-3, 1e-2, 1e-1)
PROBE_SEED = 2000
# Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def define_flags(flag_values=flags.FLAGS):
    fv = flag_values
    flags.DEFINE_string("output_dir", "ablation_output", "Where the cells, table and figure go.", flag_values=fv)
    flags.DEFINE_list("variants", ["stop", "ijepa"], f"Variants, from {sorted(VARIANTS)}.", flag_values=fv)
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (train.seed of each cell).", flag_values=fv)
    flags.DEFINE_multi_string("override", [], "section.key=value applied to every variant.", flag_values=fv)
    flags.DEFINE_integer("num_probe_train", 2000, "Labelled images the probes train on.", flag_values=fv)
    flags.DEFINE_integer("num_probe_test", 1000, "Held-out labelled images the probes score.", flag_values=fv)
    flags.DEFINE_integer(
        "knn_removed_components", KNN_REMOVED_COMPONENTS,
        "Largest principal directions of the features removed before the kNN probe (0: raw features).",
        flag_values=fv,
    )
    flags.DEFINE_integer("verbose", 0, "Progress output of each pretraining run (0, 1 or 2).", flag_values=fv)


def _write_json(path, value):
    atomic_write_json(path, value, sort_keys=True)


def statistics(values):
    """`{"mean", "std", "ci95", "n", "values"}` of a list of numbers: sample standard
    deviation (ddof 1) and the half-width of the 95% Student-t interval of the mean
    (both NaN for one value).

    Example:
    >>> s = statistics([0.5, 0.6, 0.7])
    >>> round(s["mean"], 3), round(s["std"], 3), round(s["ci95"], 3)
    (0.6, 0.1, 0.248)
    """
    n = len(values)
    if n == 0:
        raise ValueError("statistics needs at least one value. Received: values=[]")
    mean = sum(values) / n
    if n == 1:
        return {"mean": mean, "std": float("nan"), "ci95": float("nan"), "n": 1, "values": list(values)}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    t = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
    return {"mean": mean, "std": std, "ci95": t * std / math.sqrt(n), "n": n, "values": list(values)}


def _parse(variants, seeds):
    variants = [v.strip() for v in variants if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"Unknown variant. Choose from {sorted(VARIANTS)}. Received: variant={v!r}")
    if not variants or len(set(variants)) != len(variants):
        raise ValueError(f"`variants` must be distinct and non-empty. Received: variants={variants}")
    try:
        seeds = [int(s) for s in seeds]
    except (TypeError, ValueError):
        raise ValueError(f"`seeds` must be non-negative ints. Received: seeds={seeds}") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"`seeds` must be distinct non-negative ints. Received: seeds={seeds}")
    return variants, seeds


def _probe(encoder, probe):
    values = probe.evaluate(encoder)
    return {k: v for k, v in values.items() if k != "probe_time_s"}


def run_ablation(output_dir="ablation_output", variants=("stop", "ijepa"), seeds=(0, 1, 2), overrides=(),
                 num_probe_train=2000, num_probe_test=1000, verbose=0, knn_removed_components=KNN_REMOVED_COMPONENTS):
    """Runs (or resumes) the ablation; returns the summary dict (also written).

    A finished cell probed with another `knn_removed_components`, or without one of
    `PROBE_LABELS`, is probed again (its pretraining run is read back, not repeated)."""
    start = time.time()
    variants, seeds = _parse(variants, seeds)
    import keras

    from keras_flexpredict.callbacks import OnlineProbe
    from recipes import monitoring
    from recipes import pretrain

    # Every recipe checked before any training.
    configs = {}
    for variant in variants:
        recipe, extra, _ = VARIANTS[variant]
        for seed in seeds:
            run_dir = os.path.join(output_dir, "runs", variant, f"seed{seed}")
            configs[variant, seed] = pretrain.prepare_config(
                recipe,
                list(extra) + list(overrides)
                + [f"train.seed={seed}", f"train.output_dir={json.dumps(run_dir)}", f"train.verbose={verbose}",
                   "train.checkpoint_every=0"],
            )[0]
    data = configs[variants[0], seeds[0]]["data"]
    width = min(int(configs[key]["model"]["encoder"]["hidden_dim"]) for key in configs)
    if (
        not isinstance(knn_removed_components, int)
        or knn_removed_components < 0
        or knn_removed_components >= min(width, num_probe_train)
    ):
        raise ValueError(
            "`knn_removed_components` must be an int >= 0 and below both the encoder width "
            f"({width}) and num_probe_train ({num_probe_train}). "
            f"Received: knn_removed_components={knn_removed_components!r}"
        )
    train = monitoring.procedural_probe_split(data, num_probe_train, PROBE_SEED, PROBE_LABELS)
    test = monitoring.procedural_probe_split(data, num_probe_test, PROBE_SEED + 1, PROBE_LABELS)
    probe = OnlineProbe(
        train, test, protocol="search", l2_strengths=L2_STRENGTHS, max_iter=300, knn_k=20,
        knn_removed_components=knn_removed_components,
    )
    print(
        f"Ablation on the {keras.backend.backend()} backend: {variants} x seeds {seeds}; output: {output_dir}/",
        flush=True,
    )

    cells = {}
    for variant in [RANDOM] + variants:
        for seed in seeds:
            path = os.path.join(output_dir, "cells", f"{variant}__seed{seed}.json")
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    cell = json.load(f)
                # Cells written before the option existed used the raw features.
                same_knn = cell.get("knn_removed_components", 0) == knn_removed_components
                missing = [label for label in PROBE_LABELS if f"probe_{label}_knn" not in cell["probes"]]
                if same_knn and not missing:
                    cells[variant, seed] = cell
                    print(f"  {variant} seed {seed}: done already ({path})", flush=True)
                    continue
                why = "with another kNN setting" if not same_knn else f"without {', '.join(missing)}"
                print(f"  {variant} seed {seed}: probed {why}, probing again", flush=True)
            t = time.time()
            keras.backend.clear_session()
            if variant == RANDOM:
                # The initial weights of every variant of this seed.
                config = configs[variants[0], seed]
                cell = {"probes": _probe(pretrain.build_model(config).target_encoder, probe)}
            else:
                config = configs[variant, seed]
                summary = pretrain.run(config, f"{variant}_seed{seed}")
                log = pretrain.read_csv_log(summary["paths"]["log_csv"])
                encoder = keras.saving.load_model(summary["paths"]["target_encoder"], compile=False)
                cell = {
                    "probes": _probe(encoder, probe),
                    "final_loss": summary["final_loss"],
                    "pretrain_wall_time_s": summary["wall_time_s"],
                    "final_diagnostics": {
                        k: log[k][-1]
                        for k in ("target_std", "target_rankme", "context_projection_norm", "prediction_variance")
                        if k in log
                    },
                }
            cell.update(
                variant=variant, seed=seed, wall_time_s=round(time.time() - t, 1),
                knn_removed_components=knn_removed_components,
            )
            _write_json(path, cell)
            cells[variant, seed] = cell
            print(f"  {variant} seed {seed}: {time.time() - t:.0f} s, " + ", ".join(
                f"{k[len('probe_'):]} {100 * v:.1f}" for k, v in sorted(cell["probes"].items())), flush=True)

    summary = summarize(cells, [RANDOM] + variants, seeds)
    summary.update(
        backend=keras.backend.backend(),
        overrides=list(overrides),
        num_probe_train=num_probe_train,
        num_probe_test=num_probe_test,
        knn_removed_components=knn_removed_components,
        wall_time_s=round(time.time() - start, 1),
    )
    table = format_table(summary)
    atomic_write_text(os.path.join(output_dir, "table.md"), table + "\n")
    summary["figure"] = save_figure(os.path.join(output_dir, "ablation.png"), summary)
    _write_json(os.path.join(output_dir, "summary.json"), summary)
    print("\n" + table)
    print(f"\nWall time of this call: {summary['wall_time_s']:.0f} s. Figure: {summary['figure']}")
    return summary


def summarize(cells, variants, seeds):
    """Per variant and probe: statistics over seeds; per variant: the paired
    difference to `ijepa` (same seeds) when it ran."""
    probes = sorted(cells[variants[0], seeds[0]]["probes"])
    out = {"variants": variants, "seeds": seeds, "probes": probes, "stats": {}, "vs_ijepa": {}}
    for variant in variants:
        out["stats"][variant] = {p: statistics([cells[variant, s]["probes"][p] for s in seeds]) for p in probes}
        if variant != "ijepa" and "ijepa" in variants:
            out["vs_ijepa"][variant] = {
                p: statistics([cells[variant, s]["probes"][p] - cells["ijepa", s]["probes"][p] for s in seeds])
                for p in probes
            }
    return out


def format_table(summary):
    """Markdown table: mean +- std (95% interval) in percent per variant and probe,
    then the paired differences to I-JEPA."""
    probes = summary["probes"]
    names = [p[len("probe_"):] for p in probes]
    n = len(summary["seeds"])
    removed = summary.get("knn_removed_components")
    knn = "" if not removed else f"; kNN on the features without their {removed} largest principal directions"
    lines = [
        f"Top-1 (%) over {n} seeds: mean ± std [95% interval of the mean]{knn}",
        "",
        "| variant | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for variant in summary["variants"]:
        title = "random init" if variant == RANDOM else VARIANTS[variant][2]
        stats = summary["stats"][variant]
        cells = [f"{100 * stats[p]['mean']:.1f} ± {100 * stats[p]['std']:.1f} [±{100 * stats[p]['ci95']:.1f}]"
                 for p in probes]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    if summary["vs_ijepa"]:
        lines += ["", "Paired difference to I-JEPA of the same seed (points): mean [95% interval]", "",
                  "| variant | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for variant, stats in summary["vs_ijepa"].items():
            title = "random init" if variant == RANDOM else VARIANTS[variant][2]
            cells = [f"{100 * stats[p]['mean']:+.1f} [±{100 * stats[p]['ci95']:.1f}]" for p in probes]
            lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_figure(path, summary):
    """Grouped bars (mean, 95% interval) with every seed as a dot, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    probes, variants = summary["probes"], summary["variants"]
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(probes)), 4.5))
    width = 0.8 / len(variants)
    x = np.arange(len(probes))
    for i, variant in enumerate(variants):
        stats = summary["stats"][variant]
        offset = x + (i - (len(variants) - 1) / 2) * width
        means = [100 * stats[p]["mean"] for p in probes]
        errors = [0.0 if math.isnan(stats[p]["ci95"]) else 100 * stats[p]["ci95"] for p in probes]
        title = "random init" if variant == RANDOM else VARIANTS[variant][2]
        ax.bar(offset, means, width, yerr=errors, capsize=3, label=title, alpha=0.8)
        for j, p in enumerate(probes):
            dots = [100 * v for v in stats[p]["values"]]
            ax.plot([offset[j]] * len(dots), dots, "k.", markersize=3)
    ax.set_xticks(x, [p[len("probe_"):].replace("_", "\n") for p in probes])
    ax.set_ylabel("top-1 on held-out images (%)")
    removed = summary.get("knn_removed_components")
    knn = f"; kNN: top {removed} principal directions removed" if removed else ""
    ax.set_title(f"StoP ablation on procedural shapes ({len(summary['seeds'])} seeds; bars: 95% interval{knn})", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    png = io.BytesIO()
    try:
        fig.savefig(png, format="png", dpi=110)
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, png.getvalue())


def _main(fv):
    run_ablation(
        output_dir=fv.output_dir,
        variants=fv.variants,
        seeds=fv.seeds,
        overrides=fv.override,
        num_probe_train=fv.num_probe_train,
        num_probe_test=fv.num_probe_test,
        verbose=fv.verbose,
        knn_removed_components=fv.knn_removed_components,
    )


if __name__ == "__main__":
    cli.run_main(define_flags, _main)
