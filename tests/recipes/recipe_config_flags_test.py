"""The recipes on ml_collections: a locked, typed ConfigDict, `--config.*` flags, the
`--override` alias, and the shipped JSON recipes resolving as before the rewrite."""

import copy
import inspect
import json
import os

from absl import flags

from keras_flexpredict.testing import TestCase
from recipes import cli
from recipes import config as rc
from recipes import pretrain

# What recipes/config.py resolved for each shipped recipe (and three override cases)
# before it moved to ml_collections, recorded with the old code (ImageNet roots: null).
FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "recipes_resolved_before_issue13.json")


def comparable(resolved):
    """A resolved recipe with the model parts merged over their preset (as
    `from_preset` builds them) and the data keys over the pipeline's defaults (None:
    unset): the recipe files now hold only what differs from the preset and defaults."""
    out = json.loads(json.dumps(resolved))
    encoder, predictor, masker = rc.preset_model_arguments(out["model"])
    out["model"] = dict(out["model"], encoder=encoder, predictor=predictor, masker=masker)
    pipeline = rc._data_function(out["data"]["source"])
    defaults = {k: p.default for k, p in inspect.signature(pipeline).parameters.items() if p.default is not p.empty}
    data = {k: v for k, v in defaults.items() if k not in ("training", "label", "with_labels")}
    data.update(out["data"])
    out["data"] = {k: v for k, v in data.items() if v is not None}
    return json.loads(json.dumps(out))


def print_config(*args):
    return pretrain.run_from_argv(["pretrain", *args, "--print_config"])


class RecipeConfigFlagsTest(TestCase):
    def resolve(self, name, overrides=()):
        overrides = list(overrides)
        imagenet = "imagenet" in name
        if imagenet and not any(o.startswith("data.root=") for o in overrides):
            overrides.append(f"data.root={self.get_temp_dir()}")
        config, _ = pretrain.prepare_config(name, overrides)
        if imagenet:
            config["data"]["root"] = None
        return config

    def test_shipped_recipes__resolve_as_before_the_rewrite(self):
        with open(FIXTURE) as f:
            before = json.load(f)
        names = [k for k in before if "+" not in k]
        self.assertEqual(sorted(names), rc.list_configs())
        for name in names:
            self.assertEqual(comparable(self.resolve(name)), comparable(before[name]), name)
        for key, case in before.items():
            if "+" in key:
                overrides = [o for o in case["overrides"] if not o.startswith("data.root=")]
                self.assertEqual(
                    comparable(self.resolve(case["config"], overrides)), comparable(case["resolved"]), key
                )

    def test_recipe_files__hold_only_what_differs_from_defaults_and_preset(self):
        from keras_flexpredict.models.flex_predict_presets import FLEXPREDICT_PRESETS

        defaults = rc.default_config()
        for name in rc.list_configs():
            recipe = rc.load_config(name)
            preset = FLEXPREDICT_PRESETS[recipe["model"]["preset"]]
            for part in ("predictor", "masker"):
                for key, value in recipe["model"].get(part, {}).items():
                    self.assertNotEqual(value, preset[part].get(key), f"{name}: model.{part}.{key}")
            for section in ("optimizer", "ema", "train"):
                for key, value in recipe.get(section, {}).items():
                    self.assertNotEqual(value, defaults[section][key], f"{name}: {section}.{key}")

    def test_locked_config__unknown_key_is_named(self):
        config = rc.get_config("stop_tiny_procedural")
        with self.assertRaisesRegex(AttributeError, "epochz"):
            config.train.epochz = 3
        with self.assertRaisesRegex(ValueError, r"`train.epochz` is not a known key.*Received: train.epochz=3"):
            rc.apply_overrides(config, ["train.epochz=3"])
        with self.assertRaisesRegex(ValueError, r"`model.encoder.widht` is not an argument of ViTEncoder"):
            rc.from_dict({"model": {"encoder": {"widht": 8}}})
        out = os.path.join(self.get_temp_dir(), "run")
        with self.assertRaisesRegex(ValueError, r"--config.train.epochz=3"):
            pretrain.run_from_argv(
                ["pretrain", "--config=stop_tiny_procedural", f"--config.train.output_dir={out}", "--config.train.epochz=3"]
            )
        self.assertFalse(os.path.exists(out))

    def test_type_mismatch__override_file_and_flag_name_the_key(self):
        with self.assertRaisesRegex(ValueError, r"`train.epochs` must be of type int. Received: train.epochs='ten'"):
            rc.apply_overrides(rc.get_config("stop_tiny_procedural"), ['train.epochs="ten"'])
        with self.assertRaisesRegex(ValueError, r"`train.epochs` must be of type int. Received: train.epochs=2.5"):
            rc.apply_overrides(rc.get_config("stop_tiny_procedural"), ["train.epochs=2.5"])
        path = os.path.join(self.get_temp_dir(), "typo.json")
        with open(path, "w") as f:
            json.dump({"optimizer": {"peak_lr": "fast"}}, f)
        with self.assertRaisesRegex(ValueError, r"`optimizer.peak_lr` must be of type float. Received: optimizer.peak_lr='fast'"):
            rc.get_config(path)
        with self.assertRaisesRegex(flags.IllegalFlagValueError, r"--config.train.epochs=2.5"):
            print_config("--config=stop_tiny_procedural", "--config.train.epochs=2.5")

    def test_config_flags_and_override_alias__give_the_same_recipe(self):
        cases = [
            ("train.epochs=2", "train.epochs=2"),
            ("optimizer.peak_lr=1e-3", "optimizer.peak_lr=1e-3"),
            ("train.dtype_policy=mixed_bfloat16", "train.dtype_policy=mixed_bfloat16"),
            ("model.masker.target_scale=(0.1, 0.2)", "model.masker.target_scale=[0.1, 0.2]"),
            ("model.predictor.covariance=learned", 'model.predictor.covariance="learned"'),
            ("model.encoder.depth=2", "model.encoder.depth=2"),
            ("data.num_images=128", "data.num_images=128"),
            ("monitor.probe_every=3", "monitor.probe_every=3"),
        ]
        plain = print_config("--config=ijepa_tiny_procedural")
        for flag, override in cases:
            by_flag = print_config("--config=ijepa_tiny_procedural", f"--config.{flag}")
            by_override = print_config("--config=ijepa_tiny_procedural", f"--override={override}")
            self.assertEqual(by_flag, by_override, flag)
            self.assertNotEqual(by_flag, plain, flag)
        both = print_config(
            "--config=ijepa_tiny_procedural", *(f"--config.{flag}" for flag, _ in cases)
        )
        self.assertEqual(
            both, pretrain.prepare_config("ijepa_tiny_procedural", [override for _, override in cases])[0]
        )

    def test_config_argument__name_json_path_and_config_file_agree(self):
        by_name = print_config("--config=stop_tiny_procedural")
        by_path = print_config(f"--config={os.path.join(rc.CONFIG_DIR, 'stop_tiny_procedural.json')}")
        by_file = print_config(f"--config={rc.RECIPE_FILE}:stop_tiny_procedural")
        self.assertEqual(by_name, by_path)
        self.assertEqual(by_name, by_file)
        self.assertEqual(by_name["train"]["output_dir"], os.path.join("runs", "stop_tiny_procedural"))
        self.assertEqual(cli.expand_argv(["x", "--config", "a.json"]), ["x", "--config", f"{rc.RECIPE_FILE}:a.json"])

    def test_resolved_recipe__loads_back_as_a_recipe(self):
        # A run's config.json is a recipe: `--config=<run folder>/config.json` resumes it.
        config, _ = pretrain.prepare_config("stop_tiny_procedural", ["model.predictor.covariance=learned"])
        path = os.path.join(self.get_temp_dir(), "config.json")
        with open(path, "w") as f:
            json.dump(config, f)
        again, _ = pretrain.prepare_config(path)
        self.assertEqual(again, config)

    def test_default_config__ema_defaults_and_required_keys(self):
        config = rc.default_config()
        self.assertEqual((config.ema.start_momentum, config.ema.end_momentum), (0.996, 1.0))
        recipe = copy.deepcopy(rc.load_config("stop_tiny_procedural"))
        del recipe["train"]["epochs"]
        with self.assertRaisesRegex(ValueError, "`train.epochs` is required"):
            rc.validate_config(recipe)
