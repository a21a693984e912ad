"""Prints "name passed failed skipped exit seconds" (tab-separated) from a pytest JUnit XML report."""

import sys
import xml.etree.ElementTree as ET

path, name, rc, seconds = sys.argv[1:5]
try:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
except (OSError, ET.ParseError):
    total, failed, skipped = 0, 1, 0
if int(rc) != 0 and failed == 0:
    failed = 1  # pytest itself failed (no tests collected, crash): count it.
passed = total - failed - skipped
print(f"{name}\t{passed}\t{failed}\t{skipped}\t{rc}\t{seconds}")
