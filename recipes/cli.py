"""What the recipes' command lines share: the absl `main` and the recipe flags.

    --config=stop_tiny_procedural                 a built-in recipe (recipes/configs/*.json)
    --config=my_recipe.json                       a JSON recipe file
    --config=recipes/configs/recipe.py:<recipe>   the same, as an ml_collections config file
    --config=my_config.py                         any ml_collections config file (`get_config()`)
    --config.train.epochs=2                       sets one key, parsed by its type
    --override=train.epochs=2                     the older form of the same (value read as JSON)

Example (a recipe CLI module):

    def define_flags(flag_values=flags.FLAGS, argv=None):
        cli.define_recipe_flags(flag_values, argv)

    if __name__ == "__main__":
        cli.run_main(define_flags, lambda fv: print(cli.recipe_from_flags(fv)))
"""

import json
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from recipes import config as recipe_config


def config_argument(value):
    """`--config`'s value as an ml_collections config file: a recipe name or JSON
    path becomes `recipes/configs/recipe.py:<value>`; a `.py` file stays.

    Example:
    >>> config_argument("stop_tiny_procedural").endswith("recipe.py:stop_tiny_procedural")
    True
    """
    path = value.split(":", 1)[0]
    if path.endswith(".py"):
        return value
    return f"{recipe_config.RECIPE_FILE}:{value}"


def expand_argv(argv):
    """`argv` with `--config=<recipe name or .json>` written as a config file (see
    `config_argument`)."""
    out, i = [], 0
    argv = list(argv)
    while i < len(argv):
        arg = argv[i]
        for prefix in ("--config=", "-config="):
            if arg.startswith(prefix):
                arg = prefix + config_argument(arg[len(prefix):])
        if arg in ("--config", "-config") and i + 1 < len(argv):
            out += [arg, config_argument(argv[i + 1])]
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def define_recipe_flags(flag_values=flags.FLAGS, argv=None, default="stop_tiny_procedural"):
    """Defines `--config` (with its `--config.section.key=value` overrides) and
    `--override` on `flag_values`. `argv`: the argument list that will be parsed
    (ml_collections finds the `--config.*` overrides in it; None: `sys.argv`)."""
    config_flags.DEFINE_config_file(
        "config", config_argument(default),
        "Built-in recipe name, recipe JSON file or ml_collections config file (see recipes/cli.py); "
        "--config.section.key=value sets one key.",
        flag_values=flag_values, lock_config=True, sys_argv=None if argv is None else expand_argv(argv),
    )
    flags.DEFINE_multi_string(
        "override", [],
        "section.key=value (repeatable; the value is read as JSON), applied after the --config.* overrides; "
        "e.g. train.epochs=10 or model.encoder.depth=2.",
        flag_values=flag_values,
    )


def parse_flags(flag_values, argv):
    """Parses `argv` (`argv[0]` is the program) into `flag_values`; a `--config.*`
    key the recipe does not have raises a `ValueError` naming it. Returns the
    remaining arguments."""
    argv = expand_argv(argv)
    try:
        return flag_values(argv)
    except (AttributeError, KeyError) as e:  # ml_collections: a key the locked recipe lacks
        bad = [a for a in argv if a.startswith(("--config.", "-config."))]
        why = str(e.args[0] if e.args else e)
        why = why.replace("\\n", " ").replace("\n", " ").replace("\\'", "").strip("'")
        raise ValueError(f"Unknown recipe key ({why}). Received: {' '.join(bad)}") from None


def recipe_name(flag_values):
    """The recipe's short name (`stop_tiny_procedural`, a JSON file's stem)."""
    filename = config_flags.get_config_filename(flag_values["config"])
    path, _, argument = filename.partition(":")
    name = recipe_config.config_name(argument or path)
    return name[: -len(".py")] if name.endswith(".py") else name


def recipe_from_flags(flag_values):
    """`(ConfigDict, name)`: `--config` with its `--config.*` overrides, then the
    `--override`s (not yet validated)."""
    config = recipe_config.apply_overrides(flag_values.config, flag_values.override)
    return config, recipe_name(flag_values)


def _keras_backend(environ):
    """The backend Keras will pick, without importing it: `KERAS_BACKEND`, else the
    `backend` of `$KERAS_HOME/keras.json` (default `~/.keras`), else None."""
    if environ.get("KERAS_BACKEND"):
        return environ["KERAS_BACKEND"]
    home = environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        return None


def relaunch_with_hugepages(environ=None, execve=os.execve):
    """On the JAX backend, starts this command again with glibc's malloc asking for
    transparent huge pages (`keras_flexpredict.utils.memory.hugepage_malloc_environment`:
    JAX's CPU train step ~10% faster, BENCHMARKS.md session 17); returns only where
    that changes nothing (another backend, already set, `KFP_HUGEPAGES=0`, no support).
    glibc reads the setting only when a process starts, hence the relaunch: the same
    interpreter and command line (`sys.orig_argv`), one line on stderr.

    >>> relaunch_with_hugepages({"KERAS_BACKEND": "torch"}) is None  # not JAX: runs on
    True
    """
    from keras_flexpredict.utils.memory import hugepage_malloc_environment

    environ = os.environ if environ is None else environ
    if _keras_backend(environ) != "jax" or not sys.executable:
        return
    env = hugepage_malloc_environment(environ)
    if env is None:
        return
    sys.stderr.write(
        "recipes: relaunching with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (transparent huge "
        "pages for JAX's step buffers; KFP_HUGEPAGES=0 turns this off)\n"
    )
    sys.stdout.flush()
    sys.stderr.flush()
    execve(sys.executable, list(sys.orig_argv), env)


def run_main(define_flags, run):
    """`python -m recipes.<module>`: on JAX first relaunches with transparent huge pages
    (`relaunch_with_hugepages`), then defines the flags (on absl's global FLAGS),
    parses `sys.argv`, refuses positional arguments and calls `run(FLAGS)`."""
    relaunch_with_hugepages()
    define_flags()

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        run(flags.FLAGS)

    def parse(argv):
        try:
            return parse_flags(flags.FLAGS, argv)
        except (flags.Error, ValueError) as e:
            sys.stderr.write(f"FATAL Flags parsing error: {e}\nPass --helpfull to see help on flags.\n")
            sys.exit(1)

    app.run(main, flags_parser=parse)
