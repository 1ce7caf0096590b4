/*
 * Título Electrónico XML (submitter/titulo.c, verify.c): titulo_parse, the
 * cadena original, serialization and titulo_verify with the XSD.
 * Properties:
 *  - titulo_cadena_check() answers 0 exactly when titulo_cadena() succeeds;
 *  - a parsed document serializes, the serialization parses again, and
 *    every cadena that could be built is byte for byte the same after the
 *    round trip (what was shown and signed is what is sent);
 *  - titulo_verify() returns only its documented codes, and an error
 *    finding comes with FIRMANTE_E_INVALID.
 */
#include <string.h>

#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "firmante/titulo.h"
#include "fuzz.h"

static titulo_verifier *g_verifier;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct titulo_error err;

	(void)argc;
	(void)argv;
	if (titulo_verifier_new(NULL, &g_verifier, &err) != 0) {
		fprintf(stderr, "fuzz_titulo: the XSD could not be compiled: %s\n", err.message);
		abort();
	}
	return 0;
}

static void check_cadenas(const titulo *a, const titulo *b)
{
	size_t n = titulo_firmantes_count(a);

	if (titulo_firmantes_count(b) != n)
		fuzz_fail("%zu signers before serializing, %zu after", n,
			  titulo_firmantes_count(b));
	for (size_t i = 0; i <= n; i++) {
		char *ca = NULL, *cb = NULL, field[128];
		size_t la = 0, lb = 0;
		int ra, rb, rc;

		ra = titulo_cadena(a, i, &ca, &la);
		rc = titulo_cadena_check(a, i, field, sizeof(field));
		if ((ra == 0) != (rc == 0))
			fuzz_fail("signer %zu: titulo_cadena %d but titulo_cadena_check %d", i, ra, rc);
		if (i == n && ra == 0)
			fuzz_fail("a cadena for signer %zu of %zu", i, n);
		rb = titulo_cadena(b, i, &cb, &lb);
		if (ra == 0 && rb == 0 && (la != lb || memcmp(ca, cb, la) != 0))
			fuzz_fail("signer %zu: the cadena changed through serialize+parse:\n%s\n%s", i,
				  ca, cb);
		free(ca);
		free(cb);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct titulo_findings f;
	struct titulo_error err;
	titulo *t = NULL, *again = NULL;
	char *xml = NULL;
	size_t len = 0;
	int rc;

	memset(&f, 0, sizeof(f));
	rc = titulo_parse((const char *)data, size, &t, &err);
	if (rc == 0) {
		if (titulo_firmantes_count(t) < 1)
			fuzz_fail("a parsed document without FirmaResponsable");
		rc = titulo_serialize(t, &xml, &len);
		if (rc == 0) {
			rc = titulo_parse(xml, len, &again, &err);
			if (rc != 0)
				fuzz_fail("our serialization does not parse (%d, line %d, %s: %s):\n%s",
					  rc, err.line, err.field, err.message, xml);
			check_cadenas(t, again);
		} else if (rc != FIRMANTE_E_NOMEM && rc != FIRMANTE_E_INTERNAL) {
			fuzz_fail("titulo_serialize: undocumented error %d", rc);
		}
	} else if (rc != FIRMANTE_E_BAD_DOCUMENT && rc != FIRMANTE_E_TOO_LARGE &&
		   rc != FIRMANTE_E_NOMEM) {
		fuzz_fail("titulo_parse: undocumented error %d", rc);
	}
	rc = titulo_verify(g_verifier, (const char *)data, size, 0, &f);
	if (rc != 0 && rc != FIRMANTE_E_INVALID && rc != FIRMANTE_E_NOMEM &&
	    rc != FIRMANTE_E_INTERNAL)
		fuzz_fail("titulo_verify: undocumented error %d", rc);
	if (rc == 0 && f.errors)
		fuzz_fail("titulo_verify passed with %zu error findings", f.errors);
	if (rc == FIRMANTE_E_INVALID && !f.errors)
		fuzz_fail("titulo_verify failed without an error finding");
	titulo_findings_clear(&f);
	titulo_free(again);
	titulo_free(t);
	free(xml);
	return 0;
}
