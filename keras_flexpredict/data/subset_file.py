"""ImageNet low-shot subset lists (the 1% and 10% splits of SimCLR / I-JEPA)."""

import os
import re

# `<wnid>_<number>.JPEG`, e.g. `n01440764_10026.JPEG`: a class-folder prefix,
# an underscore, and an image file name without any directory part.
_LINE = re.compile(r"^(?P<class_name>[^\s_/\\]+)_[^\s/\\]+\.(?:jpe?g|png)$", re.IGNORECASE)


def read_subset_file(path):
    """Reads an ImageNet subset list (e.g. the 1% or 10% split files).

    One image file name per line, like `n01440764_10026.JPEG`: the part
    before the first underscore is the class folder. Blank lines and lines
    starting with `#` are ignored; surrounding whitespace is stripped.

    Args:
        path: str. The text file.

    Returns:
        list of str: the file names, in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line is not a file name of that form, or repeats an
            earlier one (the error names the line number), or the file lists
            no image.

    Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "1percent.txt")
    >>> _ = open(path, "w").write("# 1%\\nn01440764_10026.JPEG\\n\\nn01443537_2.JPEG\\n")
    >>> read_subset_file(path)
    ['n01440764_10026.JPEG', 'n01443537_2.JPEG']
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Subset file not found. Received: path={path}")
    names, first_line = [], {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            if not _LINE.match(entry):
                raise ValueError(
                    f"Malformed line {number} in subset file {path}: expected an image file name like "
                    f"'n01440764_10026.JPEG'. Received: line={line.rstrip(chr(10))!r}"
                )
            if entry in first_line:
                raise ValueError(
                    f"Line {number} of subset file {path} repeats line {first_line[entry]}. Received: line={entry!r}"
                )
            first_line[entry] = number
            names.append(entry)
    if not names:
        raise ValueError(f"Subset file lists no image. Received: path={path}")
    return names


def subset_class_name(file_name):
    """The class folder of a subset entry: `n01440764_10026.JPEG` -> `n01440764`."""
    return file_name.split("_", 1)[0]


def filter_by_subset(paths, labels, subset):
    """Keeps the images of a folder listing that a subset list names.

    An entry matches a path whose file name equals it and whose parent folder
    is the entry's class (`n01440764_10026.JPEG` matches
    `.../n01440764/n01440764_10026.JPEG`). Every entry must match.

    Args:
        paths: sequence of str. Image paths, as from `list_image_folder`.
        labels: sequence of int. Their labels.
        subset: sequence of str, as from `read_subset_file`.

    Returns:
        `(paths, labels)` of the kept images, in the listing's order.

    Raises:
        ValueError: some entries match no path (the error gives the count and
            the first few).

    Example:
    >>> filter_by_subset(["r/a/a_1.png", "r/a/a_2.png"], [0, 0], ["a_2.png"])
    (['r/a/a_2.png'], [0])
    """
    wanted = set(subset)
    kept_paths, kept_labels, found = [], [], set()
    for path, label in zip(paths, labels):
        name = os.path.basename(path)
        if name in wanted and os.path.basename(os.path.dirname(path)) == subset_class_name(name):
            kept_paths.append(path)
            kept_labels.append(label)
            found.add(name)
    missing = [name for name in subset if name not in found]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(wanted)} subset entries match no image in the listing; first ones: "
            f"{missing[:5]}. Is the subset file for this data set and split?"
        )
    return kept_paths, kept_labels
