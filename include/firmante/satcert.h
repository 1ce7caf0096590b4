/*
 * SAT certificates (e.firma / FIEL and CSD): the fields a Título Electrónico
 * needs from a signer's X.509 certificate.
 *
 * Rules (../shared/spec/titulo-electronico.md §7, fixtures README):
 *  - noCertificado: the serial number's content bytes (big-endian magnitude,
 *    no DER sign byte) read as ASCII; exactly 20 bytes, each '0'..'9'.
 *  - CURP: subject attribute serialNumber (OID 2.5.4.5), read by OID; the
 *    value may hold more than the CURP (" / HEGT761003MDFRNN09"): take the
 *    text after the last '/', trimmed; it must be 18 characters.
 *  - RFC: subject attribute x500UniqueIdentifier (OID 2.5.4.45); SAT writes
 *    "AAA010101AAA / HEGT7610034S2" for legal persons: the first RFC is the
 *    holder's, the second the representative's.
 *  - Kind: a subject with an OU attribute is a CSD (sello digital); without
 *    one it is an e.firma (FIEL). Titles need a FIEL.
 */
#ifndef FIRMANTE_SATCERT_H
#define FIRMANTE_SATCERT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

enum fm_satcert_kind {
	FM_SATCERT_FIEL = 1, /* e.firma: subject has no OU */
	FM_SATCERT_CSD = 2,  /* certificado de sello digital: subject has an OU */
};

/* Fields read from one certificate. Strings are UTF-8, NUL-terminated;
 * an absent attribute gives "". */
struct fm_satcert {
	char subject[512];        /* one line, RFC 2253 order, UTF-8 */
	char subject_cn[256];     /* commonName (2.5.4.3) */
	char issuer_cn[256];      /* issuer commonName */
	char curp[19];            /* 18 chars or "" when the subject has none */
	char rfc[14];             /* holder's RFC (12 or 13 chars) or "" */
	char rfc_representative[14]; /* second RFC after " / ", or "" */
	char ou[128];             /* subject OU, "" for a FIEL */
	char no_certificado[21];  /* 20 ASCII digits */
	time_t not_before;        /* UTC, seconds since the epoch */
	time_t not_after;         /* UTC, seconds since the epoch */
	int kind;                 /* enum fm_satcert_kind */
	int key_bits;             /* RSA modulus size in bits, 0 if not RSA */
};

/*
 * fm_satcert_parse_der - read the SAT fields of a DER certificate.
 * @der, @len: the certificate bytes (a .cer file), not retained.
 * @out: written only on success.
 * Returns 0, or
 *   FIRMANTE_E_CERT_INVALID  not a DER X.509 certificate (or trailing bytes),
 *   FIRMANTE_E_CERT_SERIAL   serial is not 20 ASCII digits (not a SAT certificate),
 *   FIRMANTE_E_NOMEM.
 * A missing CURP is not an error here: curp is "" and the caller decides.
 */
int fm_satcert_parse_der(const uint8_t *der, size_t len, struct fm_satcert *out);

/*
 * fm_satcert_check_validity - is the certificate valid at @when?
 * Returns 0, FIRMANTE_E_CERT_EXPIRED (when > not_after) or
 * FIRMANTE_E_CERT_NOT_YET_VALID (when < not_before). RFC 5280 §4.1.2.5:
 * both bounds are inclusive.
 */
int fm_satcert_check_validity(const struct fm_satcert *c, time_t when);

/*
 * fm_satcert_kind_name - "e.firma (FIEL)" / "CSD (sello digital)" / "unknown".
 */
const char *fm_satcert_kind_name(int kind);

/*
 * fm_time_iso8601 - format @t (UTC) as "YYYY-MM-DDTHH:MM:SSZ" into @buf
 * (at least 21 bytes). Returns @buf.
 */
char *fm_time_iso8601(time_t t, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
