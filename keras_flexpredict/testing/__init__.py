from keras_flexpredict.testing.test_case import TestCase
