/* Minimal unit-test harness. Each test file includes this once, defines
 * tests with TEST(name) and asserts with CHECK(cond, fmt, ...). The binary
 * prints one "PASS name" or "FAIL name: file:line: message" line per test
 * (tests/run.sh counts them) and exits non-zero if any test failed.
 * Optional: TEST_SETUP() runs once before all tests. */
#ifndef VIGIL_CHECK_H
#define VIGIL_CHECK_H

#include <errno.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef void (*check_fn)(void);
struct check_case { const char *name; check_fn fn; };

static struct check_case check_cases[512];
static int check_ncases;
static int check_failed_now;

static void check_register(const char *name, check_fn fn)
{
	if (check_ncases < (int)(sizeof(check_cases) / sizeof(check_cases[0])))
		check_cases[check_ncases++] = (struct check_case){ name, fn };
}

static void __attribute__((format(printf, 5, 6)))
check_fail(const char *test, const char *file, int line, const char *cond, const char *fmt, ...)
{
	va_list ap;
	check_failed_now = 1;
	printf("FAIL %s: %s:%d: ", test, file, line);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(" [%s]\n", cond);
	fflush(stdout);
}

#define TEST(name) \
	static void name(void); \
	__attribute__((constructor)) static void check_reg_##name(void) { check_register(#name, name); } \
	static void name(void)

/* CHECK returns from the test on failure; the message says what went wrong. */
#define CHECK(cond, ...) do { \
	if (!(cond)) { check_fail(__func__, __FILE__, __LINE__, #cond, __VA_ARGS__); return; } \
} while (0)

int main(int argc, char **argv)
{
	int failed = 0, passed = 0;
	for (int i = 0; i < check_ncases; i++) {
		if (argc > 1 && strcmp(argv[1], check_cases[i].name) != 0)
			continue;
		check_failed_now = 0;
		check_cases[i].fn();
		if (check_failed_now) {
			failed++;
		} else {
			passed++;
			printf("PASS %s\n", check_cases[i].name);
		}
		fflush(stdout);
	}
	return failed ? 1 : (passed ? 0 : 1);
}

#endif
