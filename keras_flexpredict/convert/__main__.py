"""`python -m keras_flexpredict.convert`: see `keras_flexpredict.convert.cli`."""

from keras_flexpredict.convert.cli import run

if __name__ == "__main__":
    run()
