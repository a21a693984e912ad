r"""Pretrain StoP or its I-JEPA baseline from a recipe, with `model.fit`.

Usage:

    python -m recipes.pretrain --config=stop_tiny_procedural
    python -m recipes.pretrain --config=stop_vit_base_patch16_224_imagenet \
        --config.data.root=/data/imagenet --config.train.output_dir=runs/stop_vitb16
    python -m recipes.pretrain --config=my_recipe.json --config.train.epochs=10 --print_config

`--config` is a built-in recipe name (`recipes/configs/*.json`, see
`recipes.config.list_configs()`), a JSON file or an ml_collections config file
(`recipes/cli.py`). Each `--config.section.key=value` sets one value of the recipe's
locked, typed `ConfigDict`; `--override=section.key=value` (value read as JSON) is the
older form of the same. The whole recipe is checked before anything is built; an
unknown key or a bad value stops the run with an error naming it.

Everything goes to `train.output_dir` (default `runs/<recipe name>`):

    config.json          the resolved recipe (a rerun must match it)
    log.csv              loss, learning rate, weight decay, EMA momentum (and, for image
                         data, skipped_images) per epoch, and the diagnostics / online
                         probe of the `monitor` section
    tensorboard/         the same for TensorBoard
    checkpoints/         epoch_NNNN.weights.h5 every `train.checkpoint_every` epochs
    backup/              the resume state (removed when the run is complete)
    final.keras          the trained FlexPredict (with its optimiser state)
    target_encoder.keras the target encoder alone, for
                         `python -m keras_flexpredict.evaluation.cli --encoder=...`
    summary.json         written last: the run is complete

The recipe, the model and the data (e.g. a folder without one decodable image) are
checked before anything is written. Every file is written under a `.partial.` name and
renamed when complete.

Resume: kill the run at any moment (even with SIGKILL) and start the same command
again; it goes on after the last completed epoch and ends with the same losses,
checkpoints and weights as a run that was never stopped. The backup of an epoch
(weights, optimiser, EMA counters, random states) is taken once its log row and
checkpoint are written; every epoch's batches are a pure function of `(data.seed,
epoch)` (the pipelines' `steps_per_epoch` mode; `tfds` data excepted). Running a
completed recipe again only prints where its results are.

Divergence: training stops at the first NaN or infinite loss or weight with a message
naming the step and the value, before anything of that epoch is saved; the backup and
the checkpoints keep the last good state, nothing is exported, and the command exits
with status 3 (`EXIT_NON_FINITE`). Any other error exits with status 1.

Several devices or hosts: `--distribution=data_parallel` (or another spec of
`keras_flexpredict.distribution.configure`; launch commands in docs/distribution.md).
`data.batch_size` is then the global batch; every process runs the same command and
the chief writes the logs, checkpoints and exports.
"""

import csv
import importlib.util
import json
import os
import shutil
import sys
import time

from absl import app
from absl import flags

from keras_flexpredict.utils.atomic_write import atomic_write_json
from recipes import cli
from recipes import config as recipe_config
from recipes import fault_injection

SUMMARY_FILE = "summary.json"
# Exit status of a run stopped by a non-finite loss or weight (1: any other error).
EXIT_NON_FINITE = 3
PARTIAL_PREFIX = ".partial."
CONFIG_FILE = "config.json"
_IGNORED_ON_RERUN = ("description", "train.verbose")


def define_flags(flag_values=flags.FLAGS, argv=None):
    """Defines the CLI's flags on `flag_values` (the global absl FLAGS by default);
    `argv`: the arguments to be parsed (None: `sys.argv`)."""
    fv = flag_values
    cli.define_recipe_flags(fv, argv)
    flags.DEFINE_string(
        "distribution", "none",
        "Multi-device engine (keras_flexpredict.distribution.configure): none, data_parallel, "
        "model_parallel:DxM, mirrored, multi_worker_mirrored, tpu, ddp. See docs/distribution.md.",
        flag_values=fv,
    )
    flags.DEFINE_boolean("print_config", False, "Print the resolved recipe and exit.", flag_values=fv)


def prepare_config(name_or_path, overrides=()):
    """Loads a recipe (name, JSON path or `ConfigDict`), applies the `--override`-style
    overrides and validates it: `(config dict, name)`."""
    if isinstance(name_or_path, (str, os.PathLike)):
        name = recipe_config.config_name(name_or_path)
        config = recipe_config.get_config(name_or_path)
    else:
        name, config = "recipe", name_or_path
    config = recipe_config.apply_overrides(config, overrides)
    return recipe_config.validate_config(config, name), name


def _as_json(value):
    return json.loads(json.dumps(value))


def _write_json(path, value):
    """Writes JSON atomically (`atomic_write_json`: temporary file, then rename)."""
    atomic_write_json(path, value, sort_keys=True)


def _flatten(value, prefix=""):
    if isinstance(value, dict):
        out = {}
        for key, child in value.items():
            out.update(_flatten(child, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def _has_training_state(paths):
    """True when the folder holds something of a run: a completed epoch (backup),
    a checkpoint, a logged epoch or a summary."""
    if _resumed_epoch(paths["backup"]) > 0 or os.path.exists(paths["summary"]):
        return True
    if os.path.isdir(paths["checkpoints"]) and any(
        not f.startswith(".") for f in os.listdir(paths["checkpoints"])
    ):
        return True
    return bool(read_csv_log(paths["log_csv"]).get("epoch"))


def _check_same_run(config, path, paths=None):
    """A rerun in the same output folder must use the same recipe. Returns True when
    the folder's recipe differs but the folder holds no training state (no epoch
    completed): its `config.json` may then be replaced."""
    with open(path, encoding="utf-8") as f:
        saved = _flatten(json.load(f))
    current = _flatten(_as_json(config))
    keys = sorted(
        k for k in set(saved) | set(current)
        # Monitoring only reads the model: it may change between a run and its resume.
        if k not in _IGNORED_ON_RERUN and not k.startswith("monitor.") and saved.get(k) != current.get(k)
    )
    if not keys:
        return False
    changes = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys)
    folder = os.path.dirname(path)
    if paths is not None and not _has_training_state(paths):
        print(f"{folder} holds no completed epoch of its recipe; starting this recipe there instead ({changes}).")
        return True
    raise ValueError(
        f"{folder} holds a run of a different recipe ({changes}), and a run resumes only with the recipe it "
        f"started with. To run this recipe, give it a fresh folder (--override=train.output_dir=<new folder>) "
        f"or delete {folder}; to resume the run there, rerun with its own recipe (--config={path})."
    )


def _resumed_epoch(backup_dir):
    """The epoch BackupAndRestore will resume from (0 for a fresh run)."""
    try:
        with open(os.path.join(backup_dir, "training_metadata.json"), encoding="utf-8") as f:
            return int(json.load(f).get("epoch", 0))
    except (OSError, ValueError, TypeError):
        return 0


def read_csv_log(path):
    """`{column: [values per epoch]}` of a `CSVLogger` file (floats where they parse)."""
    columns = {}
    if not os.path.exists(path):
        return columns
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    pass
                columns.setdefault(key, []).append(value)
    return columns


def output_paths(output_dir):
    """Where a run in `output_dir` writes each of its products."""
    return {
        "output_dir": output_dir,
        "config": os.path.join(output_dir, CONFIG_FILE),
        "log_csv": os.path.join(output_dir, "log.csv"),
        "tensorboard": os.path.join(output_dir, "tensorboard"),
        "checkpoints": os.path.join(output_dir, "checkpoints"),
        "backup": os.path.join(output_dir, "backup"),
        "final_model": os.path.join(output_dir, "final.keras"),
        "target_encoder": os.path.join(output_dir, "target_encoder.keras"),
        "summary": os.path.join(output_dir, SUMMARY_FILE),
    }


def build_model(config):
    """The recipe's `FlexPredict` (randomly initialised, seeded by `train.seed`)."""
    import keras

    from keras_flexpredict.models import FlexPredict

    keras.utils.set_random_seed(config["train"]["seed"])
    model = config["model"]
    return FlexPredict.from_preset(
        model["preset"],
        encoder=model["encoder"],
        predictor=model["predictor"],
        masker=model["masker"],
        loss=model["loss"],
    )


RESUMABLE_SOURCES = ("procedural", "image_folder")


def build_dataset(config, initial_epoch=0, skipped_counter=None):
    """The recipe's endless training stream from epoch `initial_epoch` on (`fit`
    counts the steps).

    For the `procedural` and `image_folder` sources every epoch's batches are a
    pure function of `(data.seed, epoch)` (the pipelines' `steps_per_epoch` mode),
    so a run resumed at `initial_epoch` reads exactly what an uninterrupted run
    reads. A `tfds` stream cannot be cut at an epoch: a resumed run reads it with
    a seed mixed with the epoch (a valid order, not the uninterrupted run's).
    """
    fn, kwargs = recipe_config.dataset_arguments(config["data"])
    source = config["data"]["source"]
    if skipped_counter is not None and source != "procedural":
        kwargs["skipped_counter"] = skipped_counter
    if source in RESUMABLE_SOURCES:
        kwargs.update(steps_per_epoch=recipe_config.resolve_steps_per_epoch(config), initial_epoch=int(initial_epoch))
        return fn(**kwargs)
    if initial_epoch:
        kwargs["seed"] = int(kwargs["seed"]) + 1_000_003 * int(initial_epoch)
    return fn(**kwargs).repeat()


def _print_paths(paths, title):
    print(title)
    for key in ("target_encoder", "final_model", "log_csv", "tensorboard", "checkpoints", "config", "summary"):
        print(f"  {key:15s} {paths[key]}")


def backup_dir(output_dir, dist):
    """BackupAndRestore's folder: one per process in a multi-process run."""
    folder = os.path.join(output_dir, "backup")
    return folder if dist.num_processes == 1 else os.path.join(folder, f"process_{dist.process_index}")


def _remove_partial_files(folder):
    """Removes the temporary files a killed run left in `folder` (not below it):
    `.partial.*` (checkpoints, exports) and `.<name>.*.tmp` (`atomic_write_json`)."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        temporary = name.startswith(PARTIAL_PREFIX) or (name.startswith(".") and name.endswith(".tmp"))
        if temporary and os.path.isfile(path):
            os.remove(path)


def _checkpoint_files(folder):
    if not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder) if not f.startswith("."))


def _diverged(error, paths):
    """`error` with what the run keeps: the resume point and the checkpoints."""
    from keras_flexpredict.callbacks import NonFiniteTrainingError

    good = _resumed_epoch(paths["backup"])
    checkpoints = _checkpoint_files(paths["checkpoints"])
    kept = (
        f"Its last good state is the backup after epoch {good} ({paths['backup']}), where a rerun of the same "
        "command resumes (and, being exact, diverges again at the same step)"
        if good
        else "No epoch completed, so there is no state to resume from"
    )
    if checkpoints:
        kept += f"; the checkpoints in {paths['checkpoints']} ({', '.join(checkpoints)}) all hold finite weights"
    message = (
        f"{error} {kept}. Nothing was exported and {SUMMARY_FILE} was not written. To train with other settings "
        "(e.g. a lower optimizer.peak_lr), start a fresh run: --config.train.output_dir=<new folder>."
    )
    return NonFiniteTrainingError(
        message, step=error.step, epoch=error.epoch, batch=error.batch, name=error.name, value=error.value
    )


def run(config, name="recipe", extra_callbacks=(), dist=None):
    """Pretrains the model of a validated recipe (see `prepare_config`) with `fit`.

    Everything that can fail on the recipe or the data (model construction, the
    data listing, a folder without one decodable image) fails before anything is
    written. Training stops at the first non-finite loss or weight with a
    `NonFiniteTrainingError` naming the step and the value; the backup and the
    checkpoints then hold the last good state, and nothing is exported.

    Args:
        config: dict, a validated recipe.
        name: str. The recipe's name, for messages and the summary.
        extra_callbacks: Keras callbacks added after the recipe's own. The backup
            of an epoch is taken when the next one begins, once every callback has
            finished it: an epoch whose `on_epoch_end` raises is run again on resume.
        dist: the `DistributionContext` of `keras_flexpredict.distribution.configure`
            (which must run before the recipe is validated), or None for one device.
            Every process runs this function; the chief alone writes the logs,
            checkpoints and summary, and `data.batch_size` is the global batch.

    Returns:
        The run summary (what `summary.json` holds): the loss per epoch, the step
        counts, the backend, the wall time, the skipped images and the paths of
        every product.
    """
    import keras

    from keras_flexpredict import distribution as kfp_distribution
    from keras_flexpredict.callbacks import EMATargetCallback
    from keras_flexpredict.callbacks import NonFiniteGuard
    from keras_flexpredict.callbacks import NonFiniteTrainingError
    from keras_flexpredict.callbacks import find_non_finite_weight
    from keras_flexpredict.data import SkippedImageCounter
    from recipes import monitoring
    from recipes.atomic_backup_and_restore import AtomicBackupAndRestore
    from recipes.atomic_model_checkpoint import AtomicModelCheckpoint
    from recipes.schedule_logger import ScheduleLogger
    from recipes.train_csv_logger import TrainCSVLogger

    if dist is None:
        dist = kfp_distribution.DistributionContext("none", keras.backend.backend())
    chief = dist.is_chief
    train = config["train"]
    output_dir = train["output_dir"]
    paths = output_paths(output_dir)
    paths["backup"] = backup_dir(output_dir, dist)
    replace_config = False
    if os.path.exists(paths["config"]):
        replace_config = _check_same_run(config, paths["config"], paths)
    if os.path.exists(paths["summary"]) and not replace_config:
        with open(paths["summary"], encoding="utf-8") as f:
            summary = json.load(f)
        if chief:
            _print_paths(paths, f"Recipe {name} already completed in {output_dir}:")
        return summary

    # Everything that can fail on the recipe or the data, before anything is written.
    start = time.time()
    steps_per_epoch = recipe_config.resolve_steps_per_epoch(config)
    epochs = train["epochs"]
    resumed = _resumed_epoch(paths["backup"])
    source = config["data"]["source"]
    counter = None
    if source != "procedural":
        counter = SkippedImageCounter(name=str(config["data"].get("root") or config["data"].get("name") or source))
    keras.utils.set_random_seed(train["seed"])
    dataset = dist.distribute_dataset(build_dataset(config, initial_epoch=resumed, skipped_counter=counter))
    previous_policy = keras.config.dtype_policy()
    if train["dtype_policy"] is not None:
        keras.config.set_dtype_policy(train["dtype_policy"])
    try:
        with dist.scope():
            model = build_model(config)
            model.compile(
                optimizer=recipe_config.make_optimizer(config["optimizer"], epochs, steps_per_epoch),
                steps_per_execution=train["steps_per_execution"],
            )
    finally:
        keras.config.set_dtype_policy(previous_policy)

    if chief:
        os.makedirs(output_dir, exist_ok=True)
        _remove_partial_files(output_dir)
        _write_json(paths["config"], _as_json(config))
        # Rows of epochs the backup does not hold (written before a kill) go.
        TrainCSVLogger.drop_rows_from(paths["log_csv"], resumed)
        print(
            f"Recipe {name} on the {keras.backend.backend()} backend ({dist.num_replicas} replica(s), "
            f"{dist.num_processes} process(es)): {epochs} epochs x {steps_per_epoch} steps of "
            f"{config['data']['batch_size']} images" + (f", resuming after epoch {resumed}" if resumed else "")
            + f". Output: {output_dir}",
            flush=True,
        )
        if resumed and source not in RESUMABLE_SOURCES:
            print(
                f"Note: a {source} stream cannot restart at an epoch; the resumed epochs read the data in "
                "another (seeded) order than an uninterrupted run would."
            )
    callbacks = [
        # First: restores weights, optimiser and random states before the others
        # start; backs up each epoch once all the callbacks below have finished it.
        AtomicBackupAndRestore(paths["backup"]),
        EMATargetCallback(**config["ema"]),
        ScheduleLogger(skipped_counter=counter),
        *monitoring.make_callbacks(config),  # before the loggers, which then record them
        # Before anything that writes the model: a non-finite epoch is never saved.
        NonFiniteGuard(),
    ]
    if chief:
        callbacks.append(TrainCSVLogger(paths["log_csv"]))
        if importlib.util.find_spec("tensorboard") is not None:
            callbacks.append(keras.callbacks.TensorBoard(paths["tensorboard"], write_graph=False))
        else:
            print("TensorBoard logs are off: the `tensorboard` package is not installed (pip install tensorboard).")
        if train["checkpoint_every"]:
            callbacks.append(
                AtomicModelCheckpoint(
                    os.path.join(paths["checkpoints"], "epoch_{epoch:04d}.weights.h5"),
                    save_weights_only=True,
                    every_n_epochs=train["checkpoint_every"],
                )
            )
    if fault_injection.requested():
        callbacks.append(fault_injection.FaultAtStep())
    callbacks.extend(extra_callbacks)
    try:
        model.fit(
            dataset,
            epochs=epochs,
            initial_epoch=resumed,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            verbose=train["verbose"] if chief else 0,
            shuffle=False,  # the pipeline shuffles
        )
        # `fit` ended: the EMA applied its last update. Never export a broken model.
        bad = find_non_finite_weight(model)
        if bad is not None:
            raise NonFiniteTrainingError(
                f"Training diverged: the weight `{bad[0]}` holds {bad[1]} after the last epoch.",
                step=epochs * steps_per_epoch, epoch=epochs - 1, name=bad[0], value=bad[1],
            )
    except NonFiniteTrainingError as error:
        raise _diverged(error, paths) from None

    # On every process (sharded variables are gathered); the chief writes each file
    # under a temporary name and renames it when complete.
    kfp_distribution.save_model(model, paths["final_model"])
    fault_injection.kill_point("export", 1)
    model.export_target_encoder(paths["target_encoder"])
    fault_injection.kill_point("export", 2)
    log = read_csv_log(paths["log_csv"])
    summary = {
        "recipe": name,
        "backend": keras.backend.backend(),
        "distribution": dist.spec,
        "num_replicas": dist.num_replicas,
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "train_steps": int(keras.ops.convert_to_numpy(model.train_steps.value)),
        "optimizer_iterations": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "final_loss": log.get("loss", [None])[-1],
        "loss_per_epoch": log.get("loss", []),
        "resumed_from_epoch": resumed,
        # Images that failed to read or decode, counted by this process since it
        # started (an image is counted on every pass that meets it).
        "skipped_images": None if counter is None else counter.count,
        "wall_time_s": round(time.time() - start, 1),
        "paths": paths,
    }
    if chief:
        _write_json(paths["summary"], summary)
        shutil.rmtree(os.path.join(output_dir, "backup"), ignore_errors=True)
        skipped = "" if not summary["skipped_images"] else f", {summary['skipped_images']} unreadable images skipped"
        _print_paths(
            paths, f"Recipe {name} done in {summary['wall_time_s']:.0f} s (final loss {summary['final_loss']}{skipped}):"
        )
    return summary


def run_from_argv(argv, extra_callbacks=()):
    """Runs the CLI on a full argument list (`argv[0]` is the program name), with
    its own flag values: for tests and scripts that call it in-process."""
    fv = flags.FlagValues()
    define_flags(fv, argv)
    rest = cli.parse_flags(fv, list(argv))
    if len(rest) > 1:
        raise app.UsageError(f"Unexpected arguments: {rest[1:]}")
    return _run_flags(fv, extra_callbacks)


def _run_flags(fv, extra_callbacks=()):
    dist = None
    if not fv.print_config:
        from keras_flexpredict import distribution as kfp_distribution

        # First of all: JAX / torch multi-process runtimes and TF multi-worker
        # strategies must start before any model, dataset or variable exists.
        dist = kfp_distribution.configure(fv.distribution)
    recipe, name = cli.recipe_from_flags(fv)
    config = recipe_config.validate_config(recipe, name)
    if fv.print_config:
        print(json.dumps(_as_json(config), indent=2))
        return config
    return run(config, name, extra_callbacks, dist=dist)


def _main(fv):
    from keras_flexpredict.callbacks import NonFiniteTrainingError

    try:
        _run_flags(fv)
    except NonFiniteTrainingError as error:
        print(f"pretrain: {error}", file=sys.stderr, flush=True)
        sys.exit(EXIT_NON_FINITE)


if __name__ == "__main__":
    cli.run_main(define_flags, _main)
