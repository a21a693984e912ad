import contextlib
import io
import json
import os
import re

import pytest

from keras_flexpredict.testing import TestCase
from recipes import config as rc
from recipes import pretrain

PAPER = {
    # encoder preset: patch, grid, predictor depth, sigma, epochs, (start, peak, final lr), warm-up, constant after
    "vit_base_patch16_224": (16, 14, 6, 0.25, 600, (2e-4, 8e-4, 1e-4), 15, None),
    "vit_large_patch16_224": (16, 14, 12, 0.25, 600, (2e-4, 8e-4, 1e-4), 15, None),
    "vit_huge_patch14_224": (14, 16, 12, 0.2, 300, (2e-4, 1e-3, 1e-6), 40, 250),
}
IMAGENET_STEPS = 1281167 // 2048  # 625: ImageNet-1k train at batch 2048, last batch dropped


class RecipeConfigTest(TestCase):
    def validated(self, name, overrides=()):
        overrides = list(overrides)
        if "imagenet" in name:
            overrides.append(f"data.root={self.get_temp_dir()}")
        return rc.validate_config(rc.apply_overrides(rc.load_config(name), overrides), name)

    def test_list_configs__paper_runs_baselines_and_tiny(self):
        expected = {f"{m}_{e}_imagenet" for m in ("stop", "ijepa") for e in PAPER}
        expected |= {"stop_tiny_procedural", "ijepa_tiny_procedural"}
        self.assertEqual(set(rc.list_configs()), expected)

    def test_every_builtin_recipe__validates(self):
        for name in rc.list_configs():
            config = self.validated(name)
            self.assertEqual(config["train"]["output_dir"], os.path.join("runs", name))

    def test_paper_recipes__numbers_of_the_design_table(self):
        for encoder, (patch, grid, depth, sigma, epochs, lrs, warmup, constant) in PAPER.items():
            for method in ("stop", "ijepa"):
                name = f"{method}_{encoder}_imagenet"
                config = self.validated(name)
                enc, pred, masker = rc.preset_model_arguments(config["model"])
                self.assertEqual((enc["patch_size"], tuple(masker["grid_size"])), (patch, (grid, grid)), name)
                self.assertEqual((pred["depth"], pred["hidden_dim"]), (depth, 384), name)
                self.assertEqual(pred["positional_noise"], "stop" if method == "stop" else "none", name)
                if method == "stop":
                    self.assertEqual(pred["sigma"], sigma, name)
                self.assertEqual(masker["num_targets"], 4)
                self.assertEqual(tuple(masker["target_scale"]), (0.15, 0.2))
                self.assertEqual(config["data"]["batch_size"], 2048, name)
                self.assertEqual(config["train"]["epochs"], epochs, name)
                opt = config["optimizer"]
                self.assertEqual((opt["start_lr"], opt["peak_lr"], opt["final_lr"]), lrs, name)
                self.assertEqual(opt["warmup_epochs"], warmup, name)
                self.assertEqual(opt["constant_after_epoch"], constant, name)
                self.assertEqual((opt["start_weight_decay"], opt["end_weight_decay"]), (0.04, 0.4), name)
                self.assertEqual((config["ema"]["start_momentum"], config["ema"]["end_momentum"]), (0.996, 1.0))

    def test_paper_recipes__baseline_differs_from_stop_in_predictor_and_augmentation(self):
        for encoder in PAPER:
            stop = self.validated(f"stop_{encoder}_imagenet")
            ijepa = self.validated(f"ijepa_{encoder}_imagenet")
            for section in ("optimizer", "ema", "train"):
                same = {k: v for k, v in stop[section].items() if k != "output_dir"}
                self.assertEqual(same, {k: v for k, v in ijepa[section].items() if k != "output_dir"}, section)
            # Each method with its own augmentation: the quoted I-JEPA numbers come
            # from I-JEPA's (crop only); StoP's adds flip, grayscale and blur.
            self.assertEqual((stop["data"]["transform"], ijepa["data"]["transform"]), ("stop", "ijepa"))
            self.assertEqual(
                {**stop["data"], "root": None, "transform": None}, {**ijepa["data"], "root": None, "transform": None}
            )
            self.assertEqual(stop["model"]["encoder"], ijepa["model"]["encoder"])
            # The controlled comparison is one override away.
            controlled = self.validated(f"ijepa_{encoder}_imagenet", ["data.transform=stop"])
            self.assertEqual({**stop["data"], "root": None}, {**controlled["data"], "root": None})

    def test_optimizer_arguments__epochs_become_steps(self):
        base = self.validated("stop_vit_base_patch16_224_imagenet")
        args = rc.optimizer_arguments(base["optimizer"], base["train"]["epochs"], IMAGENET_STEPS)
        self.assertEqual(args["total_steps"], 600 * 625)
        self.assertEqual(args["warmup_steps"], 15 * 625)
        self.assertIsNone(args["constant_after_step"])
        self.assertEqual((args["start_lr"], args["peak_lr"], args["final_lr"]), (2e-4, 8e-4, 1e-4))

    def test_optimizer_arguments__gradient_accumulation_counts_real_updates(self):
        # Batch 1024 accumulated in pairs: 1250 batches an epoch, 625 real updates.
        huge = self.validated(
            "stop_vit_huge_patch14_224_imagenet",
            ["data.batch_size=1024", "optimizer.gradient_accumulation_steps=2"],
        )
        args = rc.optimizer_arguments(huge["optimizer"], 300, 2 * IMAGENET_STEPS)
        self.assertEqual((args["total_steps"], args["warmup_steps"]), (300 * 625, 40 * 625))
        self.assertEqual(args["constant_after_step"], 250 * 625)
        optimizer = rc.make_optimizer(huge["optimizer"], 300, 2 * IMAGENET_STEPS)
        self.assertEqual(optimizer.gradient_accumulation_steps, 2)

    def test_optimizer__vit_huge_is_constant_after_epoch_250(self):
        huge = self.validated("stop_vit_huge_patch14_224_imagenet")
        args = rc.optimizer_arguments(huge["optimizer"], 300, IMAGENET_STEPS)
        self.assertEqual((args["total_steps"], args["warmup_steps"]), (300 * 625, 40 * 625))
        self.assertEqual(args["constant_after_step"], 250 * 625)
        optimizer = rc.make_optimizer(huge["optimizer"], 300, IMAGENET_STEPS)
        schedule, decay = optimizer._learning_rate, optimizer.weight_decay
        at_250 = float(schedule(250 * 625 - 1))
        self.assertAllClose(float(schedule(300 * 625 - 1)), at_250, rtol=1e-6)
        self.assertAllClose(float(decay(300 * 625 - 1)), float(decay(250 * 625 - 1)), rtol=1e-6)
        # Still on the cosine before epoch 250: well above the final 1e-6.
        self.assertGreater(at_250, 1e-5)
        self.assertGreater(float(schedule(200 * 625)), at_250)
        self.assertAllClose(float(schedule(40 * 625 - 1)), 1e-3, rtol=1e-6)  # end of the warm-up

    def test_apply_overrides__json_values_strings_and_nesting(self):
        config = rc.apply_overrides(
            {"data": {"source": "image_folder"}, "train": {"epochs": 600}},
            [
                "train.epochs=3",
                "optimizer.peak_lr=1e-3",
                "train.dtype_policy=mixed_bfloat16",
                "model.masker.target_scale=[0.1, 0.2]",
                "train.output_dir=null",
                "data.root=/data/imagenet",
            ],
        )
        self.assertEqual(config["train"]["epochs"], 3)
        self.assertEqual(config["optimizer"]["peak_lr"], 1e-3)
        self.assertEqual(config["train"]["dtype_policy"], "mixed_bfloat16")
        self.assertEqual(list(config["model"]["masker"]["target_scale"]), [0.1, 0.2])
        self.assertIsNone(config["train"]["output_dir"])
        self.assertEqual(config["data"]["root"], "/data/imagenet")

    def test_apply_overrides__does_not_change_the_input(self):
        config = {"train": {"epochs": 600}}
        rc.apply_overrides(config, ["train.epochs=1"])
        self.assertEqual(config, {"train": {"epochs": 600}})
        locked = rc.get_config("stop_tiny_procedural")
        self.assertEqual(rc.apply_overrides(locked, ["train.epochs=1"]).train.epochs, 1)
        self.assertEqual(locked.train.epochs, 12)

    def test_apply_overrides__bad_syntax_raises(self):
        for text in ("train.epochs", "epochs=3", "train..epochs=3", "=3"):
            with self.assertRaisesRegex(ValueError, "override"):
                rc.apply_overrides({}, [text])
        with self.assertRaisesRegex(ValueError, "train.epochs"):
            rc.apply_overrides({"train": {"epochs": 3}}, ["train.epochs.x=1"])

    def test_validate__unknown_key_is_named(self):
        cases = {
            "train.epochz=3": "train.epochz",
            "trainer.epochs=3": "trainer",
            "model.encoder.widht=8": "model.encoder.widht",
            "model.predictor.sigmaa=0.1": "model.predictor.sigmaa",
            "optimizer.lr=1e-3": "optimizer.lr",
            "optimizer.warmup_steps=10": "optimizer.warmup_steps",
            "data.root=/tmp": "data.root",  # not an argument of the procedural pipeline
            "data.training=false": "data.training",
            "ema.momentum=0.9": "ema.momentum",
        }
        for override, key in cases.items():
            with self.assertRaisesRegex(ValueError, f"`{key}`.*Received: {key}=") as ctx:
                self.validated("stop_tiny_procedural", [override])
            self.assertIn(key, str(ctx.exception), override)

    def test_validate__bad_values_name_key_and_value(self):
        cases = {
            "train.epochs=0": "train.epochs=0",
            "train.steps_per_epoch=-1": "train.steps_per_epoch=-1",
            "optimizer.peak_lr=-1": "optimizer.peak_lr=-1",
            "optimizer.warmup_epochs=999": "optimizer.warmup_epochs=999",
            "optimizer.constant_after_epoch=999": "optimizer.constant_after_epoch=999",
            "data.batch_size=0": "data.batch_size=0",
            "data.num_images=8": "data.num_images=8",
            "data.image_size=48": "data.image_size=48",
            "data.source=\"imagenet\"": "data.source='imagenet'",
            "data.transform=\"mixup\"": "data.transform='mixup'",
            "model.preset=\"vit_tiny\"": "model.preset='vit_tiny'",
            "model.loss=\"l1\"": "model.loss='l1'",
            "train.dtype_policy=float8": "train.dtype_policy='float8'",
            "train.verbose=3": "train.verbose=3",
            "optimizer.gradient_accumulation_steps=1": "optimizer.gradient_accumulation_steps=1",
        }
        for override, message in cases.items():
            with self.assertRaises(ValueError, msg=override) as ctx:
                self.validated("stop_tiny_procedural", [override])
            self.assertIn(message, str(ctx.exception), override)

    def test_validate__every_number_finite(self):
        cases = (
            "model.predictor.sigma=NaN",
            "optimizer.peak_lr=Infinity",
            "optimizer.start_weight_decay=NaN",
            "ema.start_momentum=NaN",
            "model.encoder.mlp_ratio=NaN",
            "model.masker.target_scale=[0.15, NaN]",
        )
        for override in cases:
            key = override.split("=")[0].replace(".target_scale", ".target_scale[1]")
            with self.assertRaisesRegex(ValueError, re.escape(f"`{key}` must be a finite number"), msg=override):
                self.validated("stop_tiny_procedural", [override])
        # In range, too: a non-positive epsilon or MLP ratio is named.
        with self.assertRaisesRegex(ValueError, "layer_norm_epsilon=0"):
            self.validated("stop_tiny_procedural", ["model.encoder.layer_norm_epsilon=0"])
        with self.assertRaisesRegex(ValueError, "sigma=-1"):
            self.validated("stop_tiny_procedural", ["model.predictor.sigma=-1"])
        for override in ("optimizer.beta_1=2", "optimizer.epsilon=0", "optimizer.global_clipnorm=-1",
                         "data.noise_std=-1", "data.max_rotation=500"):
            key, value = override.split("=")
            with self.assertRaisesRegex(ValueError, f"{key.split('.')[1]}={value}", msg=override):
                self.validated("stop_tiny_procedural", [override])

    def test_validate__parts_that_do_not_fit_together(self):
        with self.assertRaisesRegex(ValueError, "model.*encoder_dim=32, hidden_dim=64"):
            self.validated("stop_tiny_procedural", ["model.predictor.encoder_dim=32"])
        with self.assertRaisesRegex(ValueError, "model.*one patch grid"):
            self.validated("stop_tiny_procedural", ["model.masker.grid_size=[16, 16]"])

    def test_apply_overrides__new_data_source_drops_the_old_sources_keys(self):
        root = self.get_temp_dir()
        recipe = rc.load_config("stop_tiny_procedural")
        with contextlib.redirect_stderr(io.StringIO()) as err:
            config = rc.apply_overrides(recipe, ["data.source=image_folder", f"data.root={root}"])
        self.assertEqual(sorted(rc.resolve(config)["data"]), ["batch_size", "root", "source"])
        self.assertIn("dropped the recipe's data keys that image_folder_dataset does not take", err.getvalue())
        self.assertIn("grid_size, max_count, num_images", err.getvalue())
        self.assertEqual(rc.validate_config(config)["data"]["root"], root)
        # A key given on the command line stays, and is reported against the new source.
        with contextlib.redirect_stderr(io.StringIO()), self.assertRaisesRegex(
            ValueError, r"data.num_images.*not an argument of image_folder_dataset \(data.source='image_folder'"
        ):
            rc.apply_overrides(recipe, ["data.source=image_folder", f"data.root={root}", "data.num_images=8"])
        # The same source: nothing dropped.
        self.assertEqual(
            rc.resolve(rc.apply_overrides(recipe, ["data.source=procedural"]))["data"],
            dict(recipe["data"], source="procedural"),
        )

    def test_validate__constructor_errors_name_the_section(self):
        with self.assertRaisesRegex(ValueError, "model.encoder.*patch_size"):
            self.validated("stop_tiny_procedural", ["model.encoder.patch_size=5"])
        with self.assertRaisesRegex(ValueError, "model.predictor.*positional_noise"):
            self.validated("stop_tiny_procedural", ['model.predictor.positional_noise="gaussian"'])
        with self.assertRaisesRegex(ValueError, "ema.*start_momentum"):
            self.validated("stop_tiny_procedural", ["ema.start_momentum=1.5"])

    def test_validate__missing_image_folder_is_reported(self):
        config = rc.load_config("stop_vit_base_patch16_224_imagenet")
        with self.assertRaisesRegex(ValueError, "data.root.*Received: data.root=None"):
            rc.validate_config(config)

    def test_validate__required_key_missing(self):
        config = rc.load_config("stop_tiny_procedural")
        del config["optimizer"]["peak_lr"]
        with self.assertRaisesRegex(ValueError, "optimizer.peak_lr` is required"):
            rc.validate_config(config)

    def test_validate__fills_defaults_and_seeds(self):
        config = self.validated("stop_tiny_procedural", ["train.seed=7"])
        self.assertEqual(config["model"]["predictor"]["seed"], 7)
        self.assertEqual(config["model"]["masker"]["seed"], 7)
        self.assertEqual(config["data"]["seed"], 7)
        self.assertIsNone(config["ema"]["total_steps"])

    def test_load_config__json_file_and_errors(self):
        path = os.path.join(self.get_temp_dir(), "mine.json")
        with open(path, "w") as f:
            json.dump(rc.load_config("stop_tiny_procedural"), f)
        self.assertEqual(rc.load_config(path)["train"]["epochs"], rc.load_config("stop_tiny_procedural")["train"]["epochs"])
        self.assertEqual(rc.config_name(path), "mine")
        with self.assertRaisesRegex(ValueError, "no_such_recipe"):
            rc.load_config("no_such_recipe")
        with open(path, "w") as f:
            f.write("{not json")
        with self.assertRaisesRegex(ValueError, "not valid JSON"):
            rc.load_config(path)

    def test_resolve_steps_per_epoch__from_the_data_size(self):
        config = self.validated("stop_tiny_procedural", ["data.num_images=100", "data.batch_size=8"])
        self.assertEqual(rc.resolve_steps_per_epoch(config), 12)
        config = self.validated("stop_tiny_procedural", ["train.steps_per_epoch=3"])
        self.assertEqual(rc.resolve_steps_per_epoch(config), 3)


class PretrainCliChecksTest(TestCase):
    def test_cli__unknown_key_fails_before_any_work(self):
        out = os.path.join(self.get_temp_dir(), "run")
        argv = ["pretrain", "--config=stop_tiny_procedural", f"--override=train.output_dir={out}", "--override=train.epoch=1"]
        with self.assertRaisesRegex(ValueError, "train.epoch"):
            pretrain.run_from_argv(argv)
        self.assertFalse(os.path.exists(out))

    def test_cli__print_config_returns_the_resolved_recipe(self):
        config = pretrain.run_from_argv(
            ["pretrain", "--config=ijepa_tiny_procedural", "--override=train.epochs=3", "--print_config"]
        )
        self.assertEqual(config["train"]["epochs"], 3)
        self.assertEqual(rc.preset_model_arguments(config["model"])[1]["positional_noise"], "none")

    def test_run__refuses_a_folder_of_another_recipe(self):
        out = self.get_temp_dir()
        config, name = pretrain.prepare_config("stop_tiny_procedural", [f"train.output_dir={out}"])
        with open(os.path.join(out, pretrain.CONFIG_FILE), "w") as f:
            json.dump({**config, "train": {**config["train"], "epochs": 99}}, f)
        with open(os.path.join(out, "log.csv"), "w") as f:
            f.write("epoch,loss\n0,0.5\n")  # one epoch done
        with pytest.raises(ValueError, match=f"train.epochs: 99 -> {config['train']['epochs']}") as raised:
            pretrain.run(config, name)
        # It says how to go on: a fresh folder, or the folder's own recipe.
        self.assertIn("--override=train.output_dir=<new folder>", str(raised.value))
        self.assertIn(f"--config={os.path.join(out, pretrain.CONFIG_FILE)}", str(raised.value))

    def test_check_same_run__a_folder_without_a_completed_epoch_takes_the_new_recipe(self):
        out = self.get_temp_dir()
        config, _ = pretrain.prepare_config("stop_tiny_procedural", [f"train.output_dir={out}"])
        path = os.path.join(out, pretrain.CONFIG_FILE)
        with open(path, "w") as f:
            json.dump({**config, "train": {**config["train"], "epochs": 99}}, f)
        paths = pretrain.output_paths(out)
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            self.assertTrue(pretrain._check_same_run(config, path, paths))
        self.assertIn("holds no completed epoch", printed.getvalue())
        # The same recipe: nothing to replace.
        with open(path, "w") as f:
            json.dump(config, f)
        self.assertFalse(pretrain._check_same_run(config, path, paths))

    def test_cli__parts_that_do_not_fit_fail_before_anything_is_written(self):
        out = os.path.join(self.get_temp_dir(), "run")
        argv = ["pretrain", "--config=stop_tiny_procedural", f"--override=train.output_dir={out}"]
        with self.assertRaisesRegex(ValueError, "encoder_dim=32, hidden_dim=64"):
            pretrain.run_from_argv(argv + ["--override=model.predictor.encoder_dim=32"])
        with self.assertRaisesRegex(ValueError, "model.predictor.sigma` must be a finite number"):
            pretrain.run_from_argv(argv + ["--override=model.predictor.sigma=NaN"])
        self.assertFalse(os.path.exists(out))
