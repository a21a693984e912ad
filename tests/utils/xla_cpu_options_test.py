from keras_flexpredict.testing import TestCase
from keras_flexpredict.utils.xla_cpu_options import train_step_compiler_options

ELEMENTAL = {"xla_cpu_use_fusion_emitters": False}


class TrainStepCompilerOptionsTest(TestCase):
    def test_default__xla_defaults(self):
        for platform in ("cpu", "gpu", "tpu"):
            self.assertIsNone(train_step_compiler_options(platform, {}), msg=platform)
        self.assertIsNone(train_step_compiler_options("cpu", {"KFP_XLA_FUSION_EMITTERS": "1"}))

    def test_opt_in__elemental_emitters_on_cpu_only(self):
        for value in ("0", "false", "OFF"):
            env = {"KFP_XLA_FUSION_EMITTERS": value}
            self.assertEqual(train_step_compiler_options("cpu", env), ELEMENTAL, msg=value)
            self.assertIsNone(train_step_compiler_options("gpu", env), msg=value)
        # Other XLA flags the user sets do not turn it off.
        env = {"KFP_XLA_FUSION_EMITTERS": "0", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
        self.assertEqual(train_step_compiler_options("cpu", env), ELEMENTAL)

    def test_user_xla_flags_win(self):
        for flags in ("--xla_cpu_use_fusion_emitters=true", "--xla_cpu_use_fusion_emitters=false"):
            env = {"KFP_XLA_FUSION_EMITTERS": "0", "XLA_FLAGS": flags}
            self.assertIsNone(train_step_compiler_options("cpu", env), msg=flags)
