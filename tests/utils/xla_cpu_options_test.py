from keras_flexpredict.testing import TestCase
from keras_flexpredict.utils.xla_cpu_options import train_step_compiler_options

ELEMENTAL = {"xla_cpu_use_fusion_emitters": False}


class TrainStepCompilerOptionsTest(TestCase):
    def test_default__elemental_emitters_on_cpu_only(self):
        for value in (None, "", "0", "off"):
            env = {} if value is None else {"KFP_XLA_FUSION_EMITTERS": value}
            self.assertEqual(train_step_compiler_options("cpu", env), ELEMENTAL, msg=str(env))
            for platform in ("gpu", "tpu"):
                self.assertIsNone(train_step_compiler_options(platform, env), msg=f"{platform} {env}")
        # Other XLA flags the user sets do not turn it off.
        env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
        self.assertEqual(train_step_compiler_options("cpu", env), ELEMENTAL)

    def test_switch_on__xla_defaults(self):
        for value in ("1", "true", " ON "):
            env = {"KFP_XLA_FUSION_EMITTERS": value}
            self.assertIsNone(train_step_compiler_options("cpu", env), msg=value)

    def test_user_xla_flags_win(self):
        for flags in ("--xla_cpu_use_fusion_emitters=true", "--xla_cpu_use_fusion_emitters=false"):
            self.assertIsNone(train_step_compiler_options("cpu", {"XLA_FLAGS": flags}), msg=flags)

    def test_bad_switch_value__names_it(self):
        with self.assertRaisesRegex(ValueError, "KFP_XLA_FUSION_EMITTERS='fast'"):
            train_step_compiler_options("cpu", {"KFP_XLA_FUSION_EMITTERS": "fast"})
