import numpy as np
import pytest

from keras_flexpredict.convert.positional_tables import bicubic_matrix
from keras_flexpredict.convert.positional_tables import is_sincos_table
from keras_flexpredict.convert.positional_tables import positional_table_for_grid
from keras_flexpredict.layers.sincos_positional_embedding import sincos_2d_positional_embedding
from keras_flexpredict.testing.test_case import TestCase


class PositionalTablesTest(TestCase):
    def test_bicubic_matrix__equals_torch_interpolate(self):
        torch = pytest.importorskip("torch")
        for n_in, n_out in ((4, 7), (16, 32), (7, 3), (32, 16), (5, 5)):
            x = torch.eye(n_in)[None, None]  # (1, 1, n_in, n_in): columns are unit vectors
            y = torch.nn.functional.interpolate(x, size=(n_out, n_in), mode="bicubic", align_corners=False)
            self.assertAllClose(bicubic_matrix(n_in, n_out), y[0, 0].numpy(), atol=1e-6)

    def test_sincos_detection_and_choice(self):
        table = sincos_2d_positional_embedding((4, 4), 16)
        self.assertTrue(is_sincos_table(table, (4, 4)))
        self.assertFalse(is_sincos_table(table, (2, 8)))
        self.assertFalse(is_sincos_table(table + 1e-3, (4, 4)))
        self.assertEqual(positional_table_for_grid(table, (4, 4), (4, 4))[1], "stored")
        new, how = positional_table_for_grid(table, (4, 4), (8, 6))
        self.assertEqual(how, "sincos")
        self.assertAllClose(new, sincos_2d_positional_embedding((8, 6), 16))
        self.assertEqual(positional_table_for_grid(table + 1e-3, (4, 4), (8, 6))[1], "bicubic")
