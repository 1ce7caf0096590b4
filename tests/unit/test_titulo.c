/*
 * Título Electrónico model: parsing, cadena original (§5), serialization
 * (§1), empty vs absent attributes, structure errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "firmante/titulo.h"
#include "firmante/util.h"

#define EXAMPLE FIRMANTE_SHARED_DIR "/spec/examples/oficial-reconstruido-sin-firma.xml"
#define CADENA FIRMANTE_SHARED_DIR "/spec/examples/oficial-cadena-firmaresponsable.txt"

static char *load(const char *path, size_t *len)
{
	char *buf = NULL;
	assert_int_equal(fm_read_file(path, 4u << 20, &buf, len), 0);
	return buf;
}

/* Replace the first occurrence of @from in @s by @to; returns a new string. */
static char *replace(const char *s, const char *from, const char *to)
{
	const char *p = strstr(s, from);
	assert_non_null(p);
	size_t a = (size_t)(p - s), fl = strlen(from), tl = strlen(to), rest = strlen(p + fl);
	char *r = malloc(a + tl + rest + 1);
	assert_non_null(r);
	memcpy(r, s, a);
	memcpy(r + a, to, tl);
	memcpy(r + a + tl, p + fl, rest + 1);
	return r;
}

/* Remove the empty element starting with @start ("<Antecedente "). */
static char *remove_elem(const char *s, const char *start)
{
	const char *p = strstr(s, start);
	assert_non_null(p);
	const char *q = strstr(p, "/>");
	assert_non_null(q);
	size_t a = (size_t)(p - s), rest = strlen(q + 2);
	char *r = malloc(a + rest + 1);
	assert_non_null(r);
	memcpy(r, s, a);
	memcpy(r + a, q + 2, rest + 1);
	return r;
}

static titulo *parse_ok(const char *xml)
{
	titulo *t = NULL;
	struct titulo_error err = { 0 };
	int rc = titulo_parse(xml, strlen(xml), &t, &err);
	if (rc)
		fail_msg("parse failed: %s: %s", err.field, err.message);
	return t;
}

static int parse_fails(const char *xml, struct titulo_error *err)
{
	titulo *t = NULL;
	int rc = titulo_parse(xml, strlen(xml), &t, err);
	assert_null(t);
	return rc;
}

static void test_official_cadena(void **state)
{
	(void)state;
	size_t xl, cl, ol;
	char *xml = load(EXAMPLE, &xl), *want = load(CADENA, &cl), *got = NULL;
	titulo *t = NULL;
	assert_int_equal(titulo_parse(xml, xl, &t, NULL), 0);
	assert_int_equal(titulo_firmantes_count(t), 1);
	assert_int_equal(titulo_cadena(t, 0, &got, &ol), 0);
	assert_int_equal(ol, cl);
	assert_memory_equal(got, want, cl);
	assert_int_equal(ol, 405);
	assert_string_equal(titulo_firmante_attr(t, 0, "curp"), "EICA750212HDFRNL01");
	assert_string_equal(titulo_attr(t, "Carrera", "nombreCarrera"), "INGENIERÍA EN NANOTECNOLOGÍA");
	assert_null(titulo_attr(t, "Carrera", "numeroRvoe"));
	assert_null(titulo_firmante_attr(t, 1, "curp"));
	assert_null(titulo_attr(t, "Nada", "curp"));
	char *bad = NULL;
	assert_int_equal(titulo_cadena(t, 1, &bad, &ol), FIRMANTE_E_BAD_DOCUMENT);
	free(got);
	titulo_free(t);
	free(xml);
	free(want);
}

static void test_roundtrip(void **state)
{
	(void)state;
	size_t xl;
	char *xml = load(EXAMPLE, &xl);
	/* two signers and values with entities and white space inside */
	char *x1 = replace(xml, "nombre=\"ANTONIO\"", "nombre=\"ANTONIO &amp; &quot;TOÑO&quot; &lt;X&gt;&#10;&#9;Y\"");
	char *x2 = replace(x1, "</FirmaResponsables>",
			   "<FirmaResponsable nombre=\"B\" primerApellido=\"C\" curp=\"ROSL750822MJCDNR01\" idCargo=\"6\" cargo=\"SECRETARIO GENERAL\" sello=\"QUJD\" certificadoResponsable=\"QUJD\" noCertificadoResponsable=\"00000000000000000001\"/></FirmaResponsables>");
	titulo *t = parse_ok(x2), *t2 = NULL;
	assert_string_equal(titulo_attr(t, "Profesionista", "nombre"), "ANTONIO & \"TOÑO\" <X>\n\tY");
	char *out = NULL;
	size_t ol;
	assert_int_equal(titulo_serialize(t, &out, &ol), 0);
	assert_int_equal(strlen(out), ol);
	assert_true(strncmp(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<TituloElectronico xmlns=\"https://www.siged.sep.gob.mx/titulos/\"", 100) == 0);
	assert_non_null(strstr(out, "nombre=\"ANTONIO &amp; &quot;TOÑO&quot; &lt;X&gt;&#10;&#9;Y\""));
	assert_null(strstr(out, "=\"\""));
	assert_int_equal(titulo_parse(out, ol, &t2, NULL), 0);
	assert_int_equal(titulo_firmantes_count(t2), 2);
	for (size_t i = 0; i < 2; i++) {
		char *a = NULL, *b = NULL;
		size_t al, bl;
		assert_int_equal(titulo_cadena(t, i, &a, &al), 0);
		assert_int_equal(titulo_cadena(t2, i, &b, &bl), 0);
		assert_int_equal(al, bl);
		assert_memory_equal(a, b, al);
		if (i == 0)
			assert_non_null(strstr(a, "|ANTONIO & \"TOÑO\" <X>\n\tY|"));
		free(a);
		free(b);
	}
	/* serialize twice gives the same bytes */
	char *out2 = NULL;
	size_t ol2;
	assert_int_equal(titulo_serialize(t2, &out2, &ol2), 0);
	assert_int_equal(ol, ol2);
	assert_memory_equal(out, out2, ol);
	/* attributes in XSD order: Carrera cveCarrera before nombreCarrera ... */
	const char *c = strstr(out, "<Carrera ");
	assert_non_null(c);
	assert_true(strstr(c, "cveCarrera") < strstr(c, "fechaTerminacion"));
	assert_true(strstr(c, "fechaInicio") < strstr(c, "fechaTerminacion"));
	free(out);
	free(out2);
	titulo_free(t);
	titulo_free(t2);
	free(x1);
	free(x2);
	free(xml);
}

static void test_empty_vs_absent(void **state)
{
	(void)state;
	size_t xl;
	char *xml = load(EXAMPLE, &xl);
	char *x1 = replace(xml, "fechaExamenProfesional=\"2010-08-16\"",
			   "fechaExamenProfesional=\"2010-08-16\" fechaExencionExamenProfesional=\"\"");
	titulo *t = parse_ok(x1), *t0 = parse_ok(xml);
	/* present and empty is not absent */
	assert_non_null(titulo_attr(t, "Expedicion", "fechaExencionExamenProfesional"));
	assert_string_equal(titulo_attr(t, "Expedicion", "fechaExencionExamenProfesional"), "");
	assert_null(titulo_attr(t0, "Expedicion", "fechaExencionExamenProfesional"));
	/* both give an empty field in the cadena */
	char *a = NULL, *b = NULL;
	size_t al, bl;
	assert_int_equal(titulo_cadena(t, 0, &a, &al), 0);
	assert_int_equal(titulo_cadena(t0, 0, &b, &bl), 0);
	assert_int_equal(al, bl);
	assert_memory_equal(a, b, al);
	/* the serializer never writes an empty attribute */
	char *out = NULL;
	size_t ol;
	assert_int_equal(titulo_serialize(t, &out, &ol), 0);
	assert_null(strstr(out, "fechaExencionExamenProfesional"));
	free(out);
	/* absent required attribute: no cadena */
	char *x2 = replace(xml, " cveCarrera=\"103339\"", "");
	titulo *t2 = parse_ok(x2);
	char *c = NULL;
	char field[128];
	assert_int_equal(titulo_cadena(t2, 0, &c, &al), FIRMANTE_E_BAD_DOCUMENT);
	assert_null(c);
	assert_int_equal(titulo_cadena_check(t2, 0, field, sizeof(field)), FIRMANTE_E_BAD_DOCUMENT);
	assert_string_equal(field, "Carrera/@cveCarrera");
	/* present but empty required attribute: empty field */
	char *x3 = replace(xml, "cveCarrera=\"103339\"", "cveCarrera=\"\"");
	titulo *t3 = parse_ok(x3);
	assert_int_equal(titulo_cadena(t3, 0, &c, &al), 0);
	assert_non_null(strstr(c, "DE AGUASCALIENTES||INGENIER"));
	free(c);
	/* '|' inside a value */
	char *x4 = replace(xml, "nombre=\"ANTONIO\"", "nombre=\"ANTO|NIO\"");
	titulo *t4 = parse_ok(x4);
	assert_int_equal(titulo_cadena(t4, 0, &c, &al), FIRMANTE_E_BAD_DOCUMENT);
	assert_int_equal(titulo_cadena_check(t4, 0, field, sizeof(field)), FIRMANTE_E_INVALID);
	assert_string_equal(field, "Profesionista/@nombre");
	titulo_free(t);
	titulo_free(t0);
	titulo_free(t2);
	titulo_free(t3);
	titulo_free(t4);
	free(a);
	free(b);
	free(x1);
	free(x2);
	free(x3);
	free(x4);
	free(xml);
}

static void test_structure_errors(void **state)
{
	(void)state;
	size_t xl;
	char *xml = load(EXAMPLE, &xl);
	struct titulo_error err;
	char *x;

	x = replace(xml, "<FirmaResponsables>", "<firmaResponsables>");
	char *y = replace(x, "</FirmaResponsables>", "</firmaResponsables>");
	memset(&err, 0, sizeof(err));
	assert_int_equal(parse_fails(y, &err), FIRMANTE_E_BAD_DOCUMENT);
	assert_non_null(strstr(err.message, "'firmaResponsables'"));
	assert_non_null(strstr(err.message, "'FirmaResponsables'"));
	free(x);
	free(y);

	x = replace(xml, "xmlns=\"https://www.siged.sep.gob.mx/titulos/\"", "xmlns=\"http://www.siged.sep.gob.mx/titulos/\"");
	assert_int_equal(parse_fails(x, &err), FIRMANTE_E_BAD_DOCUMENT);
	assert_non_null(strstr(err.message, "namespace"));
	free(x);

	x = replace(xml, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
		    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><!DOCTYPE x [<!ENTITY a \"b\">]>");
	assert_int_equal(parse_fails(x, &err), FIRMANTE_E_BAD_DOCUMENT);
	assert_non_null(strstr(err.message, "DOCTYPE"));
	free(x);

	/* Institucion and Carrera swapped */
	x = replace(xml, "<Institucion ", "<Carrera ");
	assert_int_equal(parse_fails(x, &err), FIRMANTE_E_BAD_DOCUMENT);
	assert_non_null(strstr(err.message, "Institucion"));
	free(x);

	/* no FirmaResponsable */
	x = remove_elem(xml, "<FirmaResponsable ");
	assert_int_equal(parse_fails(x, &err), FIRMANTE_E_BAD_DOCUMENT);
	assert_non_null(strstr(err.message, "at least one"));
	free(x);

	/* misspelled attribute */
	x = replace(xml, "folioControl=", "foliocontrol=");
	assert_int_equal(parse_fails(x, &err), FIRMANTE_E_BAD_DOCUMENT);
	assert_non_null(strstr(err.message, "'folioControl'"));
	free(x);

	/* missing Antecedente */
	x = remove_elem(xml, "<Antecedente ");
	assert_int_equal(parse_fails(x, &err), FIRMANTE_E_BAD_DOCUMENT);
	assert_non_null(strstr(err.message, "Antecedente"));
	free(x);

	/* text content */
	x = replace(xml, "<Institucion ", "hola<Institucion ");
	assert_int_equal(parse_fails(x, &err), FIRMANTE_E_BAD_DOCUMENT);
	free(x);

	/* not well-formed */
	assert_int_equal(parse_fails("<TituloElectronico", &err), FIRMANTE_E_BAD_DOCUMENT);

	/* too large */
	titulo *t = NULL;
	assert_int_equal(titulo_parse(xml, FIRMANTE_MAX_DOCUMENT + 1, &t, &err), FIRMANTE_E_TOO_LARGE);
	free(xml);
}

static void test_build_model(void **state)
{
	(void)state;
	titulo *t = NULL;
	size_t i;
	assert_int_equal(titulo_new(&t), 0);
	assert_int_equal(titulo_firmante_add(t, &i), 0);
	assert_int_equal(i, 0);
	assert_int_equal(titulo_firmante_set_attr(t, 0, "curp", "X"), 0);
	assert_int_equal(titulo_firmante_set_attr(t, 0, "nope", "X"), FIRMANTE_E_BAD_REQUEST);
	assert_int_equal(titulo_set_attr(t, "Carrera", "cveCarrera", "1\x01"), FIRMANTE_E_INVALID);
	assert_int_equal(titulo_set_attr(t, "Autenticacion", "version", "1.0"), FIRMANTE_E_BAD_REQUEST);
	assert_int_equal(titulo_set_firma(t, 0, "not base64!", "QUJD", "00000000000000000001"), FIRMANTE_E_BAD_REQUEST);
	assert_int_equal(titulo_set_firma(t, 0, "QUJD", "QUJD", "0000000000000000001"), FIRMANTE_E_BAD_REQUEST);
	assert_int_equal(titulo_set_firma(t, 1, "QUJD", "QUJD", "00000000000000000001"), FIRMANTE_E_BAD_REQUEST);
	assert_int_equal(titulo_set_firma(t, 0, "QUJD", "QUJD", "00000000000000000001"), 0);
	assert_string_equal(titulo_firmante_attr(t, 0, "sello"), "QUJD");
	assert_string_equal(titulo_attr(t, "TituloElectronico", "version"), "1.0");
	titulo_free(t);
	titulo_free(NULL);
}

/* Deterministic byte mutations of the example: parsing never crashes, and a
 * document that parses gives the same cadenas after serialize → parse. */
static void test_mutations(void **state)
{
	(void)state;
	size_t xl;
	char *xml = load(EXAMPLE, &xl);
	static const char alphabet[] = "<>&\"'=/|; \t\nAz\xC3\xA9\x80\x01";
	uint64_t x = 0x9E3779B97F4A7C15u;
	char *m = malloc(xl + 1);
	int parsed = 0;
	for (int round = 0; round < 3000; round++) {
		memcpy(m, xml, xl + 1);
		int edits = 1 + round % 3;
		for (int e = 0; e < edits; e++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			size_t pos = (size_t)(x % xl);
			m[pos] = alphabet[(x >> 32) % (sizeof(alphabet) - 1)];
		}
		titulo *t = NULL, *t2 = NULL;
		if (titulo_parse(m, xl, &t, NULL) != 0)
			continue;
		parsed++;
		char *out = NULL;
		size_t ol;
		assert_int_equal(titulo_serialize(t, &out, &ol), 0);
		assert_int_equal(titulo_parse(out, ol, &t2, NULL), 0);
		char *a = NULL, *b = NULL;
		size_t al, bl;
		int ra = titulo_cadena(t, 0, &a, &al), rb = titulo_cadena(t2, 0, &b, &bl);
		if (ra == 0 && rb == 0)
			assert_string_equal(a, b);
		free(a);
		free(b);
		free(out);
		titulo_free(t);
		titulo_free(t2);
	}
	assert_true(parsed > 0);
	free(m);
	free(xml);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_official_cadena),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_empty_vs_absent),
		cmocka_unit_test(test_structure_errors),
		cmocka_unit_test(test_build_model),
		cmocka_unit_test(test_mutations),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
