/*
 * SAT certificate fields (common/satcert.c, fm_satcert_parse_der).
 * Properties on success: every string is NUL-terminated within its field,
 * noCertificado is 20 ASCII digits, the CURP is "" or 18 characters, the
 * kind is FIEL or CSD and agrees with the OU, validity checks answer.
 */
#include <string.h>

#include "firmante/protocol.h"
#include "firmante/satcert.h"
#include "fuzz.h"

#define TERMINATED(field) (memchr((field), '\0', sizeof(field)) != NULL)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fm_satcert c;
	char when[32];
	int rc;

	memset(&c, 0xa5, sizeof(c));
	rc = fm_satcert_parse_der(data, size, &c);
	if (rc != 0) {
		if (rc != FIRMANTE_E_CERT_INVALID && rc != FIRMANTE_E_CERT_SERIAL &&
		    rc != FIRMANTE_E_NOMEM)
			fuzz_fail("undocumented error %d", rc);
		return 0;
	}
	if (!TERMINATED(c.subject) || !TERMINATED(c.subject_cn) || !TERMINATED(c.issuer_cn) ||
	    !TERMINATED(c.curp) || !TERMINATED(c.rfc) || !TERMINATED(c.rfc_representative) ||
	    !TERMINATED(c.ou) || !TERMINATED(c.no_certificado))
		fuzz_fail("a field is not NUL-terminated");
	if (strlen(c.no_certificado) != 20 || strspn(c.no_certificado, "0123456789") != 20)
		fuzz_fail("noCertificado \"%s\" is not 20 digits", c.no_certificado);
	if (c.curp[0] && strlen(c.curp) != 18)
		fuzz_fail("CURP \"%s\" is not 18 characters", c.curp);
	if (c.kind != FM_SATCERT_FIEL && c.kind != FM_SATCERT_CSD)
		fuzz_fail("kind %d", c.kind);
	if ((c.kind == FM_SATCERT_CSD) != (c.ou[0] != '\0'))
		fuzz_fail("kind %d disagrees with OU \"%s\"", c.kind, c.ou);
	rc = fm_satcert_check_validity(&c, c.not_before);
	if (rc != 0 && c.not_before <= c.not_after)
		fuzz_fail("not valid at its own notBefore");
	fm_time_iso8601(c.not_after, when, sizeof(when));
	if (!TERMINATED(when))
		fuzz_fail("time not terminated");
	(void)fm_satcert_kind_name(c.kind);
	return 0;
}
