// doctest's implementation and the shared main(), compiled once (sb_doctest_main) and linked into
// every test program: compiling it into each suite cost 5-9 s a program.
#include "tests/support/doctest_main.hpp"
