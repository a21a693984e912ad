import os

from keras_flexpredict.data import filter_by_subset
from keras_flexpredict.data import read_subset_file
from keras_flexpredict.testing import TestCase


class ReadSubsetFileTest(TestCase):
    def _write(self, text):
        path = os.path.join(self.get_temp_dir(), "1percent.txt")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_read__names_in_order_skipping_blank_lines_and_comments(self):
        path = self._write("# ImageNet 1%\nn01440764_10026.JPEG\n\n  n01443537_2.JPEG  \r\n# end\nn01484850_1.jpeg")
        self.assertEqual(read_subset_file(path), ["n01440764_10026.JPEG", "n01443537_2.JPEG", "n01484850_1.jpeg"])

    def test_read__malformed_line_raises_naming_its_number(self):
        for bad in ("n01440764/n01440764_1.JPEG", "n01440764_1.JPEG 12", "n01440764.JPEG", "n01440764_1.txt"):
            path = self._write(f"n01443537_2.JPEG\n\n{bad}\n")
            with self.assertRaisesRegex(ValueError, "line 3"):
                read_subset_file(path)

    def test_read__repeated_entry_raises(self):
        path = self._write("n01443537_2.JPEG\nn01443537_2.JPEG\n")
        with self.assertRaisesRegex(ValueError, "Line 2 .* repeats line 1"):
            read_subset_file(path)

    def test_read__missing_or_empty_file_raises(self):
        with self.assertRaisesRegex(FileNotFoundError, "nothing.txt"):
            read_subset_file(os.path.join(self.get_temp_dir(), "nothing.txt"))
        with self.assertRaisesRegex(ValueError, "no image"):
            read_subset_file(self._write("# only a comment\n\n"))


class FilterBySubsetTest(TestCase):
    def test_filter__keeps_listed_images_of_their_class_folder(self):
        paths = ["r/n1/n1_1.JPEG", "r/n1/n1_2.JPEG", "r/n2/n2_1.JPEG", "r/n2/n1_2.JPEG"]
        kept, labels = filter_by_subset(paths, [0, 0, 1, 1], ["n2_1.JPEG", "n1_2.JPEG"])
        self.assertEqual(kept, ["r/n1/n1_2.JPEG", "r/n2/n2_1.JPEG"])
        self.assertEqual(labels, [0, 1])

    def test_filter__entries_matching_nothing_raise(self):
        with self.assertRaisesRegex(ValueError, "1 of 2 subset entries.*n3_1.JPEG"):
            filter_by_subset(["r/n1/n1_1.JPEG"], [0], ["n1_1.JPEG", "n3_1.JPEG"])
