#pragma once
// The main() of every test executable, compiled once (tests/support/doctest_main.cpp).
//
// CTest runs one test case per entry (`--test-case=<name>`, from doctest_discover_tests). A
// name the filter cannot match ran nothing, and doctest then exits 0: five email tests and
// eight others whose names held ';' (which CMake cuts a list at) passed that way for sessions
// without running. Here a run whose test-case filter selects no test case fails, naming it.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <string_view>

namespace sb::test {

inline int cases_run = -1;  // test cases that passed the filters; -1 until a run ends

struct CountCases : doctest::IReporter {
  explicit CountCases(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats& s) override {
    cases_run = static_cast<int>(s.numTestCasesPassingFilters);
  }
  void test_case_start(const doctest::TestCaseData&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};

}  // namespace sb::test

REGISTER_LISTENER("sb-count-cases", 1, sb::test::CountCases);

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  int result = context.run();
  if (context.shouldExit()) {
    return result;  // a query such as --list-test-cases
  }
  for (int i = 1; i < argc; ++i) {
    std::string_view arg(argv[i]);
    bool filter = arg.starts_with("--test-case=") || arg.starts_with("-tc=");
    if (filter && sb::test::cases_run == 0) {
      std::fprintf(stderr, "no test case matches %s: a name the filter cannot match runs nothing\n",
                   argv[i]);
      return 1;
    }
  }
  return result;
}
