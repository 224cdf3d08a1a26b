// Minimal test harness. Each test binary prints one line per check:
//   "PASS name", "FAIL name: why" or "SKIP name: why"; tests/run_tests.sh counts them.
#ifndef DT_TEST_UTIL_H
#define DT_TEST_UTIL_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int dt_test_failures = 0;

#define TEST_PASS(name) printf("PASS %s\n", name)
#define TEST_FAIL(name, ...) do { printf("FAIL %s: ", name); printf(__VA_ARGS__); printf("\n"); dt_test_failures++; } while (0)
#define TEST_SKIP(name, ...) do { printf("SKIP %s: ", name); printf(__VA_ARGS__); printf("\n"); } while (0)
#define TEST_CHECK(name, cond, ...) do { if (cond) TEST_PASS(name); else TEST_FAIL(name, __VA_ARGS__); } while (0)
#define TEST_EXIT() do { fflush(stdout); return dt_test_failures ? 1 : 0; } while (0)

// Where the shared fixtures live (../shared/fixtures beside the project root), or NULL when absent.
static inline const char *dt_test_fixtures(void) {
    const char *env = getenv("DT_FIXTURES");
    if (env && access(env, R_OK) == 0) return env;
    if (access("../shared/fixtures", R_OK) == 0) return "../shared/fixtures";
    return NULL;
}

#endif
