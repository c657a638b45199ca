"""Make mutmut's mutants/ tree (the copy of the package with every mutant beside its original, and the .meta
files) without its stats collection and test run: the first step of `mutmut run`, alone (~20 s), for
benchmarks/mutants_check.py. It calls mutmut 3.8.1's own generation functions (pinned in the `mutation` extra).
usage (from the repository root): .venv/bin/python benchmarks/mutants_generate.py"""
import os

from mutmut.__main__ import (copy_also_copy_files, copy_src_dir, create_mutants, setup_source_paths,
                             store_lines_covered_by_tests)
from mutmut.mutation.trampoline import set_mutant_under_test

set_mutant_under_test("mutant_generation")
os.makedirs("mutants", exist_ok=True)
copy_src_dir()
copy_also_copy_files()
setup_source_paths()
store_lines_covered_by_tests()
stats = create_mutants(2)
print("mutated", stats.mutated, "unmodified", stats.unmodified, "ignored", stats.ignored)
