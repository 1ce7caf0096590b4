/*
 * Verification of a Título Electrónico: XSD (§1, §11), sello, certificate
 * and noCertificado of every FirmaResponsable (§6, §7), Autenticacion
 * (§11).
 */
#include <limits.h>
#include <pthread.h>
#include <strings.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlschemas.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "firmante/protocol.h"
#include "firmante/satcert.h"
#include "firmante/titulo-build.h"
#include "firmante/titulo.h"
#include "firmante/util.h"
#include "titulo-internal.h"

/*
 * Signer certificates already read, so that a batch reads each signer's
 * certificate once: with OpenSSL 3.0, d2i_X509 (its public key decoders)
 * costs more than the RSA verification of the sello itself, and a batch
 * carries the same few certificates in every title. The cache holds what
 * was read from the certificate, never a verdict about a sello.
 */
#define VERIFIER_CERT_CACHE 16
/* parse_rc of a certificadoResponsable that is not canonical Base64 */
#define CERT_NOT_BASE64 1

struct cert_entry {
	char *b64;               /* certificadoResponsable as written (owned);
				    NULL when the slot is free */
	size_t len;
	int parse_rc;            /* fm_satcert_parse_der()'s result, or
				    CERT_NOT_BASE64 */
	struct fm_satcert cert;  /* valid when parse_rc == 0 */
	EVP_PKEY *pk;            /* RSA public key; NULL when not RSA */
	EVP_PKEY_CTX *tmpl;      /* @pk ready to verify a sello (§6), duplicated
				    for each use; NULL when not prepared */
};

struct titulo_verifier {
	xmlSchemaPtr schema;
	uint8_t *autoridad; /* DER of the authority certificate, or NULL */
	size_t autoridad_len;
	char autoridad_no[21]; /* its SAT number, "" when not a SAT serial */
	pthread_mutex_t mu; /* guards certs and next */
	pthread_mutex_t vmu; /* guards vctx */
	xmlSchemaValidCtxtPtr vctx; /* reused across titles; NULL until first use */
	struct cert_entry certs[VERIFIER_CERT_CACHE];
	size_t next; /* slot replaced next (round robin) */
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
	if (pthread_mutex_init(&v->mu, NULL) != 0) {
		free(v);
		v = NULL;
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	if (pthread_mutex_init(&v->vmu, NULL) != 0) {
		pthread_mutex_destroy(&v->mu);
		free(v);
		v = NULL;
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
	if (v->vctx)
		xmlSchemaFreeValidCtxt(v->vctx);
	if (v->schema)
		xmlSchemaFree(v->schema);
	free(v->autoridad);
	for (size_t i = 0; i < VERIFIER_CERT_CACHE; i++) {
		free(v->certs[i].b64);
		EVP_PKEY_free(v->certs[i].pk);
		EVP_PKEY_CTX_free(v->certs[i].tmpl);
	}
	pthread_mutex_destroy(&v->vmu);
	pthread_mutex_destroy(&v->mu);
	free(v);
}

/* Read certificate @der: SAT fields (fm_satcert_parse_der) and, when they
 * read, its RSA public key. Returns 0 or FIRMANTE_E_NOMEM; @e is filled on
 * success (e->pk NULL when the key is not RSA). */
static int cert_read(const uint8_t *der, size_t len, struct cert_entry *e)
{
	struct cert_entry r = { 0 };
	r.parse_rc = fm_satcert_parse_der(der, len, &r.cert);
	if (r.parse_rc == FIRMANTE_E_NOMEM)
		return FIRMANTE_E_NOMEM;
	if (r.parse_rc == 0) {
		const unsigned char *p = der;
		X509 *x = d2i_X509(NULL, &p, (long)len);
		r.pk = x ? X509_get_pubkey(x) : NULL;
		X509_free(x);
		if (r.pk && !EVP_PKEY_is_a(r.pk, "RSA")) {
			EVP_PKEY_free(r.pk);
			r.pk = NULL;
		}
		/* RSASSA-PKCS1-v1_5 with SHA-256 (§6), set up once per
		 * certificate: OpenSSL 3 fetches the algorithms on every
		 * EVP_DigestVerifyInit otherwise. Without it, sello_valid_pk(). */
		r.tmpl = r.pk ? EVP_PKEY_CTX_new_from_pkey(NULL, r.pk, NULL) : NULL;
		if (r.tmpl && (EVP_PKEY_verify_init(r.tmpl) != 1 ||
			       EVP_PKEY_CTX_set_rsa_padding(r.tmpl, RSA_PKCS1_PADDING) != 1 ||
			       EVP_PKEY_CTX_set_signature_md(r.tmpl, EVP_sha256()) != 1)) {
			EVP_PKEY_CTX_free(r.tmpl);
			r.tmpl = NULL;
		}
	}
	*e = r;
	return 0;
}

/*
 * cert_lookup - what the certificadoResponsable @b64 (@len characters)
 * says, from @v's cache or decoded and read now and remembered (@v may be
 * NULL: no cache). The cache is keyed by the Base64 text itself: canonical
 * Base64 (RFC 4648 §4, as fm_base64_decode() demands) decodes to one DER
 * only, so a title whose text matches an earlier one carries the same
 * certificate and nothing is decoded again.
 * On success *@parse_rc is CERT_NOT_BASE64, or fm_satcert_parse_der()'s
 * result, @cert its fields when that is 0, and *@pk a new reference to the
 * RSA public key (caller frees) or NULL, and *@vc a verification context
 * of that key prepared for a sello (caller frees) or NULL.
 * Returns 0 or FIRMANTE_E_NOMEM.
 */
static int cert_lookup(titulo_verifier *v, const char *b64, size_t len, int *parse_rc,
		       struct fm_satcert *cert, EVP_PKEY **pk, EVP_PKEY_CTX **vc)
{
	struct cert_entry fresh = { 0 };
	int rc;
	if (v) {
		pthread_mutex_lock(&v->mu);
		for (size_t i = 0; i < VERIFIER_CERT_CACHE; i++) {
			struct cert_entry *e = &v->certs[i];
			if (e->b64 && e->len == len && memcmp(e->b64, b64, len) == 0) {
				if (e->pk && EVP_PKEY_up_ref(e->pk) != 1) {
					pthread_mutex_unlock(&v->mu);
					return FIRMANTE_E_NOMEM;
				}
				*parse_rc = e->parse_rc;
				*cert = e->cert;
				*pk = e->pk;
				*vc = e->tmpl ? EVP_PKEY_CTX_dup(e->tmpl) : NULL;
				pthread_mutex_unlock(&v->mu);
				return 0;
			}
		}
		pthread_mutex_unlock(&v->mu);
	}
	uint8_t *der = NULL;
	size_t der_len = 0;
	rc = fm_base64_decode(b64, len, &der, &der_len);
	if (rc == FIRMANTE_E_NOMEM)
		return rc;
	if (rc || der_len == 0) {
		fresh.parse_rc = CERT_NOT_BASE64;
	} else {
		rc = cert_read(der, der_len, &fresh);
		if (rc) {
			free(der);
			return rc;
		}
	}
	free(der);
	*parse_rc = fresh.parse_rc;
	*cert = fresh.cert;
	*pk = fresh.pk; /* the caller's reference */
	*vc = fresh.tmpl ? EVP_PKEY_CTX_dup(fresh.tmpl) : NULL;
	if (!v) {
		EVP_PKEY_CTX_free(fresh.tmpl);
		return 0;
	}
	/* Remember it (best effort: without memory the result is still right). */
	fresh.b64 = malloc(len);
	if (!fresh.b64 || (fresh.pk && EVP_PKEY_up_ref(fresh.pk) != 1)) {
		free(fresh.b64);
		EVP_PKEY_CTX_free(fresh.tmpl);
		return 0;
	}
	memcpy(fresh.b64, b64, len);
	fresh.len = len;
	pthread_mutex_lock(&v->mu);
	struct cert_entry *slot = &v->certs[v->next];
	v->next = (v->next + 1) % VERIFIER_CERT_CACHE;
	free(slot->b64);
	EVP_PKEY_free(slot->pk);
	EVP_PKEY_CTX_free(slot->tmpl);
	*slot = fresh;
	pthread_mutex_unlock(&v->mu);
	return 0;
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
	if (te_finding_r(c->findings, "xsd", -1, NULL, NULL, 0, 0, field, "%s", msg))
		c->nomem = 1;
}

/* Validate against the XSD; a node Autenticacion with attributes is left
 * out of the validated copy (§11, XSD conflict). */
/* XSD validation of @doc, the document titulo_verify() parsed (its
 * Autenticacion element, when it carries attributes, is removed from @doc
 * first: §11). One validation context is kept in @v and reused from title
 * to title; a thread that finds it busy uses a context of its own. */
static int validate_xsd(titulo_verifier *v, xmlDocPtr doc, struct titulo_findings *findings)
{
	int rc;
	xmlSchemaValidCtxtPtr vctx = NULL;
	int shared = 0;
	struct xsd_ctx c = { .findings = findings };
	size_t errors_before = findings->errors;

	xmlNodePtr root = xmlDocGetRootElement(doc);
	for (xmlNodePtr k = root ? root->children : NULL; k; k = k->next) {
		if (k->type == XML_ELEMENT_NODE && strcmp((const char *)k->name, "Autenticacion") == 0 &&
		    k->properties) {
			xmlUnlinkNode(k);
			xmlFreeNode(k);
			break;
		}
	}
	if (pthread_mutex_trylock(&v->vmu) == 0) {
		shared = 1;
		if (!v->vctx)
			v->vctx = xmlSchemaNewValidCtxt(v->schema);
		vctx = v->vctx;
	} else {
		vctx = xmlSchemaNewValidCtxt(v->schema);
	}
	if (!vctx) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	xmlSchemaSetValidStructuredErrors(vctx, xsd_error, &c);
	int r = xmlSchemaValidateDoc(vctx, doc);
	xmlSchemaSetValidStructuredErrors(vctx, NULL, NULL);
	if (c.nomem || r < 0) {
		/* a context that failed midway is not reused */
		if (shared) {
			xmlSchemaFreeValidCtxt(vctx);
			v->vctx = NULL;
			vctx = NULL;
		}
		rc = c.nomem ? FIRMANTE_E_NOMEM : FIRMANTE_E_INTERNAL;
		goto out;
	}
	if (r > 0 && findings->errors == errors_before) {
		rc = te_finding_r(findings, "xsd", -1, NULL, NULL, 0, 0, "XSD",
				  "the document does not validate against the XSD");
		if (rc)
			goto out;
	}
	rc = r > 0 ? FIRMANTE_E_INVALID : 0;
out:
	if (shared)
		pthread_mutex_unlock(&v->vmu);
	else if (vctx)
		xmlSchemaFreeValidCtxt(vctx);
	return rc;
}

/* Verify @sig over @data with the RSA public key @pk (RSASSA-PKCS1-v1_5,
 * SHA-256; §6). Returns 1 valid, 0 invalid, negative error
 * (FIRMANTE_E_CERT_INVALID when @pk is NULL). */
static int sello_valid_pk(EVP_PKEY *pk, const uint8_t *sig, size_t sig_len, const char *data,
			  size_t data_len)
{
	int rc;
	EVP_MD_CTX *md = NULL;
	if (!pk)
		return FIRMANTE_E_CERT_INVALID;
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
	return rc;
}

/* sello_valid_pk() with a context cert_lookup() prepared: the SHA-256 of
 * @data, then the RSA verification of that digest (the same
 * RSASSA-PKCS1-v1_5 check EVP_DigestVerify makes). 1 valid, 0 invalid,
 * negative error. */
static int sello_valid_vc(EVP_PKEY_CTX *vc, const uint8_t *sig, size_t sig_len, const char *data,
			  size_t data_len)
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	if (!EVP_Digest(data, data_len, md, &mdlen, EVP_sha256(), NULL) || mdlen != sizeof(md))
		return FIRMANTE_E_INTERNAL;
	return EVP_PKEY_verify(vc, sig, sig_len, md, mdlen) == 1;
}

/* sello_valid_pk() with the RSA public key of certificate @der. */
static int sello_valid(const uint8_t *der, size_t der_len, const uint8_t *sig, size_t sig_len,
		       const char *data, size_t data_len)
{
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)der_len);
	EVP_PKEY *pk = x ? X509_get_pubkey(x) : NULL;
	int rc = FIRMANTE_E_CERT_INVALID;
	if (pk && EVP_PKEY_is_a(pk, "RSA"))
		rc = sello_valid_pk(pk, sig, sig_len, data, data_len);
	EVP_PKEY_free(pk);
	X509_free(x);
	return rc;
}

#define ADDF(rule, idx, curp, field, ...)                                                  \
	do {                                                                               \
		int r_ = te_finding_r(findings, (rule), (long)(idx), (curp), NULL, 0, 0, (field), \
				      __VA_ARGS__);                                                \
		if (r_) {                                                                  \
			rc = r_;                                                           \
			goto out;                                                          \
		}                                                                          \
	} while (0)

/* All checks of FirmaResponsable @i (§5, §6, §7). */
static int verify_firmante(titulo_verifier *v, const titulo *t, size_t i,
			   struct titulo_findings *findings)
{
	int rc = 0;
	EVP_PKEY *pk = NULL;
	EVP_PKEY_CTX *vc = NULL;
	uint8_t *sig = NULL;
	size_t sig_len = 0;
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
		ADDF("cadena-field-missing", i, c, field,
		     "required field of the cadena original is missing (§5)");
	else if (cr)
		ADDF("cadena-pipe", i, c, field,
		     "value holds '|', which the cadena original cannot carry (§5.1)");
	else if ((rc = titulo_cadena(t, i, &cadena, &cadena_len)) != 0)
		goto out;

	if (!sello || !sello[0]) {
		ADDF("sello-missing", i, c, "sello", "sello is missing");
	} else if (fm_base64_decode(sello, strlen(sello), &sig, &sig_len) != 0 || sig_len == 0) {
		ADDF("sello-base64", i, c, "sello",
		     "sello is not Base64 on one line without spaces (§6)");
	}

	if (!cer || !cer[0]) {
		ADDF("cert-missing", i, c, "certificadoResponsable",
		     "certificadoResponsable is missing");
	} else {
		int pr = 0;
		rc = cert_lookup(v, cer, strlen(cer), &pr, &cert, &pk, &vc);
		if (rc)
			goto out;
		if (pr == CERT_NOT_BASE64) {
			ADDF("cert-invalid", i, c, "certificadoResponsable",
			     "certificadoResponsable is not Base64 on one line without spaces (§7)");
		} else if (pr == FIRMANTE_E_NOMEM) {
			rc = pr;
			goto out;
		} else if (pr == FIRMANTE_E_CERT_SERIAL) {
			ADDF("cert-serial-not-sat", i, c, "certificadoResponsable",
			     "not a SAT certificate: its serial number is not 20 ASCII digits (§7)");
		} else if (pr) {
			ADDF("cert-invalid", i, c, "certificadoResponsable",
			     "certificadoResponsable is not a DER X.509 certificate (§7)");
		} else {
			cert_ok = 1;
		}
	}

	if (cert_ok) {
		if (!nocert || strcmp(nocert, cert.no_certificado) != 0)
			ADDF("nocert-mismatch", i, c, "noCertificadoResponsable",
			     "noCertificadoResponsable '%s' is not the certificate's number %s (§7)",
			     nocert ? nocert : "", cert.no_certificado);
		if (!cert.curp[0])
			ADDF("cert-no-curp", i, c, "curp",
			     "the certificate holds no CURP in its subject serialNumber (§7)");
		else if (!curp || strcmp(curp, cert.curp) != 0)
			ADDF("curp-cert-mismatch", i, c, "curp",
			     "curp '%s' is not the certificate's CURP %s (§7)", c, cert.curp);
		if (cert.kind != FM_SATCERT_FIEL)
			ADDF("cert-not-fiel", i, c, "certificadoResponsable",
			     "the certificate is not an e.firma (FIEL) but a %s (subject OU '%s'); "
			     "titles need the signer's e.firma (§6)",
			     fm_satcert_kind_name(cert.kind), cert.ou);
	} else if (nocert && nocert[0]) {
		int ok = strlen(nocert) == 20;
		for (size_t k = 0; ok && k < 20; k++)
			ok = nocert[k] >= '0' && nocert[k] <= '9';
		if (!ok)
			ADDF("nocert-mismatch", i, c, "noCertificadoResponsable",
			     "noCertificadoResponsable is not 20 digits (§7)");
	} else {
		ADDF("nocert-mismatch", i, c, "noCertificadoResponsable",
		     "noCertificadoResponsable is missing");
	}

	if (cert_ok && sig && cadena) {
		int ok = vc ? sello_valid_vc(vc, sig, sig_len, cadena, cadena_len)
			    : sello_valid_pk(pk, sig, sig_len, cadena, cadena_len);
		if (ok == FIRMANTE_E_NOMEM) {
			rc = ok;
			goto out;
		} else if (ok < 0) {
			ADDF("cert-invalid", i, c, "certificadoResponsable",
			     "the certificate's public key is not RSA; the sello cannot be checked");
		} else if (ok == 0) {
			ADDF("sello-mismatch", i, c, "sello",
			     "the sello does not verify over this FirmaResponsable's cadena original "
			     "with the certificate's key (RSA PKCS#1 v1.5, SHA-256; §6): the document "
			     "changed after signing, or the sello belongs to another key");
		}
	}
	rc = 0;
out:
	EVP_PKEY_free(pk);
	EVP_PKEY_CTX_free(vc);
	free(sig);
	free(cadena);
	return rc;
}

/* §11: selloTitulo = the sellos joined in document order; the authority's
 * sello over its five-field cadena with the authority's certificate. */
static int verify_autenticacion(const titulo_verifier *v, const titulo *t,
				struct titulo_findings *findings)
{
	int rc = 0;
	struct te_buf b = { 0 }, cad = { 0 };
	uint8_t *sig = NULL;
	size_t sig_len = 0;
	const char *st = titulo_attr(t, "Autenticacion", "selloTitulo");
	const char *nca = titulo_attr(t, "Autenticacion", "noCertificadoAutoridad");
	const char *sa = titulo_attr(t, "Autenticacion", "selloAutenticacion");
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
		ADDF("autenticacion-sello-titulo", -1, NULL, "Autenticacion/@selloTitulo",
		     "selloTitulo does not match the responsables' sellos: it must be the "
		     "FirmaResponsable sellos joined in document order with nothing between them "
		     "(§11 a)");
	else
		ADDF("autenticacion-sello-titulo-ok", -1, NULL, "Autenticacion/@selloTitulo",
		     "selloTitulo matches the responsables' sellos (§11 a)");
	if (!v || !v->autoridad) {
		ADDF("autenticacion-not-verifiable", -1, NULL, "Autenticacion/@selloAutenticacion",
		     "not verifiable: no certificate of the authority for noCertificadoAutoridad "
		     "'%s' was given (--autoridad-cer) (§11 b)",
		     nca ? nca : "");
		goto out;
	}
	if (!nca || strcmp(nca, v->autoridad_no) != 0)
		ADDF("autenticacion-cert-mismatch", -1, NULL, "Autenticacion/@noCertificadoAutoridad",
		     "noCertificadoAutoridad '%s' is not the number of the authority certificate "
		     "given, %s (§11 b)",
		     nca ? nca : "", v->autoridad_no[0] ? v->autoridad_no : "(not a SAT serial)");
	te_buf_adds(&cad, "||");
	const char *parts[] = { "version", "folioDigital", "fechaAutenticacion", "selloTitulo",
				"noCertificadoAutoridad" };
	for (size_t i = 0; i < 5; i++) {
		const char *x = titulo_attr(t, "Autenticacion", parts[i]);
		if (i)
			te_buf_adds(&cad, "|");
		te_buf_adds(&cad, x ? x : "");
	}
	te_buf_adds(&cad, "||");
	if (cad.err) {
		rc = cad.err;
		goto out;
	}
	if (!sa || fm_base64_decode(sa, strlen(sa), &sig, &sig_len) != 0 || sig_len == 0) {
		ADDF("autenticacion-sello", -1, NULL, "Autenticacion/@selloAutenticacion",
		     "selloAutenticacion is missing or not Base64 on one line (§11)");
		goto out;
	}
	int ok = sello_valid(v->autoridad, v->autoridad_len, sig, sig_len, cad.p, cad.len);
	if (ok == FIRMANTE_E_NOMEM) {
		rc = ok;
		goto out;
	}
	if (ok != 1)
		ADDF("autenticacion-sello", -1, NULL, "Autenticacion/@selloAutenticacion",
		     "selloAutenticacion does not verify with the authority certificate over "
		     "||version|folioDigital|fechaAutenticacion|selloTitulo|noCertificadoAutoridad|| "
		     "(RSA PKCS#1 v1.5, SHA-256; §11 b)");
	else
		ADDF("autenticacion-sello-ok", -1, NULL, "Autenticacion/@selloAutenticacion",
		     "selloAutenticacion verifies with the authority certificate (§11 b)");
out:
	free(sig);
	te_buf_free(&b);
	te_buf_free(&cad);
	return rc;
}

/* Encoding of the raw bytes (§1): no BOM, UTF-8 declared or implied,
 * valid UTF-8. Returns 1 when parsing may go on, 0 when not, or an error. */
static int check_encoding(const char *xml, size_t len, struct titulo_findings *findings)
{
	int rc = 1;
	if (len >= 3 && memcmp(xml, "\xEF\xBB\xBF", 3) == 0)
		ADDF("xml-encoding", -1, NULL, "document",
		     "the document starts with a UTF-8 byte order mark (BOM); some intakes "
		     "reject it, never write one (§13.6)");
	if (len >= 2 && ((unsigned char)xml[0] == 0xFF || (unsigned char)xml[0] == 0xFE)) {
		ADDF("xml-encoding", -1, NULL, "document",
		     "the document is UTF-16; the standard's documents are UTF-8 (§1)");
		return 0;
	}
	const char *decl_end = len >= 5 && len >= (xml[0] == '\xEF' ? 8u : 5u) &&
				       memcmp(xml + (xml[0] == '\xEF' ? 3 : 0), "<?xml", 5) == 0
				       ? memchr(xml, '>', len < 200 ? len : 200)
				       : NULL;
	if (decl_end) {
		char decl[256];
		size_t n = (size_t)(decl_end - xml);
		if (n >= sizeof(decl))
			n = sizeof(decl) - 1;
		memcpy(decl, xml, n);
		decl[n] = '\0';
		char *e = strstr(decl, "encoding=");
		if (e && e[9] && (e[9] == '"' || e[9] == '\'')) {
			char q = e[9];
			char *v0 = e + 10, *v1 = strchr(v0, q);
			if (v1) {
				*v1 = '\0';
				if (strcasecmp(v0, "UTF-8") != 0)
					ADDF("xml-encoding", -1, NULL, "document",
					     "the document declares encoding \"%s\"; the standard's "
					     "documents are UTF-8 (§1)",
					     v0);
			}
		}
	}
	/* bytes that are not UTF-8 when UTF-8 is what the document claims */
	size_t i = 0;
	while (i < len) {
		unsigned char c = (unsigned char)xml[i];
		if (c < 0x80) {
			/* ASCII, most of a title (Base64): eight bytes at a time */
			i++;
			for (uint64_t w; i + 8 <= len; i += 8) {
				memcpy(&w, xml + i, 8);
				if (w & 0x8080808080808080ull)
					break;
			}
			continue;
		}
		size_t k = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
		int ok = k > 0 && i + k <= len && !(k == 2 && c < 0xC2);
		for (size_t m = 1; ok && m < k; m++)
			ok = ((unsigned char)xml[i + m] & 0xC0) == 0x80;
		if (!ok) {
			unsigned long line = 1;
			for (size_t m = 0; m < i; m++)
				line += xml[m] == '\n';
			rc = te_finding_r(findings, "xml-encoding", -1, NULL, NULL, line, 0, "document",
					  "byte 0x%02X at offset %zu (line %lu) is not UTF-8: the file "
					  "was probably saved as Latin-1 or Windows-1252 (§1)",
					  c, i, line);
			return rc ? rc : 0;
		}
		i += k;
	}
	return 1;
out:
	return rc;
}

static int is_canonical_int(const char *s)
{
	if (!s[0])
		return 0;
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			return 0;
	return s[0] != '0' || s[1] == '\0';
}

/* Empty attributes (§13.1) and lexical forms (§8) of every value. */
static int check_values(const titulo *t, struct titulo_findings *findings)
{
	static const char *const dates[] = { "fechaInicio", "fechaTerminacion", "fechaExpedicion",
					     "fechaExamenProfesional",
					     "fechaExencionExamenProfesional" };
	static const char *const ints[] = { "idCargo", "idAutorizacionReconocimiento",
					    "idModalidadTitulacion", "cumplioServicioSocial",
					    "idFundamentoLegalServicioSocial",
					    "idTipoEstudioAntecedente" };
	int rc = 0;
	size_t nodes = TE_NELEM + t->nfirmas;
	for (size_t k = 0; k < nodes; k++) {
		const struct te_node *n = k < TE_NELEM ? &t->el[k] : &t->firmas[k - TE_NELEM];
		int e = k < TE_NELEM ? (int)k : TE_FIRMA;
		long fi = k < TE_NELEM ? -1 : (long)(k - TE_NELEM);
		if (!n->present || e == TE_AUTENTICACION)
			continue;
		const char *curp = fi >= 0 ? titulo_firmante_attr(t, (size_t)fi, "curp") : NULL;
		for (size_t a = 0; a < te_elem_nattrs(e); a++) {
			const char *name = te_elem_attr(e, a), *val = n->v[a];
			char field[160]; /* written by FIELD() only for a finding */
			if (!val)
				continue;
#define FIELD() (snprintf(field, sizeof(field), "%s/@%s", te_elem_name(e), name), field)
			if (!val[0]) {
				ADDF("xml-empty-attribute", fi, curp, FIELD(),
				     "%s is empty; an absent optional value is left out of the XML "
				     "(the cadena still gets an empty field), a required one must have a "
				     "value (§12, §13.1)",
				     field);
				continue;
			}
			for (size_t d = 0; d < sizeof(dates) / sizeof(dates[0]); d++)
				if (strcmp(name, dates[d]) == 0 && titulo_date_check(val) != 0)
					ADDF("xml-non-canonical", fi, curp, FIELD(),
					     "'%s' is not a date written YYYY-MM-DD without a time or "
					     "zone; other forms change the cadena (§8)",
					     val);
			for (size_t d = 0; d < sizeof(ints) / sizeof(ints[0]); d++)
				if (strcmp(name, ints[d]) == 0 && !is_canonical_int(val))
					ADDF("xml-non-canonical", fi, curp, FIELD(),
					     "'%s' is not an integer written without sign, spaces or "
					     "leading zeros (§8)",
					     val);
			if (strcmp(name, "idEntidadFederativa") == 0 &&
			    !(strlen(val) == 2 && val[0] >= '0' && val[0] <= '3' && val[1] >= '0' &&
			      val[1] <= '9'))
				ADDF("xml-non-canonical", fi, curp, FIELD(),
				     "'%s' is not a two-digit entity id 01..33 (§3, §13.2)", val);
		}
	}
#undef FIELD
out:
	return rc;
}

int titulo_verifier_set_autoridad(titulo_verifier *v, const uint8_t *der, size_t len,
				  struct titulo_error *err)
{
	int rc;
	uint8_t *copy = NULL;
	const unsigned char *p = der;
	X509 *x = NULL;
	if (!v || !der || !len) {
		te_error(err, FIRMANTE_E_BAD_REQUEST, 0, "", "no certificate");
		return FIRMANTE_E_BAD_REQUEST;
	}
	x = d2i_X509(NULL, &p, (long)len);
	if (!x || p != der + len) {
		te_error(err, FIRMANTE_E_CERT_INVALID, 0, "",
			 "the authority certificate is not a DER X.509 certificate (.cer)");
		rc = FIRMANTE_E_CERT_INVALID;
		goto out;
	}
	copy = malloc(len);
	if (!copy) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	memcpy(copy, der, len);
	struct fm_satcert sc;
	int pr = fm_satcert_parse_der(der, len, &sc);
	if (pr == FIRMANTE_E_NOMEM) {
		rc = pr;
		goto out;
	}
	free(v->autoridad);
	v->autoridad = copy;
	v->autoridad_len = len;
	snprintf(v->autoridad_no, sizeof(v->autoridad_no), "%s", pr == 0 ? sc.no_certificado : "");
	copy = NULL;
	rc = 0;
out:
	X509_free(x);
	free(copy);
	return rc;
}

/* Nonzero when no FirmaResponsable carries any of the three signature
 * attributes: a title as titulos build writes it. */
static int no_signature_at_all(const titulo *t)
{
	static const char *const attrs[] = { "sello", "certificadoResponsable",
					     "noCertificadoResponsable" };
	for (size_t i = 0; i < titulo_firmantes_count(t); i++)
		for (size_t k = 0; k < sizeof(attrs) / sizeof(attrs[0]); k++)
			if (titulo_firmante_attr(t, i, attrs[k]))
				return 0;
	return 1;
}

int titulo_verify(titulo_verifier *v, const char *xml, size_t len, unsigned flags,
		  struct titulo_findings *findings)
{
	int rc;
	titulo *t = NULL;
	void *doc = NULL; /* the parsed document, validated against the XSD */
	struct titulo_error perr = { 0 };
	size_t errors_before = findings ? findings->errors : 0;
	struct titulo_findings local = { 0 };
	if (!findings)
		findings = &local;

	rc = check_encoding(xml, len, findings);
	if (rc < 0)
		goto out;
	if (rc == 0) {
		rc = FIRMANTE_E_INVALID;
		goto out;
	}
	if (findings->errors > errors_before) {
		/* reported precisely; the parser would only add a generic error */
		int utf8_bad = 0;
		for (size_t i = 0; i < findings->count; i++)
			utf8_bad |= strcmp(findings->items[i].rule, "xml-encoding") == 0 &&
				    strstr(findings->items[i].message, "is not UTF-8") != NULL;
		if (utf8_bad) {
			rc = FIRMANTE_E_INVALID;
			goto out;
		}
	}
	rc = te_parse_doc(xml, len, &t, &perr, &doc);
	if (rc == FIRMANTE_E_NOMEM)
		goto out;
	if (rc) {
		rc = te_finding_r(findings, "xml-structure", -1, NULL, NULL,
				  (unsigned long)(perr.line > 0 ? perr.line : 0), 0,
				  perr.field[0] ? perr.field : "document", "%s", perr.message);
		if (rc)
			goto out;
		rc = FIRMANTE_E_INVALID;
		goto out;
	}
	if (!(flags & TITULO_VERIFY_UNSIGNED) && no_signature_at_all(t)) {
		/* one finding instead of three per signer and the XSD's echo of
		 * them; the title's other rules are still checked */
		rc = te_finding_r(findings, "titulo-unsigned", -1, NULL, NULL, 0, 0, "document",
				  "the title is not signed yet: no FirmaResponsable has a sello, "
				  "certificadoResponsable or noCertificadoResponsable; sign it with "
				  "titulos sign and verify the signed copy");
		if (rc)
			goto out;
		flags |= TITULO_VERIFY_UNSIGNED;
	}
	if (!(flags & (TITULO_VERIFY_NO_XSD | TITULO_VERIFY_UNSIGNED))) {
		if (!v) {
			rc = FIRMANTE_E_INTERNAL;
			goto out;
		}
		rc = validate_xsd(v, doc, findings);
		if (rc && rc != FIRMANTE_E_INVALID)
			goto out;
	}
	rc = check_values(t, findings);
	if (rc)
		goto out;
	if (!(flags & TITULO_VERIFY_UNSIGNED)) {
		for (size_t i = 0; i < titulo_firmantes_count(t); i++) {
			rc = verify_firmante(v, t, i, findings);
			if (rc)
				goto out;
		}
		rc = verify_autenticacion(v, t, findings);
		if (rc)
			goto out;
	} else {
		char field[160];
		for (size_t i = 0; i < titulo_firmantes_count(t); i++) {
			int cr = titulo_cadena_check(t, i, field, sizeof(field));
			const char *c = titulo_firmante_attr(t, i, "curp");
			if (cr) {
				rc = te_finding_r(findings,
						  cr == FIRMANTE_E_INVALID ? "cadena-pipe"
									   : "cadena-field-missing",
						  (long)i, c, NULL, 0, 0, field, "%s",
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
	if (doc)
		xmlFreeDoc(doc);
	titulo_free(t);
	titulo_findings_clear(&local);
	return rc;
}
