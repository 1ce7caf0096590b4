/* Unit tests for common/satcert.c against the real SAT test certificates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "firmante/protocol.h"
#include "firmante/satcert.h"
#include "firmante/util.h"

#define FIEL_CER FIRMANTE_SHARED_DIR "/fixtures/sat/FIEL_AAA010101AAA/certificate.cer"
#define CSD_CER FIRMANTE_SHARED_DIR "/fixtures/sat/CSD01_AAA010101AAA/certificate.cer"

static void load(const char *path, char **buf, size_t *len)
{
	assert_int_equal(fm_read_file(path, 1 << 20, buf, len), 0);
}

static time_t utc(int y, int mo, int d, int h, int mi, int s)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = s;
	return timegm(&tm);
}

static void test_fiel(void **state)
{
	char *der;
	size_t len;
	struct fm_satcert c;
	char when[32];

	load(FIEL_CER, &der, &len);
	assert_int_equal(fm_satcert_parse_der((const uint8_t *)der, len, &c), 0);
	assert_string_equal(c.no_certificado, "30001000000300023685");
	assert_string_equal(c.curp, "HEGT761003MDFRNN09");
	assert_string_equal(c.rfc, "AAA010101AAA");
	assert_string_equal(c.rfc_representative, "HEGT7610034S2");
	assert_int_equal(c.kind, FM_SATCERT_FIEL);
	assert_string_equal(c.ou, "");
	assert_string_equal(c.subject_cn, "ACCEM SERVICIOS EMPRESARIALES SC");
	assert_string_equal(c.issuer_cn, "A.C. 2 de pruebas(4096)");
	assert_int_equal(c.key_bits, 2048);
	assert_non_null(strstr(c.subject, "CN=ACCEM SERVICIOS EMPRESARIALES SC"));
	assert_int_equal(c.not_before, utc(2017, 5, 16, 23, 29, 17));
	assert_int_equal(c.not_after, utc(2021, 5, 15, 23, 29, 17));
	assert_string_equal(fm_time_iso8601(c.not_before, when, sizeof(when)), "2017-05-16T23:29:17Z");
	assert_string_equal(fm_time_iso8601(c.not_after, when, sizeof(when)), "2021-05-15T23:29:17Z");
	assert_string_equal(fm_satcert_kind_name(c.kind), "e.firma (FIEL)");

	/* Bounds are inclusive (RFC 5280 §4.1.2.5). */
	assert_int_equal(fm_satcert_check_validity(&c, c.not_before), 0);
	assert_int_equal(fm_satcert_check_validity(&c, c.not_after), 0);
	assert_int_equal(fm_satcert_check_validity(&c, c.not_after + 1), FIRMANTE_E_CERT_EXPIRED);
	assert_int_equal(fm_satcert_check_validity(&c, c.not_before - 1),
			 FIRMANTE_E_CERT_NOT_YET_VALID);
	assert_int_equal(fm_satcert_check_validity(&c, time(NULL)), FIRMANTE_E_CERT_EXPIRED);
	free(der);
}

static void test_csd(void **state)
{
	char *der;
	size_t len;
	struct fm_satcert c;

	load(CSD_CER, &der, &len);
	assert_int_equal(fm_satcert_parse_der((const uint8_t *)der, len, &c), 0);
	assert_string_equal(c.no_certificado, "30001000000300023708");
	assert_int_equal(c.kind, FM_SATCERT_CSD);
	assert_string_equal(c.ou, "CSD01_AAA010101AAA");
	assert_string_equal(c.curp, "HEGT761003MDFRNN09");
	assert_string_equal(c.rfc, "AAA010101AAA");
	assert_string_equal(c.rfc_representative, "HEGT7610034S2");
	assert_int_equal(c.not_before, utc(2017, 5, 18, 3, 54, 56));
	assert_int_equal(c.not_after, utc(2021, 5, 18, 3, 54, 56));
	assert_string_equal(fm_satcert_kind_name(c.kind), "CSD (sello digital)");
	assert_string_equal(fm_satcert_kind_name(0), "unknown");
	free(der);
}

static void test_garbage(void **state)
{
	struct fm_satcert c;
	char *der;
	size_t len;
	static const uint8_t junk[] = "this is not a certificate";

	memset(&c, 0x5a, sizeof(c));
	assert_int_equal(fm_satcert_parse_der(junk, sizeof(junk), &c), FIRMANTE_E_CERT_INVALID);
	assert_int_equal(fm_satcert_parse_der(junk, 0, &c), FIRMANTE_E_CERT_INVALID);
	/* Output untouched on failure. */
	assert_int_equal(((unsigned char *)&c)[0], 0x5a);

	load(FIEL_CER, &der, &len);
	/* Truncated at every tenth length. */
	for (size_t n = 1; n < len; n += 10)
		assert_int_equal(fm_satcert_parse_der((const uint8_t *)der, n, &c),
				 FIRMANTE_E_CERT_INVALID);
	assert_int_equal(fm_satcert_parse_der((const uint8_t *)der, len - 1, &c),
			 FIRMANTE_E_CERT_INVALID);
	/* One trailing byte. */
	char *longer = malloc(len + 1);
	assert_non_null(longer);
	memcpy(longer, der, len);
	longer[len] = 0;
	assert_int_equal(fm_satcert_parse_der((const uint8_t *)longer, len + 1, &c),
			 FIRMANTE_E_CERT_INVALID);
	free(longer);
	free(der);
}

/*
 * A self-signed certificate with the given serial bytes and subject
 * serialNumber / x500UniqueIdentifier / OU values (NULL: absent).
 */
static void make_cert(EVP_PKEY *key, const uint8_t *serial, size_t serial_len,
		      const char *curp_attr, const char *rfc_attr, const char *ou,
		      uint8_t **der, size_t *der_len)
{
	X509 *x = X509_new();
	assert_non_null(x);
	assert_int_equal(X509_set_version(x, 2), 1);
	BIGNUM *bn = BN_bin2bn(serial, (int)serial_len, NULL);
	assert_non_null(bn);
	ASN1_INTEGER *ai = BN_to_ASN1_INTEGER(bn, NULL);
	assert_non_null(ai);
	assert_int_equal(X509_set_serialNumber(x, ai), 1);
	ASN1_INTEGER_free(ai);
	BN_free(bn);
	X509_NAME *n = X509_NAME_new();
	assert_non_null(n);
	assert_int_equal(X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8,
						    (const unsigned char *)"JOSÉ PÉREZ", -1, -1, 0), 1);
	if (ou)
		assert_int_equal(X509_NAME_add_entry_by_NID(n, NID_organizationalUnitName, MBSTRING_ASC,
							    (const unsigned char *)ou, -1, -1, 0), 1);
	if (rfc_attr)
		assert_int_equal(X509_NAME_add_entry_by_NID(n, NID_x500UniqueIdentifier, V_ASN1_PRINTABLESTRING,
							    (const unsigned char *)rfc_attr, -1, -1, 0), 1);
	if (curp_attr)
		assert_int_equal(X509_NAME_add_entry_by_NID(n, NID_serialNumber, V_ASN1_PRINTABLESTRING,
							    (const unsigned char *)curp_attr, -1, -1, 0), 1);
	assert_int_equal(X509_set_subject_name(x, n), 1);
	assert_int_equal(X509_set_issuer_name(x, n), 1);
	X509_NAME_free(n);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
	assert_int_equal(X509_set_pubkey(x, key), 1);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	unsigned char *buf = NULL;
	int len = i2d_X509(x, &buf);
	assert_true(len > 0);
	*der = malloc((size_t)len);
	assert_non_null(*der);
	memcpy(*der, buf, (size_t)len);
	*der_len = (size_t)len;
	OPENSSL_free(buf);
	X509_free(x);
}

static int group_setup(void **state)
{
	EVP_PKEY *key = EVP_RSA_gen(2048);
	if (!key)
		return -1;
	*state = key;
	return 0;
}

static int group_teardown(void **state)
{
	EVP_PKEY_free(*state);
	return 0;
}

static void test_serials(void **state)
{
	EVP_PKEY *key = *state;
	uint8_t *der;
	size_t len;
	struct fm_satcert c;

	/* Non-digit serial. */
	make_cert(key, (const uint8_t *)"3000100000030002368A", 20, NULL, NULL, NULL, &der, &len);
	assert_int_equal(fm_satcert_parse_der(der, len, &c), FIRMANTE_E_CERT_SERIAL);
	free(der);
	/* 19 and 21 digits. */
	make_cert(key, (const uint8_t *)"3000100000030002368", 19, NULL, NULL, NULL, &der, &len);
	assert_int_equal(fm_satcert_parse_der(der, len, &c), FIRMANTE_E_CERT_SERIAL);
	free(der);
	make_cert(key, (const uint8_t *)"300010000003000236851", 21, NULL, NULL, NULL, &der, &len);
	assert_int_equal(fm_satcert_parse_der(der, len, &c), FIRMANTE_E_CERT_SERIAL);
	free(der);
	/* A small integer serial such as 1. */
	make_cert(key, (const uint8_t *)"\x01", 1, NULL, NULL, NULL, &der, &len);
	assert_int_equal(fm_satcert_parse_der(der, len, &c), FIRMANTE_E_CERT_SERIAL);
	free(der);

	/* Production-style serial starting "0000": leading 0x30 bytes are kept. */
	make_cert(key, (const uint8_t *)"00001000000504465028", 20, "PEGJ800101HDFRRN09",
		  "PEGJ800101AB1", NULL, &der, &len);
	assert_int_equal(fm_satcert_parse_der(der, len, &c), 0);
	assert_string_equal(c.no_certificado, "00001000000504465028");
	assert_string_equal(c.curp, "PEGJ800101HDFRRN09");
	assert_string_equal(c.rfc, "PEGJ800101AB1");
	assert_string_equal(c.rfc_representative, "");
	assert_string_equal(c.subject_cn, "JOSÉ PÉREZ");
	assert_non_null(strstr(c.subject, "CN=JOSÉ PÉREZ"));
	assert_int_equal(c.kind, FM_SATCERT_FIEL);
	assert_int_equal(c.key_bits, 2048);
	assert_int_equal(c.not_after - c.not_before, 3600);
	free(der);
}

static void test_subject_fields(void **state)
{
	EVP_PKEY *key = *state;
	uint8_t *der;
	size_t len;
	struct fm_satcert c;
	static const uint8_t serial[] = "30001000000300099999";

	/* No CURP, no RFC: not an error, fields empty. */
	make_cert(key, serial, 20, NULL, NULL, NULL, &der, &len);
	assert_int_equal(fm_satcert_parse_der(der, len, &c), 0);
	assert_string_equal(c.curp, "");
	assert_string_equal(c.rfc, "");
	free(der);
	/* CURP of the wrong length. */
	make_cert(key, serial, 20, " / HEGT761003MDFRNN0", "AAA010101AAA", NULL, &der, &len);
	assert_int_equal(fm_satcert_parse_der(der, len, &c), 0);
	assert_string_equal(c.curp, "");
	assert_string_equal(c.rfc, "AAA010101AAA");
	free(der);
	/* Several slashes: the last part counts; spaces trimmed. */
	make_cert(key, serial, 20, "X / Y /  HEGT761003MDFRNN09 ", " AAA010101AAA/HEGT7610034S2 ",
		  "Sucursal 1", &der, &len);
	assert_int_equal(fm_satcert_parse_der(der, len, &c), 0);
	assert_string_equal(c.curp, "HEGT761003MDFRNN09");
	assert_string_equal(c.rfc, "AAA010101AAA");
	assert_string_equal(c.rfc_representative, "HEGT7610034S2");
	assert_int_equal(c.kind, FM_SATCERT_CSD);
	assert_string_equal(c.ou, "Sucursal 1");
	free(der);
}

static void test_iso8601(void **state)
{
	char buf[32];
	assert_string_equal(fm_time_iso8601(0, buf, sizeof(buf)), "1970-01-01T00:00:00Z");
	assert_string_equal(fm_time_iso8601(utc(2024, 2, 29, 12, 0, 1), buf, sizeof(buf)),
			    "2024-02-29T12:00:01Z");
	/* Too small: empty string, no overflow. */
	assert_string_equal(fm_time_iso8601(0, buf, 5), "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fiel),
		cmocka_unit_test(test_csd),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_serials),
		cmocka_unit_test(test_subject_fields),
		cmocka_unit_test(test_iso8601),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
