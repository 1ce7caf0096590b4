/*
 * Verification of a Título Electrónico: XSD (§1, §11), sello, certificate
 * and noCertificado of every FirmaResponsable (§6, §7), Autenticacion
 * (§11).
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlschemas.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "firmante/protocol.h"
#include "firmante/satcert.h"
#include "firmante/titulo-build.h"
#include "firmante/titulo.h"
#include "firmante/util.h"
#include "titulo-internal.h"

struct titulo_verifier {
	xmlSchemaPtr schema;
};

int titulo_verifier_new(const char *xsd_path, titulo_verifier **out, struct titulo_error *err)
{
	int rc;
	char path[4096];
	xmlSchemaParserCtxtPtr pctx = NULL;
	titulo_verifier *v = NULL;

	if (!xsd_path) {
		if (fm_data_path("TituloElectronico.xsd", path, sizeof(path)) != 0) {
			te_error(err, FIRMANTE_E_CONFIG, 0, "",
				 "TituloElectronico.xsd not found (set FIRMANTE_DATADIR)");
			return FIRMANTE_E_CONFIG;
		}
		xsd_path = path;
	}
	v = calloc(1, sizeof(*v));
	if (!v) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	xmlInitParser();
	pctx = xmlSchemaNewParserCtxt(xsd_path);
	if (!pctx) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	xmlSchemaSetParserStructuredErrors(pctx, NULL, NULL);
	v->schema = xmlSchemaParse(pctx);
	if (!v->schema) {
		te_error(err, FIRMANTE_E_CONFIG, 0, "", "schema %s could not be read or compiled",
			 xsd_path);
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	*out = v;
	v = NULL;
	rc = 0;
out:
	if (pctx)
		xmlSchemaFreeParserCtxt(pctx);
	titulo_verifier_free(v);
	if (rc == FIRMANTE_E_NOMEM)
		te_error(err, rc, 0, "", "out of memory");
	return rc;
}

void titulo_verifier_free(titulo_verifier *v)
{
	if (!v)
		return;
	if (v->schema)
		xmlSchemaFree(v->schema);
	free(v);
}

struct xsd_ctx {
	struct titulo_findings *findings;
	int nomem;
};

static void xsd_error(void *data, xmlErrorPtr e)
{
	struct xsd_ctx *c = data;
	if (!e)
		return;
	char msg[400];
	snprintf(msg, sizeof(msg), "%s", e->message ? e->message : "schema error");
	size_t n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		msg[--n] = '\0';
	char field[64];
	snprintf(field, sizeof(field), "XSD line %d", e->line);
	if (te_finding_add(c->findings, TITULO_ERROR, FIRMANTE_E_BAD_DOCUMENT, -1, NULL, NULL, 0,
			   0, field, "%s", msg))
		c->nomem = 1;
}

/* Validate against the XSD; a node Autenticacion with attributes is left
 * out of the validated copy (§11, XSD conflict). */
static int validate_xsd(titulo_verifier *v, const char *xml, size_t len,
			struct titulo_findings *findings)
{
	int rc;
	xmlDocPtr doc = NULL;
	xmlSchemaValidCtxtPtr vctx = NULL;
	struct xsd_ctx c = { .findings = findings };
	size_t errors_before = findings->errors;

	doc = xmlReadMemory(xml, (int)len, NULL, NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (!doc) {
		rc = te_finding_add(findings, TITULO_ERROR, FIRMANTE_E_BAD_DOCUMENT, -1, NULL, NULL,
				    0, 0, "XSD", "document could not be read for XSD validation");
		rc = rc ? rc : FIRMANTE_E_INVALID;
		goto out;
	}
	xmlNodePtr root = xmlDocGetRootElement(doc);
	for (xmlNodePtr k = root ? root->children : NULL; k; k = k->next) {
		if (k->type == XML_ELEMENT_NODE && strcmp((const char *)k->name, "Autenticacion") == 0 &&
		    k->properties) {
			xmlUnlinkNode(k);
			xmlFreeNode(k);
			break;
		}
	}
	vctx = xmlSchemaNewValidCtxt(v->schema);
	if (!vctx) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	xmlSchemaSetValidStructuredErrors(vctx, xsd_error, &c);
	int r = xmlSchemaValidateDoc(vctx, doc);
	if (c.nomem) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	if (r < 0) {
		rc = FIRMANTE_E_INTERNAL;
		goto out;
	}
	if (r > 0 && findings->errors == errors_before) {
		rc = te_finding_add(findings, TITULO_ERROR, FIRMANTE_E_BAD_DOCUMENT, -1, NULL, NULL,
				    0, 0, "XSD", "the document does not validate against the XSD");
		if (rc)
			goto out;
	}
	rc = r > 0 ? FIRMANTE_E_INVALID : 0;
out:
	if (vctx)
		xmlSchemaFreeValidCtxt(vctx);
	if (doc)
		xmlFreeDoc(doc);
	return rc;
}

/* Verify @sig over @data with the RSA public key of @der (RSASSA-PKCS1-v1_5,
 * SHA-256; §6). Returns 1 valid, 0 invalid, negative error. */
static int sello_valid(const uint8_t *der, size_t der_len, const uint8_t *sig, size_t sig_len,
		       const char *data, size_t data_len)
{
	int rc;
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)der_len);
	EVP_PKEY *pk = NULL;
	EVP_MD_CTX *md = NULL;
	if (!x) {
		rc = FIRMANTE_E_CERT_INVALID;
		goto out;
	}
	pk = X509_get_pubkey(x);
	if (!pk || !EVP_PKEY_is_a(pk, "RSA")) {
		rc = FIRMANTE_E_CERT_INVALID;
		goto out;
	}
	md = EVP_MD_CTX_new();
	if (!md) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk) != 1) {
		rc = FIRMANTE_E_INTERNAL;
		goto out;
	}
	rc = EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)data, data_len) == 1;
out:
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pk);
	X509_free(x);
	return rc;
}

#define ADDF(sev, code, idx, curp, field, ...)                                                \
	do {                                                                                  \
		int r_ = te_finding_add(findings, (sev), (code), (long)(idx), (curp), NULL, 0, 0, \
					(field), __VA_ARGS__);                                    \
		if (r_) {                                                                     \
			rc = r_;                                                              \
			goto out;                                                             \
		}                                                                             \
	} while (0)

/* All checks of FirmaResponsable @i (§5, §6, §7). */
static int verify_firmante(const titulo *t, size_t i, struct titulo_findings *findings)
{
	int rc = 0;
	uint8_t *sig = NULL, *der = NULL;
	size_t sig_len = 0, der_len = 0;
	char *cadena = NULL;
	size_t cadena_len = 0;
	struct fm_satcert cert;
	int cert_ok = 0;
	char field[160];
	const char *curp = titulo_firmante_attr(t, i, "curp");
	const char *sello = titulo_firmante_attr(t, i, "sello");
	const char *cer = titulo_firmante_attr(t, i, "certificadoResponsable");
	const char *nocert = titulo_firmante_attr(t, i, "noCertificadoResponsable");
	const char *c = curp ? curp : "";

	int cr = titulo_cadena_check(t, i, field, sizeof(field));
	if (cr == FIRMANTE_E_BAD_DOCUMENT)
		ADDF(TITULO_ERROR, cr, i, c, field,
		     "required field of the cadena original is missing (§5)");
	else if (cr)
		ADDF(TITULO_ERROR, cr, i, c, field,
		     "value holds '|', which the cadena original cannot carry (§5.1)");
	else if ((rc = titulo_cadena(t, i, &cadena, &cadena_len)) != 0)
		goto out;

	if (!sello || !sello[0]) {
		ADDF(TITULO_ERROR, FIRMANTE_E_INVALID, i, c, "sello", "sello is missing");
	} else if (fm_base64_decode(sello, strlen(sello), &sig, &sig_len) != 0 || sig_len == 0) {
		ADDF(TITULO_ERROR, FIRMANTE_E_INVALID, i, c, "sello",
		     "sello is not Base64 on one line without spaces (§6)");
	}

	if (!cer || !cer[0]) {
		ADDF(TITULO_ERROR, FIRMANTE_E_CERT_INVALID, i, c, "certificadoResponsable",
		     "certificadoResponsable is missing");
	} else if (fm_base64_decode(cer, strlen(cer), &der, &der_len) != 0 || der_len == 0) {
		ADDF(TITULO_ERROR, FIRMANTE_E_CERT_INVALID, i, c, "certificadoResponsable",
		     "certificadoResponsable is not Base64 on one line without spaces (§7)");
	} else {
		int pr = fm_satcert_parse_der(der, der_len, &cert);
		if (pr == FIRMANTE_E_NOMEM) {
			rc = pr;
			goto out;
		} else if (pr == FIRMANTE_E_CERT_SERIAL) {
			ADDF(TITULO_ERROR, pr, i, c, "certificadoResponsable",
			     "not a SAT certificate: its serial number is not 20 ASCII digits (§7)");
		} else if (pr) {
			ADDF(TITULO_ERROR, pr, i, c, "certificadoResponsable",
			     "certificadoResponsable is not a DER X.509 certificate (§7)");
		} else {
			cert_ok = 1;
		}
	}

	if (cert_ok) {
		if (!nocert || strcmp(nocert, cert.no_certificado) != 0)
			ADDF(TITULO_ERROR, FIRMANTE_E_CERT_SERIAL, i, c, "noCertificadoResponsable",
			     "noCertificadoResponsable '%s' is not the certificate's number %s (§7)",
			     nocert ? nocert : "", cert.no_certificado);
		if (!cert.curp[0])
			ADDF(TITULO_ERROR, FIRMANTE_E_NO_CURP, i, c, "curp",
			     "the certificate holds no CURP in its subject serialNumber (§7)");
		else if (!curp || strcmp(curp, cert.curp) != 0)
			ADDF(TITULO_ERROR, FIRMANTE_E_SIGNER_NOT_IN_DOCUMENT, i, c, "curp",
			     "curp '%s' is not the certificate's CURP %s (§7)", c, cert.curp);
		if (cert.kind != FM_SATCERT_FIEL)
			ADDF(TITULO_ERROR, FIRMANTE_E_CERT_NOT_FIEL, i, c, "certificadoResponsable",
			     "the certificate is not an e.firma (FIEL) but a %s (subject OU '%s'); "
			     "titles need the signer's e.firma (§6)",
			     fm_satcert_kind_name(cert.kind), cert.ou);
	} else if (nocert && nocert[0]) {
		int ok = strlen(nocert) == 20;
		for (size_t k = 0; ok && k < 20; k++)
			ok = nocert[k] >= '0' && nocert[k] <= '9';
		if (!ok)
			ADDF(TITULO_ERROR, FIRMANTE_E_CERT_SERIAL, i, c, "noCertificadoResponsable",
			     "noCertificadoResponsable is not 20 digits (§7)");
	} else {
		ADDF(TITULO_ERROR, FIRMANTE_E_CERT_SERIAL, i, c, "noCertificadoResponsable",
		     "noCertificadoResponsable is missing");
	}

	if (cert_ok && sig && cadena) {
		int v = sello_valid(der, der_len, sig, sig_len, cadena, cadena_len);
		if (v == FIRMANTE_E_NOMEM) {
			rc = v;
			goto out;
		} else if (v < 0) {
			ADDF(TITULO_ERROR, v, i, c, "certificadoResponsable",
			     "the certificate's public key is not RSA; the sello cannot be checked");
		} else if (v == 0) {
			ADDF(TITULO_ERROR, FIRMANTE_E_INVALID, i, c, "sello",
			     "the sello does not verify over this FirmaResponsable's cadena original "
			     "with the certificate's key (RSA PKCS#1 v1.5, SHA-256; §6): the document "
			     "changed after signing, or the sello belongs to another key");
		}
	}
	rc = 0;
out:
	free(sig);
	free(der);
	free(cadena);
	return rc;
}

/* §11: selloTitulo = the sellos joined in document order. */
static int verify_autenticacion(const titulo *t, struct titulo_findings *findings)
{
	int rc = 0;
	struct te_buf b = { 0 };
	const char *st = titulo_attr(t, "Autenticacion", "selloTitulo");
	if (!titulo_element_present(t, "Autenticacion"))
		return 0;
	if (!st) {
		/* an empty node: nothing the authority attested */
		goto out;
	}
	for (size_t i = 0; i < titulo_firmantes_count(t); i++) {
		const char *s = titulo_firmante_attr(t, i, "sello");
		if (s)
			te_buf_adds(&b, s);
	}
	if (b.err) {
		rc = b.err;
		goto out;
	}
	if (!b.p || strcmp(b.p, st) != 0)
		ADDF(TITULO_ERROR, FIRMANTE_E_INVALID, -1, NULL, "Autenticacion/@selloTitulo",
		     "selloTitulo is not the FirmaResponsable sellos joined in document order "
		     "(§11 a)");
	ADDF(TITULO_WARNING, FIRMANTE_E_CERT_INVALID, -1, NULL, "Autenticacion/@selloAutenticacion",
	     "not verifiable: no certificate of the authority for noCertificadoAutoridad '%s' "
	     "(§11 b)",
	     titulo_attr(t, "Autenticacion", "noCertificadoAutoridad")
		     ? titulo_attr(t, "Autenticacion", "noCertificadoAutoridad")
		     : "");
out:
	te_buf_free(&b);
	return rc;
}

int titulo_verify(titulo_verifier *v, const char *xml, size_t len, unsigned flags,
		  struct titulo_findings *findings)
{
	int rc;
	titulo *t = NULL;
	struct titulo_error perr = { 0 };
	size_t errors_before = findings ? findings->errors : 0;
	struct titulo_findings local = { 0 };
	if (!findings)
		findings = &local;

	rc = titulo_parse(xml, len, &t, &perr);
	if (rc == FIRMANTE_E_NOMEM)
		goto out;
	if (rc) {
		rc = te_finding_add(findings, TITULO_ERROR, rc, -1, NULL, NULL,
				    (unsigned long)(perr.line > 0 ? perr.line : 0), 0,
				    perr.field[0] ? perr.field : "document", "%s", perr.message);
		if (rc)
			goto out;
		rc = FIRMANTE_E_INVALID;
		goto out;
	}
	if (!(flags & (TITULO_VERIFY_NO_XSD | TITULO_VERIFY_UNSIGNED))) {
		if (!v) {
			rc = FIRMANTE_E_INTERNAL;
			goto out;
		}
		rc = validate_xsd(v, xml, len, findings);
		if (rc && rc != FIRMANTE_E_INVALID)
			goto out;
	}
	if (!(flags & TITULO_VERIFY_UNSIGNED)) {
		for (size_t i = 0; i < titulo_firmantes_count(t); i++) {
			rc = verify_firmante(t, i, findings);
			if (rc)
				goto out;
		}
		rc = verify_autenticacion(t, findings);
		if (rc)
			goto out;
	} else {
		char field[160];
		for (size_t i = 0; i < titulo_firmantes_count(t); i++) {
			int cr = titulo_cadena_check(t, i, field, sizeof(field));
			const char *c = titulo_firmante_attr(t, i, "curp");
			if (cr) {
				rc = te_finding_add(findings, TITULO_ERROR, cr, (long)i, c, NULL, 0, 0,
						    field,
						    cr == FIRMANTE_E_INVALID
							    ? "value holds '|' (§5.1)"
							    : "required field of the cadena original is missing (§5)");
				if (rc)
					goto out;
			}
		}
	}
	rc = findings->errors > errors_before ? FIRMANTE_E_INVALID : 0;
out:
	titulo_free(t);
	titulo_findings_clear(&local);
	return rc;
}
