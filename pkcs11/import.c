/*
 * Moving a SAT e.firma (.cer + encrypted PKCS#8 .key) onto a token
 * (include/firmante/token.h, fp11_import_efirma).
 *
 * Raw PKCS#11 (C_CreateObject) rather than libp11's store calls: the
 * attributes that matter here (CKA_SENSITIVE true, CKA_EXTRACTABLE false,
 * CKA_ID = subject key identifier) are then written explicitly, on the
 * same p11-kit module list and token selection as the rest of this room.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include "firmante/protocol.h"
#include "firmante/satcert.h"
#include "firmante/token.h"
#include "firmante/util.h"

#include "internal.h"

#define MAX_KEY_FILE (64u * 1024u)
#define MAX_CERT_FILE (64u * 1024u)
#define PASSWORD_MAX 256

/* UTF-8 @in -> ISO-8859-1 @out; false when a character has no Latin-1 form
 * or nothing changed (pure ASCII). */
static bool utf8_to_latin1(const char *in, size_t len, char *out, size_t size)
{
	size_t o = 0;
	bool changed = false;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (o + 1 >= size)
			return false;
		if (c < 0x80) {
			out[o++] = (char)c;
		} else if ((c == 0xc2 || c == 0xc3) && i + 1 < len &&
			   ((unsigned char)in[i + 1] & 0xc0) == 0x80) {
			out[o++] = (char)(((c & 0x03) << 6) | ((unsigned char)in[i + 1] & 0x3f));
			i++;
			changed = true;
		} else {
			return false;
		}
	}
	out[o] = '\0';
	return changed;
}

/* Decrypt a DER EncryptedPrivateKeyInfo with @password (PKCS#5 PBES2). */
static int decrypt_key(const uint8_t *der, size_t len, const char *password, size_t pw_len,
		       EVP_PKEY **out)
{
	const unsigned char *p = der;
	X509_SIG *p8 = d2i_X509_SIG(NULL, &p, (long)len);
	PKCS8_PRIV_KEY_INFO *info = NULL;
	EVP_PKEY *pk = NULL;

	if (!p8)
		return FIRMANTE_E_BAD_DOCUMENT;
	info = PKCS8_decrypt(p8, password, (int)pw_len);
	X509_SIG_free(p8);
	if (!info)
		return FIRMANTE_E_PIN_INCORRECT;
	pk = EVP_PKCS82PKEY(info);
	PKCS8_PRIV_KEY_INFO_free(info);
	if (!pk)
		return FIRMANTE_E_BAD_DOCUMENT;
	*out = pk;
	return 0;
}

/* A BIGNUM parameter of @pk as big-endian bytes in secure memory. */
static int bn_param(EVP_PKEY *pk, const char *name, uint8_t **out, size_t *len)
{
	BIGNUM *bn = NULL;
	if (!EVP_PKEY_get_bn_param(pk, name, &bn) || !bn)
		return FIRMANTE_E_BAD_DOCUMENT;
	size_t n = (size_t)BN_num_bytes(bn);
	uint8_t *b = OPENSSL_secure_zalloc(n ? n : 1);
	if (!b) {
		BN_clear_free(bn);
		return FIRMANTE_E_NOMEM;
	}
	BN_bn2bin(bn, b);
	BN_clear_free(bn);
	*out = b;
	*len = n;
	return 0;
}

int fp11_import_efirma(fp11_ctx *ctx, const char *token_uri, fp11_pin_cb pin_cb,
		       void *pin_cb_data, const uint8_t *cert_der, size_t cert_len,
		       const uint8_t *key_der, size_t key_len, const char *password,
		       struct fp11_import_result *res, char *detail, size_t detail_size)
{
	int rc;
	X509 *x = NULL;
	EVP_PKEY *pk = NULL;
	struct fm_satcert sc;
	struct fp11_import_result r;
	P11KitUri *u = NULL;
	struct token_ref *toks = NULL, *t = NULL;
	size_t nt = 0, matches = 0;
	CK_FUNCTION_LIST *f = NULL;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	bool logged_in = false;
	enum { N_PARTS = 8 };
	static const char *const parts[N_PARTS] = {
		OSSL_PKEY_PARAM_RSA_N, OSSL_PKEY_PARAM_RSA_E, OSSL_PKEY_PARAM_RSA_D,
		OSSL_PKEY_PARAM_RSA_FACTOR1, OSSL_PKEY_PARAM_RSA_FACTOR2,
		OSSL_PKEY_PARAM_RSA_EXPONENT1, OSSL_PKEY_PARAM_RSA_EXPONENT2,
		OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
	};
	uint8_t *v[N_PARTS] = { 0 };
	size_t vl[N_PARTS] = { 0 };
	char latin1[PASSWORD_MAX];

	if (detail && detail_size)
		detail[0] = '\0';
	if (!ctx || !cert_der || !key_der || !password || !res)
		return FIRMANTE_E_BAD_REQUEST;
	memset(&r, 0, sizeof(r));
	if (cert_len > MAX_CERT_FILE || key_len > MAX_KEY_FILE) {
		snprintf(detail, detail_size, "the .cer or .key file is larger than an e.firma file can be");
		return FIRMANTE_E_TOO_LARGE;
	}

	/* 1. The certificate: an e.firma, not a CSD. */
	rc = fm_satcert_parse_der(cert_der, cert_len, &sc);
	if (rc) {
		snprintf(detail, detail_size, "the .cer file is not a readable X.509 certificate (DER)");
		rc = FIRMANTE_E_CERT_INVALID;
		goto out;
	}
	if (sc.kind != FM_SATCERT_FIEL) {
		snprintf(detail, detail_size,
			 "certificate %s is a CSD (sello digital, for invoices), not an e.firma (FIEL); "
			 "titles must be signed with the signer's own e.firma, so it is not imported",
			 sc.no_certificado);
		rc = FIRMANTE_E_CERT_NOT_FIEL;
		goto out;
	}
	const unsigned char *cp = cert_der;
	x = d2i_X509(NULL, &cp, (long)cert_len);
	if (!x) {
		rc = FIRMANTE_E_CERT_INVALID;
		goto out;
	}

	/* 2. The key: UTF-8 password first, then its Latin-1 form. */
	size_t pw_len = strlen(password);
	rc = decrypt_key(key_der, key_len, password, pw_len, &pk);
	if (rc == FIRMANTE_E_PIN_INCORRECT && utf8_to_latin1(password, pw_len, latin1, sizeof(latin1)))
		rc = decrypt_key(key_der, key_len, latin1, strlen(latin1), &pk);
	fm_wipe(latin1, sizeof(latin1));
	if (rc == FIRMANTE_E_PIN_INCORRECT) {
		snprintf(detail, detail_size,
			 "the password does not open the .key file (tried as typed and in Latin-1); "
			 "nothing was written to the token");
		goto out;
	}
	if (rc) {
		snprintf(detail, detail_size,
			 "the .key file is not an encrypted private key (PKCS#8 DER) as SAT issues them");
		goto out;
	}
	if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
		snprintf(detail, detail_size, "the .key file holds no RSA key");
		rc = FIRMANTE_E_BAD_DOCUMENT;
		goto out;
	}
	if (X509_check_private_key(x, pk) != 1) {
		snprintf(detail, detail_size,
			 "the .key file does not belong to certificate %s (different key pair)",
			 sc.no_certificado);
		rc = FIRMANTE_E_INVALID;
		goto out;
	}

	/* 3. CKA_ID: the subject key identifier (RFC 5280 §4.2.1.2; SAT
	 * certificates often lack it: then its method 1, SHA-1 of the key). */
	const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(x);
	if (ski && ski->length > 0 && (size_t)ski->length <= sizeof(r.id)) {
		memcpy(r.id, ski->data, (size_t)ski->length);
		r.id_len = (size_t)ski->length;
	} else {
		unsigned int mdlen = 0;
		if (!X509_pubkey_digest(x, EVP_sha1(), r.id, &mdlen)) {
			rc = FIRMANTE_E_INTERNAL;
			goto out;
		}
		r.id_len = mdlen;
	}
	snprintf(r.label, sizeof(r.label), "e.firma %s %s", sc.rfc[0] ? sc.rfc : sc.curp,
		 sc.no_certificado);
	snprintf(r.no_certificado, sizeof(r.no_certificado), "%s", sc.no_certificado);
	for (size_t i = 0; i < N_PARTS; i++) {
		rc = bn_param(pk, parts[i], &v[i], &vl[i]);
		if (rc) {
			snprintf(detail, detail_size, "the RSA key in the .key file is incomplete");
			goto out;
		}
	}
	EVP_PKEY_free(pk);
	pk = NULL;

	/* 4. The token. */
	if (token_uri) {
		u = p11_kit_uri_new();
		if (!u) {
			rc = FIRMANTE_E_NOMEM;
			goto out;
		}
		if (p11_kit_uri_parse(token_uri, P11_KIT_URI_FOR_TOKEN, u) != P11_KIT_URI_OK) {
			snprintf(detail, detail_size, "--token is not a PKCS#11 token URI (RFC 7512)");
			rc = FIRMANTE_E_BAD_REQUEST;
			goto out;
		}
	}
	rc = fp11_enum_tokens(ctx, &toks, &nt);
	if (rc)
		goto out;
	for (size_t i = 0; i < nt; i++) {
		if (u && !p11_kit_uri_match_token_info(u, &toks[i].raw))
			continue;
		matches++;
		t = &toks[i];
	}
	if (matches != 1) {
		if (matches)
			snprintf(detail, detail_size,
				 "%zu tokens match; name one with --token \"pkcs11:token=LABEL\"", matches);
		else
			snprintf(detail, detail_size, "no matching token is plugged in");
		rc = matches ? FIRMANTE_E_INVALID : FIRMANTE_E_TOKEN_REMOVED;
		goto out;
	}
	if (t->info.flags & CKF_WRITE_PROTECTED) {
		snprintf(detail, detail_size, "token \"%s\" is write-protected", t->info.label);
		rc = FIRMANTE_E_TOKEN;
		goto out;
	}
	snprintf(r.token_label, sizeof(r.token_label), "%s", t->info.label);
	f = t->mod->funcs;
	CK_RV rv = f->C_OpenSession(t->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
	if (rv != CKR_OK) {
		s = CK_INVALID_HANDLE;
		rc = fp11_map_rv(rv);
		goto out;
	}
	if (t->info.login_required) {
		bool asked = false;
		rc = fp11_login(f, s, CKU_USER, &t->info, pin_cb, pin_cb_data, &asked);
		if (rc) {
			if (rc == FIRMANTE_E_PIN_INCORRECT)
				snprintf(detail, detail_size, "token \"%s\" refused the PIN", t->info.label);
			goto out;
		}
		logged_in = true;
	}

	/* Refuse a second copy (same CKA_ID already on the token). */
	{
		CK_OBJECT_HANDLE h[1];
		CK_ULONG nh = 0;
		CK_ATTRIBUTE q[] = { { CKA_ID, r.id, r.id_len } };
		rv = f->C_FindObjectsInit(s, q, 1);
		if (rv == CKR_OK) {
			rv = f->C_FindObjects(s, h, 1, &nh);
			f->C_FindObjectsFinal(s);
		}
		if (rv != CKR_OK) {
			rc = fp11_map_rv(rv);
			goto out;
		}
		if (nh) {
			snprintf(detail, detail_size,
				 "token \"%s\" already holds an object with this e.firma's id; nothing written",
				 t->info.label);
			rc = FIRMANTE_E_INVALID;
			goto out;
		}
	}

	CK_OBJECT_CLASS c_priv = CKO_PRIVATE_KEY, c_pub = CKO_PUBLIC_KEY, c_cert = CKO_CERTIFICATE;
	CK_KEY_TYPE k_rsa = CKK_RSA;
	CK_CERTIFICATE_TYPE x509 = CKC_X_509;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_OBJECT_HANDLE h_priv = CK_INVALID_HANDLE, h_pub = CK_INVALID_HANDLE,
			 h_cert = CK_INVALID_HANDLE;
	CK_ATTRIBUTE priv[] = {
		{ CKA_CLASS, &c_priv, sizeof(c_priv) },
		{ CKA_KEY_TYPE, &k_rsa, sizeof(k_rsa) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_DECRYPT, &no, sizeof(no) },
		{ CKA_ID, r.id, r.id_len },
		{ CKA_LABEL, r.label, strlen(r.label) },
		{ CKA_MODULUS, v[0], vl[0] },
		{ CKA_PUBLIC_EXPONENT, v[1], vl[1] },
		{ CKA_PRIVATE_EXPONENT, v[2], vl[2] },
		{ CKA_PRIME_1, v[3], vl[3] },
		{ CKA_PRIME_2, v[4], vl[4] },
		{ CKA_EXPONENT_1, v[5], vl[5] },
		{ CKA_EXPONENT_2, v[6], vl[6] },
		{ CKA_COEFFICIENT, v[7], vl[7] },
	};
	CK_ATTRIBUTE pub[] = {
		{ CKA_CLASS, &c_pub, sizeof(c_pub) },
		{ CKA_KEY_TYPE, &k_rsa, sizeof(k_rsa) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &no, sizeof(no) },
		{ CKA_VERIFY, &yes, sizeof(yes) },
		{ CKA_ID, r.id, r.id_len },
		{ CKA_LABEL, r.label, strlen(r.label) },
		{ CKA_MODULUS, v[0], vl[0] },
		{ CKA_PUBLIC_EXPONENT, v[1], vl[1] },
	};
	uint8_t *subj = NULL, *iss = NULL, *ser = NULL;
	int subj_len = i2d_X509_NAME(X509_get_subject_name(x), &subj);
	int iss_len = i2d_X509_NAME(X509_get_issuer_name(x), &iss);
	int ser_len = i2d_ASN1_INTEGER(X509_get_serialNumber(x), &ser);
	if (subj_len <= 0 || iss_len <= 0 || ser_len <= 0) {
		OPENSSL_free(subj);
		OPENSSL_free(iss);
		OPENSSL_free(ser);
		rc = FIRMANTE_E_CERT_INVALID;
		goto out;
	}
	CK_ATTRIBUTE cert[] = {
		{ CKA_CLASS, &c_cert, sizeof(c_cert) },
		{ CKA_CERTIFICATE_TYPE, &x509, sizeof(x509) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &no, sizeof(no) },
		{ CKA_ID, r.id, r.id_len },
		{ CKA_LABEL, r.label, strlen(r.label) },
		{ CKA_SUBJECT, subj, (CK_ULONG)subj_len },
		{ CKA_ISSUER, iss, (CK_ULONG)iss_len },
		{ CKA_SERIAL_NUMBER, ser, (CK_ULONG)ser_len },
		{ CKA_VALUE, (void *)cert_der, cert_len },
	};
	rv = f->C_CreateObject(s, priv, sizeof(priv) / sizeof(priv[0]), &h_priv);
	if (rv == CKR_OK)
		rv = f->C_CreateObject(s, pub, sizeof(pub) / sizeof(pub[0]), &h_pub);
	if (rv == CKR_OK)
		rv = f->C_CreateObject(s, cert, sizeof(cert) / sizeof(cert[0]), &h_cert);
	OPENSSL_free(subj);
	OPENSSL_free(iss);
	OPENSSL_free(ser);
	if (rv != CKR_OK) {
		/* No half-imported identity: remove what was written. */
		if (h_pub != CK_INVALID_HANDLE)
			f->C_DestroyObject(s, h_pub);
		if (h_priv != CK_INVALID_HANDLE)
			f->C_DestroyObject(s, h_priv);
		snprintf(detail, detail_size, "token \"%s\" refused to store the e.firma (%s)",
			 t->info.label, fp11_ckr_name(rv));
		rc = fp11_map_rv(rv);
		if (rc == 0 || rc == FIRMANTE_E_KEY_NOT_FOUND || rc == FIRMANTE_E_MECHANISM)
			rc = FIRMANTE_E_TOKEN;
		goto out;
	}
	*res = r;
	rc = 0;
out:
	if (s != CK_INVALID_HANDLE) {
		if (logged_in)
			f->C_Logout(s);
		f->C_CloseSession(s);
	}
	for (size_t i = 0; i < N_PARTS; i++)
		if (v[i])
			OPENSSL_secure_clear_free(v[i], vl[i] ? vl[i] : 1);
	free(toks);
	p11_kit_uri_free(u);
	EVP_PKEY_free(pk);
	X509_free(x);
	return rc;
}
