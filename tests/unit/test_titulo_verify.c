/*
 * Verification of signed titles (§6, §7, §11): a run-time SAT-like test
 * certificate signs the official example; tampering with any cadena field,
 * a wrong noCertificado or a CSD is reported against the FirmaResponsable;
 * the SAT FIEL fixture's known-answer sello verifies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "firmante/titulo.h"
#include "firmante/util.h"

#define EXAMPLE FIRMANTE_SHARED_DIR "/spec/examples/oficial-reconstruido-sin-firma.xml"
#define FIEL_CER FIRMANTE_SHARED_DIR "/fixtures/sat/FIEL_AAA010101AAA/certificate.cer"
#define KAT_SELLO                                                                            \
	"eiMxTf/StKZgAetxdGl8gnlRNvR1Tx7UnOjyDjoyvGlLnW/e/HM29rUQzP1aFHdeYA+IaVmpabrNLQl4kG3UYbY" \
	"CVH7H1eM8Y1tieGtW/xvSQxQcJFnidmmpSSEEzIdKVU7nsyvQ0v9APJpt/z0Z3TSggeQqL8KxfgHMVZzzmzzoPH" \
	"9eCP0WIk1V9Uto2oaemLzwDSO6t1lhNoLjKWtYFoTJ3zBWirf8qxJbTB5CzPxKxEJMgL69YoYpfT0JoO9Ulf8b" \
	"nOg5fQgw9m2KxDkIPiRw3B0TppLmbdupjq/Z7lF1830jRNMkpfaPBOxzje5KPRBFfWkO/4tEuP0+ee8USA=="

#define TEST_CURP "EICA750212HDFRNL01" /* the example's signer */
#define TEST_NOCERT "30001000000300099999"

static EVP_PKEY *g_key;
static char *g_fiel_b64, *g_csd_b64;
static titulo_verifier *g_v;

static char *load(const char *path, size_t *len)
{
	char *buf = NULL;
	assert_int_equal(fm_read_file(path, 4u << 20, &buf, len), 0);
	return buf;
}

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

/* A SAT-like certificate: serial = ASCII of 20 digits, subject
 * serialNumber = CURP, x500UniqueIdentifier = RFC, OU only for a CSD. */
static char *make_cert(EVP_PKEY *key, const char *curp, const char *nocert, const char *ou)
{
	X509 *x = X509_new();
	assert_non_null(x);
	BIGNUM *bn = BN_bin2bn((const unsigned char *)nocert, (int)strlen(nocert), NULL);
	ASN1_INTEGER *serial = BN_to_ASN1_INTEGER(bn, NULL);
	assert_int_equal(X509_set_serialNumber(x, serial), 1);
	X509_set_version(x, 2);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 365);
	X509_NAME *n = X509_NAME_new();
	assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8,
		(const unsigned char *)"ALEJANDRO PRUEBA PÉREZ", -1, -1, 0), 1);
	assert_int_equal(X509_NAME_add_entry_by_txt(n, "x500UniqueIdentifier", MBSTRING_UTF8,
		(const unsigned char *)"EICA750212AB1", -1, -1, 0), 1);
	assert_int_equal(X509_NAME_add_entry_by_txt(n, "serialNumber", MBSTRING_UTF8,
		(const unsigned char *)curp, -1, -1, 0), 1);
	if (ou)
		assert_int_equal(X509_NAME_add_entry_by_txt(n, "OU", MBSTRING_UTF8,
			(const unsigned char *)ou, -1, -1, 0), 1);
	X509_set_subject_name(x, n);
	X509_set_issuer_name(x, n);
	X509_set_pubkey(x, key);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	unsigned char *der = NULL;
	int dl = i2d_X509(x, &der);
	assert_true(dl > 0);
	char *b64 = NULL;
	assert_int_equal(fm_base64_encode(der, (size_t)dl, &b64), 0);
	OPENSSL_free(der);
	X509_NAME_free(n);
	ASN1_INTEGER_free(serial);
	BN_free(bn);
	X509_free(x);
	return b64;
}

static char *sign_b64(EVP_PKEY *key, const char *data, size_t len)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	size_t sl = 0;
	assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key), 1);
	assert_int_equal(EVP_DigestSign(md, NULL, &sl, (const unsigned char *)data, len), 1);
	unsigned char *sig = malloc(sl);
	assert_int_equal(EVP_DigestSign(md, sig, &sl, (const unsigned char *)data, len), 1);
	char *b64 = NULL;
	assert_int_equal(fm_base64_encode(sig, sl, &b64), 0);
	free(sig);
	EVP_MD_CTX_free(md);
	return b64;
}

static int setup(void **state)
{
	(void)state;
	g_key = EVP_RSA_gen(2048);
	if (!g_key)
		return -1;
	g_fiel_b64 = make_cert(g_key, TEST_CURP, TEST_NOCERT, NULL);
	g_csd_b64 = make_cert(g_key, TEST_CURP, TEST_NOCERT, "CSD01_PRUEBA");
	struct titulo_error err;
	if (titulo_verifier_new(NULL, &g_v, &err) != 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(g_key);
	free(g_fiel_b64);
	free(g_csd_b64);
	titulo_verifier_free(g_v);
	return 0;
}

/* The official example signed for its FirmaResponsable with @cert_b64. */
static char *signed_example(const char *cert_b64, const char *nocert, size_t *len)
{
	size_t xl;
	char *xml = load(EXAMPLE, &xl), *cadena = NULL, *out = NULL;
	titulo *t = NULL;
	size_t cl;
	assert_int_equal(titulo_parse(xml, xl, &t, NULL), 0);
	assert_int_equal(titulo_cadena(t, 0, &cadena, &cl), 0);
	char *sello = sign_b64(g_key, cadena, cl);
	assert_int_equal(titulo_set_firma(t, 0, sello, cert_b64, nocert), 0);
	assert_int_equal(titulo_serialize(t, &out, len), 0);
	free(sello);
	free(cadena);
	titulo_free(t);
	free(xml);
	return out;
}

static const struct titulo_finding *find_field(const struct titulo_findings *f, const char *field)
{
	for (size_t i = 0; i < f->count; i++)
		if (strcmp(f->items[i].field, field) == 0)
			return &f->items[i];
	return NULL;
}

static void dump(const struct titulo_findings *f)
{
	char line[1024];
	for (size_t i = 0; i < f->count; i++)
		print_message("  %s\n", titulo_finding_format(&f->items[i], line, sizeof(line)));
}

static void test_signed_ok(void **state)
{
	(void)state;
	size_t len;
	char *xml = signed_example(g_fiel_b64, TEST_NOCERT, &len);
	struct titulo_findings f = { 0 };
	int rc = titulo_verify(g_v, xml, len, 0, &f);
	dump(&f);
	assert_int_equal(rc, 0);
	assert_int_equal(f.errors, 0);
	titulo_findings_clear(&f);
	free(xml);
}

static void expect_tamper(const char *xml, const char *from, const char *to)
{
	char *bad = replace(xml, from, to);
	struct titulo_findings f = { 0 };
	assert_int_equal(titulo_verify(g_v, bad, strlen(bad), 0, &f), FIRMANTE_E_INVALID);
	const struct titulo_finding *s = find_field(&f, "sello");
	assert_non_null(s);
	assert_int_equal(s->firmante, 0);
	assert_string_equal(s->curp, TEST_CURP);
	char line[1024];
	titulo_finding_format(s, line, sizeof(line));
	assert_non_null(strstr(line, "FirmaResponsable[1] (" TEST_CURP "): sello: "));
	titulo_findings_clear(&f);
	free(bad);
}

static void test_tampered(void **state)
{
	(void)state;
	size_t len;
	char *xml = signed_example(g_fiel_b64, TEST_NOCERT, &len);
	expect_tamper(xml, "nombre=\"ANTONIO\"", "nombre=\"ANTONIA\"");
	expect_tamper(xml, "fechaTerminacion=\"2009-06-12\"", "fechaTerminacion=\"2009-06-13\"");
	expect_tamper(xml, "idCargo=\"3\"", "idCargo=\"4\"");
	expect_tamper(xml, "folioControl=\"2345678\"", "folioControl=\"2345679\"");
	expect_tamper(xml, "cargo=\"RECTOR\"", "cargo=\"RECTOR GENERAL\"");
	expect_tamper(xml, "entidadFederativa=\"CIUDAD DE MÉXICO\" fechaInicio", "entidadFederativa=\"MÉXICO\" fechaInicio");
	free(xml);
}

static void test_wrong_nocert(void **state)
{
	(void)state;
	size_t len;
	char *xml = signed_example(g_fiel_b64, "30001000000300011111", &len);
	struct titulo_findings f = { 0 };
	assert_int_equal(titulo_verify(g_v, xml, len, 0, &f), FIRMANTE_E_INVALID);
	dump(&f);
	assert_int_equal(f.errors, 1);
	const struct titulo_finding *s = find_field(&f, "noCertificadoResponsable");
	assert_non_null(s);
	assert_int_equal(s->firmante, 0);
	assert_string_equal(s->curp, TEST_CURP);
	assert_non_null(strstr(s->message, TEST_NOCERT));
	titulo_findings_clear(&f);
	free(xml);
}

static void test_csd(void **state)
{
	(void)state;
	size_t len;
	char *xml = signed_example(g_csd_b64, TEST_NOCERT, &len);
	struct titulo_findings f = { 0 };
	assert_int_equal(titulo_verify(g_v, xml, len, 0, &f), FIRMANTE_E_INVALID);
	dump(&f);
	assert_int_equal(f.errors, 1);
	assert_int_equal(f.items[0].code, FIRMANTE_E_CERT_NOT_FIEL);
	assert_non_null(strstr(f.items[0].message, "not an e.firma"));
	assert_int_equal(f.items[0].firmante, 0);
	titulo_findings_clear(&f);
	free(xml);
}

/* SAT FIEL fixture: the README's known-answer sello over the official
 * cadena. The certificate's CURP is not the example's: exactly one finding
 * (curp), and the sello itself verifies. */
static void test_known_answer(void **state)
{
	(void)state;
	size_t xl, cl;
	char *xml = load(EXAMPLE, &xl), *cer = load(FIEL_CER, &cl), *cer_b64 = NULL, *out = NULL;
	assert_int_equal(fm_base64_encode((const uint8_t *)cer, cl, &cer_b64), 0);
	titulo *t = NULL;
	assert_int_equal(titulo_parse(xml, xl, &t, NULL), 0);
	assert_int_equal(titulo_set_firma(t, 0, KAT_SELLO, cer_b64, "30001000000300023685"), 0);
	size_t ol;
	assert_int_equal(titulo_serialize(t, &out, &ol), 0);
	struct titulo_findings f = { 0 };
	assert_int_equal(titulo_verify(g_v, out, ol, 0, &f), FIRMANTE_E_INVALID);
	dump(&f);
	assert_int_equal(f.errors, 1);
	assert_int_equal(f.count, 1);
	assert_string_equal(f.items[0].field, "curp");
	assert_non_null(strstr(f.items[0].message, "HEGT761003MDFRNN09"));
	assert_null(find_field(&f, "sello"));
	titulo_findings_clear(&f);
	/* and the sello does not verify once the data change */
	char *bad = replace(out, "ALPIZAR", "ALPÍZAR");
	assert_int_equal(titulo_verify(g_v, bad, strlen(bad), 0, &f), FIRMANTE_E_INVALID);
	assert_non_null(find_field(&f, "sello"));
	titulo_findings_clear(&f);
	free(bad);
	free(out);
	titulo_free(t);
	free(cer_b64);
	free(cer);
	free(xml);
}

static void test_xsd_and_autenticacion(void **state)
{
	(void)state;
	size_t len;
	char *xml = signed_example(g_fiel_b64, TEST_NOCERT, &len);
	struct titulo_findings f = { 0 };
	/* an empty optional attribute fails the XSD (§13.1) */
	char *bad = replace(xml, "fechaExamenProfesional=", "fechaExencionExamenProfesional=\"\" fechaExamenProfesional=");
	assert_int_equal(titulo_verify(g_v, bad, strlen(bad), 0, &f), FIRMANTE_E_INVALID);
	dump(&f);
	assert_true(f.errors >= 1);
	assert_non_null(strstr(f.items[0].field, "XSD"));
	titulo_findings_clear(&f);
	free(bad);
	/* the unsigned example: structure fine, sello checks fail */
	size_t xl;
	char *unsigned_xml = load(EXAMPLE, &xl);
	assert_int_equal(titulo_verify(g_v, unsigned_xml, xl, TITULO_VERIFY_UNSIGNED, &f), 0);
	assert_int_equal(titulo_verify(g_v, unsigned_xml, xl, 0, &f), FIRMANTE_E_INVALID);
	titulo_findings_clear(&f);
	free(unsigned_xml);
	/* Autenticacion with attributes: XSD checked without it; selloTitulo */
	titulo *t = NULL;
	assert_int_equal(titulo_parse(xml, len, &t, NULL), 0);
	const char *sello = titulo_firmante_attr(t, 0, "sello");
	size_t need = strlen(sello) + 400;
	char *node = malloc(need);
	snprintf(node, need, "<Autenticacion version=\"1.0\" folioDigital=\"ad662d33-6934-459c-a128-bdf0393e0f44\" "
		 "fechaAutenticacion=\"2019-01-01T10:00:00Z\" selloTitulo=\"%s\" noCertificadoAutoridad=\"00001000000400000000\" "
		 "selloAutenticacion=\"QUJD\"/></TituloElectronico>", sello);
	char *auth = replace(xml, "</TituloElectronico>", node);
	assert_int_equal(titulo_verify(g_v, auth, strlen(auth), 0, &f), 0);
	assert_int_equal(f.warnings, 1);
	titulo_findings_clear(&f);
	char *auth_bad = replace(auth, "selloTitulo=\"", "selloTitulo=\"|");
	assert_int_equal(titulo_verify(g_v, auth_bad, strlen(auth_bad), 0, &f), FIRMANTE_E_INVALID);
	assert_non_null(find_field(&f, "Autenticacion/@selloTitulo"));
	titulo_findings_clear(&f);
	free(auth_bad);
	free(auth);
	free(node);
	titulo_free(t);
	free(xml);
}

/* One verifier, more distinct certificates than it remembers (its cache of
 * read certificates holds 16), each seen twice in turn: the title signed
 * with g_key verifies with every certificate of g_key, and fails (sello)
 * with every certificate of another key, whatever was read before. A
 * certificate's number and kind come from that certificate (a CSD is
 * refused, a FIEL is not). */
static void test_many_certificates(void **state)
{
	(void)state;
	enum { N = 20 };
	EVP_PKEY *other = EVP_RSA_gen(2048);
	assert_non_null(other);
	char *certs[N], nocerts[N][21];
	for (int k = 0; k < N; k++) {
		snprintf(nocerts[k], sizeof(nocerts[k]), "300010000003000%05d", 100 + k);
		certs[k] = make_cert(k % 2 ? other : g_key, TEST_CURP, nocerts[k],
				     k % 5 == 4 ? "CSD01_PRUEBA" : NULL);
	}
	for (int round = 0; round < 2; round++) {
		for (int k = 0; k < N; k++) {
			size_t len;
			char *xml = signed_example(certs[k], nocerts[k], &len);
			struct titulo_findings f = { 0 };
			int rc = titulo_verify(g_v, xml, len, 0, &f);
			bool want_sello_error = k % 2 == 1, want_csd = k % 5 == 4;
			if (!want_sello_error && !want_csd) {
				dump(&f);
				assert_int_equal(rc, 0);
			} else {
				assert_int_equal(rc, FIRMANTE_E_INVALID);
			}
			assert_true((find_field(&f, "sello") != NULL) == want_sello_error);
			assert_null(find_field(&f, "noCertificadoResponsable"));
			bool csd_found = false;
			for (size_t i = 0; i < f.count; i++)
				csd_found |= f.items[i].code == FIRMANTE_E_CERT_NOT_FIEL;
			assert_true(csd_found == want_csd);
			titulo_findings_clear(&f);
			free(xml);
		}
	}
	for (int k = 0; k < N; k++)
		free(certs[k]);
	EVP_PKEY_free(other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_signed_ok),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_wrong_nocert),
		cmocka_unit_test(test_csd),
		cmocka_unit_test(test_known_answer),
		cmocka_unit_test(test_xsd_and_autenticacion),
		cmocka_unit_test(test_many_certificates),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
