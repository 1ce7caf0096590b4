/* The protocol's error table: codes are unique, round-trip, and map to
 * HTTP statuses (include/firmante/protocol.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "firmante/protocol.h"

static void test_codes_unique_and_round_trip(void **state)
{
	(void)state;
	for (int e = FIRMANTE_E__LAST; e <= 0; e++) {
		const char *code = firmante_err_code(e);
		assert_non_null(code);
		if (e != FIRMANTE_E_INTERNAL)
			assert_string_not_equal(code, "internal");
		assert_int_equal(firmante_err_from_code(code), e);
		for (int o = FIRMANTE_E__LAST; o < e; o++)
			assert_string_not_equal(firmante_err_code(o), code);
		int http = firmante_err_http_status(e);
		assert_true(e == 0 ? http == 200 : http >= 400 && http <= 599);
	}
}

static void test_known_values(void **state)
{
	(void)state;
	assert_string_equal(firmante_err_code(FIRMANTE_E_USER_DENIED), "user-denied");
	assert_string_equal(firmante_err_code(FIRMANTE_E_PIN_LOCKED), "pin-locked");
	assert_string_equal(firmante_err_code(FIRMANTE_E_TOKEN_REMOVED), "token-removed");
	assert_string_equal(firmante_err_code(FIRMANTE_E_CERT_EXPIRED), "cert-expired");
	assert_int_equal(firmante_err_http_status(FIRMANTE_E_TOO_LARGE), 413);
	assert_int_equal(firmante_err_http_status(FIRMANTE_E_FORBIDDEN), 403);
	assert_int_equal(firmante_err_from_code("no-such-code"), FIRMANTE_E_PROTOCOL);
	assert_int_equal(firmante_err_from_code(NULL), FIRMANTE_E_PROTOCOL);
	assert_string_equal(firmante_err_code(-999), "internal");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_codes_unique_and_round_trip),
		cmocka_unit_test(test_known_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
