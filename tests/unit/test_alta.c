/*
 * Onboarding rules without a token or a network (submitter/onboarding.h,
 * submitter/state.h): which signer certificates titulos alta hands to the
 * DGP (a CSD, an expired one, one expiring within 30 days, another CURP are
 * refused), calendar days, the level of a career from its name, the form of
 * folioDigital, and the onboarding records of the state database (profile
 * readiness with date and user, QA checks, certificates, authenticated
 * titles).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "firmante/protocol.h"
#include "onboarding.h"
#include "state.h"

static char tmpdir[256];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_alta.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char path[512];
	static const char *const names[] = { "s.db", "s.db-wal", "s.db-shm" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
		unlink(path);
	}
	rmdir(tmpdir);
	return 0;
}

static struct alta_cert good(void)
{
	struct alta_cert c;
	memset(&c, 0, sizeof(c));
	c.found = 1;
	snprintf(c.curp, sizeof(c.curp), "MEOJ700515HDFNRN00");
	snprintf(c.kind, sizeof(c.kind), "fiel");
	snprintf(c.not_before, sizeof(c.not_before), "2023-01-10");
	snprintf(c.not_after, sizeof(c.not_after), "2027-01-10");
	snprintf(c.no_certificado, sizeof(c.no_certificado), "30001000000400001001");
	return c;
}

static void test_signer_accepted(void **state)
{
	(void)state;
	struct alta_cert c = good();
	char reason[600] = "untouched";
	assert_int_equal(alta_check_signer("MEOJ700515HDFNRN00", &c, "2026-06-01", ALTA_MIN_DAYS,
					   reason, sizeof(reason)), 0);
	assert_string_equal(reason, "untouched");
	/* exactly 30 days left is still enough */
	assert_int_equal(alta_check_signer("MEOJ700515HDFNRN00", &c, "2026-12-11", 30, reason,
					   sizeof(reason)), 0);
}

static void test_signer_refused(void **state)
{
	(void)state;
	char reason[600];
	struct alta_cert c = good();
	c.found = 0;
	assert_int_equal(alta_check_signer("MEOJ700515HDFNRN00", &c, "2026-06-01", 30, reason,
					   sizeof(reason)), FIRMANTE_E_KEY_NOT_FOUND);
	assert_non_null(strstr(reason, "token"));

	c = good();
	snprintf(c.kind, sizeof(c.kind), "csd");
	assert_int_equal(alta_check_signer("MEOJ700515HDFNRN00", &c, "2026-06-01", 30, reason,
					   sizeof(reason)), FIRMANTE_E_CERT_NOT_FIEL);
	assert_non_null(strstr(reason, "CSD"));

	c = good();
	assert_int_equal(alta_check_signer("ROSL750822MJCDNR01", &c, "2026-06-01", 30, reason,
					   sizeof(reason)), FIRMANTE_E_INVALID);
	assert_non_null(strstr(reason, "ROSL750822MJCDNR01"));
	assert_non_null(strstr(reason, "MEOJ700515HDFNRN00"));

	c = good();
	assert_int_equal(alta_check_signer("MEOJ700515HDFNRN00", &c, "2027-01-11", 30, reason,
					   sizeof(reason)), FIRMANTE_E_CERT_EXPIRED);
	assert_non_null(strstr(reason, "venció el 2027-01-10"));

	/* 29 days left: expiring within 30 days */
	assert_int_equal(alta_check_signer("MEOJ700515HDFNRN00", &c, "2026-12-12", 30, reason,
					   sizeof(reason)), FIRMANTE_E_CERT_EXPIRED);
	assert_non_null(strstr(reason, "en 29 días"));

	assert_int_equal(alta_check_signer("MEOJ700515HDFNRN00", &c, "2022-12-31", 30, reason,
					   sizeof(reason)), FIRMANTE_E_CERT_NOT_YET_VALID);

	snprintf(c.not_after, sizeof(c.not_after), "2027-02-30");
	assert_int_equal(alta_check_signer("MEOJ700515HDFNRN00", &c, "2026-06-01", 30, reason,
					   sizeof(reason)), FIRMANTE_E_INVALID);
}

static void test_days(void **state)
{
	(void)state;
	long d = 0;
	assert_int_equal(alta_days_between("2026-01-01", "2026-03-02", &d), 0);
	assert_int_equal(d, 60);
	assert_int_equal(alta_days_between("2024-02-28", "2024-03-01", &d), 0);
	assert_int_equal(d, 2); /* leap year */
	assert_int_equal(alta_days_between("2026-03-02", "2026-01-01", &d), 0);
	assert_int_equal(d, -60);
	d = 7;
	assert_int_equal(alta_days_between("2026-1-01", "2026-03-02", &d), FIRMANTE_E_INVALID);
	assert_int_equal(alta_days_between("2026-13-01", "2026-03-02", &d), FIRMANTE_E_INVALID);
	assert_int_equal(alta_days_between("2026-01-01", "2026-03-02T00", &d), FIRMANTE_E_INVALID);
	assert_int_equal(d, 7); /* untouched on failure */
}

static void test_nivel(void **state)
{
	(void)state;
	assert_string_equal(alta_nivel("LICENCIATURA EN DERECHO"), "LICENCIATURA");
	assert_string_equal(alta_nivel("INGENIERÍA EN SISTEMAS COMPUTACIONALES"), "LICENCIATURA");
	assert_string_equal(alta_nivel("MAESTRÍA EN ADMINISTRACIÓN DE NEGOCIOS"), "MAESTRÍA");
	assert_string_equal(alta_nivel("DOCTORADO EN CIENCIAS"), "DOCTORADO");
	assert_string_equal(alta_nivel("ESPECIALIDAD EN ORTODONCIA"), "ESPECIALIDAD");
	assert_string_equal(alta_nivel("TÉCNICO SUPERIOR UNIVERSITARIO EN TURISMO"),
			    "TÉCNICO SUPERIOR UNIVERSITARIO");
	assert_null(alta_nivel("ENFERMERÍA"));
	assert_null(alta_nivel(NULL));
}

static void test_uuid(void **state)
{
	(void)state;
	assert_true(alta_is_uuid("ad662d33-6934-459c-a128-bdf0393e0f44"));
	assert_true(alta_is_uuid("AD662D33-6934-459C-A128-BDF0393E0F44"));
	assert_false(alta_is_uuid("ad662d33-6934-459c-a128-bdf0393e0f4"));
	assert_false(alta_is_uuid("ad662d33-6934-459c-a128-bdf0393e0f444"));
	assert_false(alta_is_uuid("ad662d336934-459c-a128-bdf0393e0f44x"));
	assert_false(alta_is_uuid("gd662d33-6934-459c-a128-bdf0393e0f44"));
	assert_false(alta_is_uuid(""));
	assert_false(alta_is_uuid(NULL));
}

static int count_cert(const struct met_certificado *c, void *arg)
{
	int *n = arg;
	if (*n == 0)
		assert_string_equal(c->no_certificado, "30001000000400001002"); /* earliest first */
	(*n)++;
	return 0;
}

static void test_state_records(void **state)
{
	(void)state;
	char path[512];
	met_state *st = NULL;
	struct met_error e = { 0 };
	snprintf(path, sizeof(path), "%s/s.db", tmpdir);
	assert_int_equal(met_state_open(path, &st, &e), 0);

	struct met_perfil p;
	assert_int_equal(met_state_perfil_get(st, "produccion", &p, &e), FIRMANTE_E_NOT_FOUND);
	assert_int_equal(met_state_perfil_set(st, "produccion", 1, "registro", "oficio 12", &e), 0);
	assert_int_equal(met_state_perfil_get(st, "produccion", &p, &e), 0);
	assert_int_equal(p.listo, 1);
	assert_string_equal(p.usuario, "registro");
	assert_string_equal(p.nota, "oficio 12");
	assert_int_equal(strlen(p.fecha), 20); /* 2026-01-01T00:00:00Z */
	assert_int_equal(met_state_perfil_set(st, "produccion", 0, "registro", NULL, &e), 0);
	assert_int_equal(met_state_perfil_get(st, "produccion", &p, &e), 0);
	assert_int_equal(p.listo, 0); /* withdrawn */

	struct met_qa_check q, q2;
	memset(&q, 0, sizeof(q));
	assert_int_equal(met_state_qa_last(st, &q2, &e), FIRMANTE_E_NOT_FOUND);
	snprintf(q.url, sizeof(q.url), "https://qa.example/met-ws/services/");
	q.listo = 0;
	assert_int_equal(met_state_qa_record(st, &q, &e), 0);
	q.listo = 1;
	snprintf(q.resumen, sizeof(q.resumen), "signer rector: ready\n");
	assert_int_equal(met_state_qa_record(st, &q, &e), 0);
	assert_int_equal(met_state_qa_last(st, &q2, &e), 0);
	assert_int_equal(q2.listo, 1);
	assert_string_equal(q2.resumen, "signer rector: ready\n");

	struct met_certificado c;
	memset(&c, 0, sizeof(c));
	snprintf(c.curp, sizeof(c.curp), "MEOJ700515HDFNRN00");
	snprintf(c.no_certificado, sizeof(c.no_certificado), "30001000000400001001");
	snprintf(c.not_after, sizeof(c.not_after), "2029-01-01");
	assert_int_equal(met_state_certificado_record(st, &c, &e), 0);
	assert_int_equal(met_state_certificado_record(st, &c, &e), 0); /* refreshed, not doubled */
	snprintf(c.no_certificado, sizeof(c.no_certificado), "30001000000400001002");
	snprintf(c.not_after, sizeof(c.not_after), "2027-01-01");
	assert_int_equal(met_state_certificado_record(st, &c, &e), 0);
	int n = 0;
	assert_int_equal(met_state_certificados_each(st, count_cert, &n, &e), 0);
	assert_int_equal(n, 2);

	struct met_autenticado a, a2;
	long count = -1;
	memset(&a, 0, sizeof(a));
	snprintf(a.folio, sizeof(a.folio), "UVC-2025-0001");
	snprintf(a.folio_digital, sizeof(a.folio_digital), "ad662d33-6934-459c-a128-bdf0393e0f44");
	assert_int_equal(met_state_autenticado_get(st, a.folio, &a2, &e), FIRMANTE_E_NOT_FOUND);
	assert_int_equal(met_state_autenticado_record(st, &a, &e), 0);
	assert_int_equal(met_state_autenticado_get(st, a.folio, &a2, &e), 0);
	assert_string_equal(a2.folio_digital, a.folio_digital);
	assert_int_equal(met_state_autenticados_count(st, &count, &e), 0);
	assert_int_equal(count, 1);
	met_state_close(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_signer_accepted),
		cmocka_unit_test(test_signer_refused),
		cmocka_unit_test(test_days),
		cmocka_unit_test(test_nivel),
		cmocka_unit_test(test_uuid),
		cmocka_unit_test(test_state_records),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
