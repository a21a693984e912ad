import csv
import os

import keras
import numpy as np

from keras_flexpredict.testing import TestCase
from recipes.train_csv_logger import TrainCSVLogger


def rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


class TrainCSVLoggerTest(TestCase):
    def test_logger__no_empty_validation_columns_and_resumed_runs_append(self):
        path = os.path.join(self.get_temp_dir(), "log.csv")
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        model.compile(optimizer="sgd", loss="mse")
        x = np.ones((4, 3), "float32")
        model.fit(x, x[:, :2], epochs=2, verbose=0, callbacks=[TrainCSVLogger(path)])
        self.assertEqual(rows(path)[0], ["epoch", "loss"])
        model.fit(x, x[:, :2], epochs=3, initial_epoch=2, verbose=0, callbacks=[TrainCSVLogger(path)])
        self.assertEqual([r[0] for r in rows(path)], ["epoch", "0", "1", "2"])

    def test_drop_rows_from__epochs_to_redo_and_a_cut_line(self):
        path = os.path.join(self.get_temp_dir(), "log.csv")
        with open(path, "w", newline="") as f:
            f.write("epoch,loss,lr\r\n0,0.5,1\r\n1,0.4,1\r\n2,0.3,1\r\n3,0.")  # killed while writing
        self.assertEqual(TrainCSVLogger.drop_rows_from(path, 2), 2)
        self.assertEqual(rows(path), [["epoch", "loss", "lr"], ["0", "0.5", "1"], ["1", "0.4", "1"]])
        self.assertEqual(TrainCSVLogger.drop_rows_from(path, 2), 0)
        self.assertEqual(TrainCSVLogger.drop_rows_from(os.path.join(self.get_temp_dir(), "none.csv"), 0), 0)
        self.assertEqual(os.listdir(os.path.dirname(path)), ["log.csv"])
