/*
 * SAT certificates (include/firmante/satcert.h): noCertificado, CURP, RFC
 * and kind of an e.firma (FIEL) or CSD certificate, read with OpenSSL 3.
 * Rules: spec titulo-electronico.md §7 and the SAT fixtures README.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "firmante/protocol.h"
#include "firmante/satcert.h"
#include "firmante/util.h"

/* SAT certificate numbers: 20 ASCII digits (spec §7, project rule). */
#define SAT_SERIAL_LEN 20
/* CURP: 18 characters (RENAPO). */
#define CURP_LEN 18

/* Copy at most size-1 bytes of a UTF-8 string, never cutting a sequence. */
static void copy_utf8(char *dst, size_t size, const char *src, size_t len)
{
	if (size == 0)
		return;
	if (len > size - 1) {
		len = size - 1;
		/* Back up over continuation bytes so no sequence is cut. */
		while (len > 0 && ((unsigned char)src[len] & 0xC0) == 0x80)
			len--;
	}
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/*
 * The first value of attribute @nid in @name as UTF-8, malloc'd.
 * Returns 0 with *out NULL when the attribute is absent, or
 * FIRMANTE_E_CERT_INVALID when it cannot be converted, FIRMANTE_E_NOMEM.
 */
static int name_entry_utf8(const X509_NAME *name, int nid, char **out)
{
	*out = NULL;
	int idx = X509_NAME_get_index_by_NID(name, nid, -1);
	if (idx < 0)
		return 0;
	const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, idx);
	const ASN1_STRING *s = e ? X509_NAME_ENTRY_get_data(e) : NULL;
	if (!s)
		return FIRMANTE_E_CERT_INVALID;
	unsigned char *utf8 = NULL;
	int n = ASN1_STRING_to_UTF8(&utf8, s);
	if (n < 0)
		return FIRMANTE_E_CERT_INVALID;
	char *copy = malloc((size_t)n + 1);
	if (!copy) {
		OPENSSL_free(utf8);
		return FIRMANTE_E_NOMEM;
	}
	memcpy(copy, utf8, (size_t)n);
	copy[n] = '\0';
	OPENSSL_free(utf8);
	/* An embedded NUL would make the C string lie about its content. */
	if (strlen(copy) != (size_t)n) {
		free(copy);
		return FIRMANTE_E_CERT_INVALID;
	}
	*out = copy;
	return 0;
}

static int is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Trimmed span [*b, *e) of [s, s+len). */
static void trim_span(const char *s, size_t len, const char **b, const char **e)
{
	const char *p = s, *q = s + len;
	while (p < q && is_blank(*p))
		p++;
	while (q > p && is_blank(q[-1]))
		q--;
	*b = p;
	*e = q;
}

/* CURP: the text after the last '/', trimmed; 18 characters or "". */
static void extract_curp(const char *value, char out[CURP_LEN + 1])
{
	out[0] = '\0';
	if (!value)
		return;
	const char *start = strrchr(value, '/');
	start = start ? start + 1 : value;
	const char *b, *e;
	trim_span(start, strlen(start), &b, &e);
	if ((size_t)(e - b) != CURP_LEN)
		return;
	memcpy(out, b, CURP_LEN);
	out[CURP_LEN] = '\0';
}

/* One RFC (12 or 13 bytes after trimming) into @out (14 bytes), else "". */
static void copy_rfc(const char *s, size_t len, char out[14])
{
	const char *b, *e;
	out[0] = '\0';
	trim_span(s, len, &b, &e);
	size_t n = (size_t)(e - b);
	if (n < 12 || n > 13)
		return;
	for (size_t i = 0; i < n; i++)
		if (is_blank(b[i]) || b[i] == '/')
			return;
	memcpy(out, b, n);
	out[n] = '\0';
}

/* RFCs: "HOLDER" or "HOLDER / REPRESENTATIVE". */
static void extract_rfcs(const char *value, char holder[14], char repr[14])
{
	holder[0] = '\0';
	repr[0] = '\0';
	if (!value)
		return;
	const char *slash = strchr(value, '/');
	if (!slash) {
		copy_rfc(value, strlen(value), holder);
		return;
	}
	copy_rfc(value, (size_t)(slash - value), holder);
	const char *rest = slash + 1;
	/* Only one representative is defined; more slashes mean no second RFC. */
	if (strchr(rest, '/'))
		return;
	copy_rfc(rest, strlen(rest), repr);
}

static int asn1_time_to_time_t(const ASN1_TIME *t, time_t *out)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
		return FIRMANTE_E_CERT_INVALID;
	time_t v = timegm(&tm);
	if (v == (time_t)-1)
		return FIRMANTE_E_CERT_INVALID;
	*out = v;
	return 0;
}

static int subject_oneline(const X509_NAME *name, char *buf, size_t size)
{
	int rc = FIRMANTE_E_NOMEM;
	BIO *bio = BIO_new(BIO_s_mem());
	if (!bio)
		return FIRMANTE_E_NOMEM;
	unsigned long flags = XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB;
	if (X509_NAME_print_ex(bio, name, 0, flags) < 0) {
		rc = FIRMANTE_E_CERT_INVALID;
		goto out;
	}
	char *data = NULL;
	long n = BIO_get_mem_data(bio, &data);
	if (n < 0) {
		rc = FIRMANTE_E_CERT_INVALID;
		goto out;
	}
	copy_utf8(buf, size, data ? data : "", (size_t)n);
	rc = 0;
out:
	BIO_free(bio);
	return rc;
}

/* Copy attribute @nid of @name (UTF-8) into @dst, "" when absent. */
static int copy_attr(const X509_NAME *name, int nid, char *dst, size_t size, bool *present)
{
	char *v = NULL;
	int rc = name_entry_utf8(name, nid, &v);
	if (rc != 0)
		return rc;
	if (present)
		*present = v != NULL;
	copy_utf8(dst, size, v ? v : "", v ? strlen(v) : 0);
	free(v);
	return 0;
}

int fm_satcert_parse_der(const uint8_t *der, size_t len, struct fm_satcert *out)
{
	int rc = FIRMANTE_E_CERT_INVALID;
	X509 *x = NULL;
	char *serial_number = NULL, *unique_id = NULL;
	struct fm_satcert c;

	memset(&c, 0, sizeof(c));
	if (!der || !out || len == 0 || len > (size_t)LONG_MAX)
		return FIRMANTE_E_CERT_INVALID;

	const unsigned char *p = der;
	x = d2i_X509(NULL, &p, (long)len);
	if (!x || p != der + len) {
		/* Not DER, or bytes after the certificate. */
		rc = FIRMANTE_E_CERT_INVALID;
		goto out;
	}

	/* noCertificado: serial content bytes as ASCII (spec §7). */
	const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
	if (!serial || ASN1_STRING_type(serial) != V_ASN1_INTEGER) {
		/* Absent or negative: not a SAT certificate number. */
		rc = FIRMANTE_E_CERT_SERIAL;
		goto out;
	}
	const unsigned char *sb = ASN1_STRING_get0_data(serial);
	int sl = ASN1_STRING_length(serial);
	if (!sb || sl != SAT_SERIAL_LEN) {
		rc = FIRMANTE_E_CERT_SERIAL;
		goto out;
	}
	for (int i = 0; i < sl; i++) {
		if (sb[i] < '0' || sb[i] > '9') {
			rc = FIRMANTE_E_CERT_SERIAL;
			goto out;
		}
		c.no_certificado[i] = (char)sb[i];
	}
	c.no_certificado[SAT_SERIAL_LEN] = '\0';

	const X509_NAME *subject = X509_get_subject_name(x);
	const X509_NAME *issuer = X509_get_issuer_name(x);
	if (!subject || !issuer)
		goto out;

	rc = subject_oneline(subject, c.subject, sizeof(c.subject));
	if (rc != 0)
		goto out;
	rc = copy_attr(subject, NID_commonName, c.subject_cn, sizeof(c.subject_cn), NULL);
	if (rc != 0)
		goto out;
	rc = copy_attr(issuer, NID_commonName, c.issuer_cn, sizeof(c.issuer_cn), NULL);
	if (rc != 0)
		goto out;
	bool has_ou = false;
	rc = copy_attr(subject, NID_organizationalUnitName, c.ou, sizeof(c.ou), &has_ou);
	if (rc != 0)
		goto out;
	c.kind = has_ou ? FM_SATCERT_CSD : FM_SATCERT_FIEL;

	/* CURP from serialNumber (2.5.4.5), read by OID. */
	rc = name_entry_utf8(subject, NID_serialNumber, &serial_number);
	if (rc == FIRMANTE_E_CERT_INVALID)
		serial_number = NULL; /* unreadable: treated as absent */
	else if (rc != 0)
		goto out;
	extract_curp(serial_number, c.curp);

	/* RFC(s) from x500UniqueIdentifier (2.5.4.45). */
	rc = name_entry_utf8(subject, NID_x500UniqueIdentifier, &unique_id);
	if (rc == FIRMANTE_E_CERT_INVALID)
		unique_id = NULL;
	else if (rc != 0)
		goto out;
	extract_rfcs(unique_id, c.rfc, c.rfc_representative);

	rc = asn1_time_to_time_t(X509_get0_notBefore(x), &c.not_before);
	if (rc != 0)
		goto out;
	rc = asn1_time_to_time_t(X509_get0_notAfter(x), &c.not_after);
	if (rc != 0)
		goto out;

	EVP_PKEY *pk = X509_get0_pubkey(x);
	if (pk && EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA)
		c.key_bits = EVP_PKEY_get_bits(pk);

	*out = c;
	rc = 0;
out:
	free(serial_number);
	free(unique_id);
	X509_free(x);
	return rc;
}

int fm_satcert_check_validity(const struct fm_satcert *c, time_t when)
{
	if (when > c->not_after)
		return FIRMANTE_E_CERT_EXPIRED;
	if (when < c->not_before)
		return FIRMANTE_E_CERT_NOT_YET_VALID;
	return 0;
}

const char *fm_satcert_kind_name(int kind)
{
	switch (kind) {
	case FM_SATCERT_FIEL:
		return "e.firma (FIEL)";
	case FM_SATCERT_CSD:
		return "CSD (sello digital)";
	default:
		return "unknown";
	}
}

char *fm_time_iso8601(time_t t, char *buf, size_t size)
{
	struct tm tm;
	if (!buf || size == 0)
		return buf;
	if (!gmtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		buf[0] = '\0';
	return buf;
}
