/*
 * Unit tests for the token room (pkcs11/) on a SoftHSM2 token made fresh
 * for the run with tests/tools/fm-testtoken.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <p11-kit/pkcs11.h>

#include "firmante/protocol.h"
#include "firmante/satcert.h"
#include "firmante/token.h"
#include "firmante/util.h"

#define TOOL FIRMANTE_SOURCE_DIR "/tests/tools/fm-testtoken"
#define SOFTHSM "/usr/lib/softhsm/libsofthsm2.so"
#define SAT_FIEL FIRMANTE_SHARED_DIR "/fixtures/sat/FIEL_AAA010101AAA"
#define CADENA FIRMANTE_SHARED_DIR "/spec/examples/oficial-cadena-firmaresponsable.txt"
#define LABEL "firmante-prueba"
#define PIN "123456"

/* Known-answer sello (fixtures/sat/README.md). */
static const char kat_sello[] =
	"eiMxTf/StKZgAetxdGl8gnlRNvR1Tx7UnOjyDjoyvGlLnW/e/HM29rUQzP1aFHdeYA+IaVmpabrNLQl4kG3UYbYC"
	"VH7H1eM8Y1tieGtW/xvSQxQcJFnidmmpSSEEzIdKVU7nsyvQ0v9APJpt/z0Z3TSggeQqL8KxfgHMVZzzmzzoPH9e"
	"CP0WIk1V9Uto2oaemLzwDSO6t1lhNoLjKWtYFoTJ3zBWirf8qxJbTB5CzPxKxEJMgL69YoYpfT0JoO9Ulf8bnOg5"
	"fQgw9m2KxDkIPiRw3B0TppLmbdupjq/Z7lF1830jRNMkpfaPBOxzje5KPRBFfWkO/4tEuP0+ee8USA==";

extern char **environ;

struct fixture {
	char dir[64];
	fp11_ctx *ctx;
};

/* Run fm-testtoken with @argv (NULL-terminated, argv[0] ignored); 0 on exit 0. */
static int run_tool(const char *const *argv)
{
	pid_t pid;
	int status = 0;
	posix_spawn_file_actions_t fa;
	const char *args[32];
	size_t n = 0;

	args[n++] = TOOL;
	for (size_t i = 1; argv[i] && n < 31; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	if (posix_spawn_file_actions_init(&fa) != 0)
		return -1;
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	int rc = posix_spawn(&pid, TOOL, &fa, NULL, (char *const *)args, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return -1;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static void rm_rf(const char *dir)
{
	/* Only the directory this test made (mkdtemp under /tmp). */
	const char *argv[] = { "/bin/rm", "-rf", "--", dir, NULL };
	pid_t pid;
	int status;
	if (strncmp(dir, "/tmp/fm-p11-", 12) != 0)
		return;
	if (posix_spawn(&pid, "/bin/rm", NULL, NULL, (char *const *)argv, environ) == 0)
		waitpid(pid, &status, 0);
}

static int group_setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	if (!fx)
		return -1;
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/fm-p11-XXXXXX");
	if (!mkdtemp(fx->dir))
		goto fail;
	const char *d = fx->dir;
	const char *init[] = { "", "init", "--dir", d, "--label", LABEL, "--pin", PIN,
			       "--so-pin", "12345678", NULL };
	/* FIEL of an individual; private key hidden until login (CKA_PRIVATE). */
	const char *fiel[] = { "", "signer", "--dir", d, "--label", LABEL, "--pin", PIN,
			       "--id", "01", "--name", "MARIA LOPEZ GARCIA",
			       "--curp", "LOGM800101MDFPRR09", "--rfc", "LOGM800101AB1",
			       "--serial", "30001000000500000001", NULL };
	/* CSD of a legal person; key visible without login. */
	const char *csd[] = { "", "signer", "--dir", d, "--label", LABEL, "--pin", PIN,
			      "--id", "a1b2", "--name", "ACCEM SC", "--kind", "csd", "--visible",
			      "--curp", "HEGT761003MDFRNN09", "--rfc", "AAA010101AAA / HEGT7610034S2",
			      "--serial", "30001000000500000002", NULL };
	/* An extractable key (the agent must refuse it). */
	const char *ext[] = { "", "signer", "--dir", d, "--label", LABEL, "--pin", PIN,
			      "--id", "03", "--name", "JUAN PEREZ SOTO", "--visible", "--extractable",
			      "--curp", "PESJ700101HDFRTN01", "--rfc", "PESJ700101AB2",
			      "--serial", "30001000000500000003", NULL };
	/* The SAT test FIEL, for the known-answer sello. */
	const char *imp[] = { "", "import", "--dir", d, "--label", LABEL, "--pin", PIN,
			      "--id", "0f", "--cer", SAT_FIEL "/certificate.cer",
			      "--key", SAT_FIEL "/private_key.key",
			      "--password-file", SAT_FIEL "/password.txt", NULL };
	/* A key that needs the PIN for every signature (CKA_ALWAYS_AUTHENTICATE). */
	const char *always[] = { "", "signer", "--dir", d, "--label", LABEL, "--pin", PIN,
				 "--id", "05", "--name", "ANA RUIZ DIAZ", "--always-authenticate",
				 "--curp", "RUDA900101MDFZZN05", "--rfc", "RUDA900101AB3",
				 "--serial", "30001000000500000005", NULL };
	/* Certificate stored under another CKA_ID: paired by public key. */
	const char *other_id[] = { "", "signer", "--dir", d, "--label", LABEL, "--pin", PIN,
				   "--id", "06", "--cert-id", "66", "--visible",
				   "--name", "LUIS DIAZ RUIZ", "--curp", "DIRL850101HDFZZS06",
				   "--rfc", "DIRL850101AB4", "--serial", "30001000000500000006", NULL };
	if (run_tool(init) || run_tool(fiel) || run_tool(csd) || run_tool(ext) || run_tool(imp) ||
	    run_tool(always) || run_tool(other_id))
		goto fail;

	char conf[128];
	snprintf(conf, sizeof(conf), "%s/softhsm2.conf", d);
	setenv("SOFTHSM2_CONF", conf, 1);
	const char *paths[] = { SOFTHSM };
	struct fp11_config cfg = { paths, 1, false };
	if (fp11_open(&cfg, &fx->ctx) != 0)
		goto fail;
	*state = fx;
	return 0;
fail:
	if (fx->dir[0] && strcmp(fx->dir, "/tmp/fm-p11-XXXXXX") != 0)
		rm_rf(fx->dir);
	free(fx);
	return -1;
}

static int group_teardown(void **state)
{
	struct fixture *fx = *state;
	fp11_close(fx->ctx);
	rm_rf(fx->dir);
	free(fx);
	return 0;
}

static const struct fp11_identity *by_id(const struct fp11_identity *ids, size_t n, uint8_t id0)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i].id_len >= 1 && ids[i].id[0] == id0)
			return &ids[i];
	return NULL;
}

/* ------------------------------------------------------------------ */

static void test_open_errors(void **state)
{
	fp11_ctx *ctx = (fp11_ctx *)0x1;
	const char *bad[] = { "/nonexistent/libnothing.so" };
	struct fp11_config cfg = { bad, 1, false };
	assert_int_equal(fp11_open(&cfg, &ctx), FIRMANTE_E_CONFIG);
	assert_ptr_equal(ctx, (fp11_ctx *)0x1);
	const char *rel[] = { "libsofthsm2.so" };
	struct fp11_config cfg2 = { rel, 1, false };
	assert_int_equal(fp11_open(&cfg2, &ctx), FIRMANTE_E_CONFIG);
	/* No module at all is not an error. */
	struct fp11_config none = { NULL, 0, false };
	assert_int_equal(fp11_open(&none, &ctx), 0);
	struct fp11_token_info *toks = NULL;
	size_t n = 99;
	assert_int_equal(fp11_list_tokens(ctx, &toks, &n), 0);
	assert_int_equal(n, 0);
	free(toks);
	fp11_close(ctx);
	fp11_close(NULL);
	fp11_identities_free(NULL, 0);
}

static void test_tokens(void **state)
{
	struct fixture *fx = *state;
	struct fp11_token_info *toks = NULL;
	size_t n = 0;
	assert_int_equal(fp11_list_tokens(fx->ctx, &toks, &n), 0);
	/* SoftHSM2's spare uninitialised slot is not listed. */
	assert_int_equal(n, 1);
	assert_string_equal(toks[0].label, LABEL);
	assert_string_equal(toks[0].manufacturer, "SoftHSM project");
	assert_string_equal(toks[0].model, "SoftHSM v2");
	assert_int_equal(strlen(toks[0].serial), 16);
	assert_string_equal(toks[0].module, SOFTHSM);
	assert_true(toks[0].login_required);
	assert_true(toks[0].user_pin_initialized);
	assert_false(toks[0].protected_auth_path);
	assert_false(toks[0].user_pin_locked);
	assert_true(toks[0].flags & CKF_TOKEN_INITIALIZED);
	assert_non_null(strstr(toks[0].uri, "pkcs11:"));
	assert_non_null(strstr(toks[0].uri, "token=" LABEL));
	assert_non_null(strstr(toks[0].uri, "serial="));
	assert_non_null(strstr(toks[0].uri, toks[0].serial));
	assert_non_null(strstr(toks[0].uri, "manufacturer=SoftHSM%20project"));
	free(toks);
}

static void test_dedup_p11kit(void **state)
{
	/* The same token through the p11-kit registry and a path: listed once. */
	fp11_ctx *ctx = NULL;
	const char *paths[] = { SOFTHSM };
	struct fp11_config cfg = { paths, 1, true };
	if (fp11_open(&cfg, &ctx) != 0)
		skip();
	struct fp11_token_info *toks = NULL;
	size_t n = 0, mine = 0;
	assert_int_equal(fp11_list_tokens(ctx, &toks, &n), 0);
	for (size_t i = 0; i < n; i++)
		if (strcmp(toks[i].label, LABEL) == 0)
			mine++;
	assert_int_equal(mine, 1);
	free(toks);
	fp11_close(ctx);
}

static void test_identities(void **state)
{
	struct fixture *fx = *state;
	struct fp11_identity *ids = NULL;
	size_t n = 0;
	char when[32];
	assert_int_equal(fp11_list_identities(fx->ctx, &ids, &n), 0);
	assert_int_equal(n, 6);

	/* FIEL with its key hidden until login: listed from the certificate. */
	const struct fp11_identity *fiel = by_id(ids, n, 0x01);
	assert_non_null(fiel);
	assert_int_equal(fiel->id_len, 1);
	assert_false(fiel->key_visible);
	assert_string_equal(fiel->key_label, "MARIA LOPEZ GARCIA");
	assert_string_equal(fiel->token.label, LABEL);
	assert_int_equal(fiel->cert_err, 0);
	assert_string_equal(fiel->cert.no_certificado, "30001000000500000001");
	assert_string_equal(fiel->cert.curp, "LOGM800101MDFPRR09");
	assert_string_equal(fiel->cert.rfc, "LOGM800101AB1");
	assert_string_equal(fiel->cert.rfc_representative, "");
	assert_string_equal(fiel->cert.subject_cn, "MARIA LOPEZ GARCIA");
	assert_string_equal(fiel->cert.issuer_cn, "A.C. de pruebas firmante");
	assert_int_equal(fiel->cert.kind, FM_SATCERT_FIEL);
	assert_int_equal(fiel->cert.key_bits, 2048);
	assert_int_equal(fm_satcert_check_validity(&fiel->cert, time(NULL)), 0);
	/* Default validity: now - 1 day .. now + 4 years. */
	assert_true(fiel->cert.not_before < time(NULL) - 86000);
	assert_true(fiel->cert.not_after > time(NULL) + 4 * 364 * 86400L);
	fm_time_iso8601(fiel->cert.not_after, when, sizeof(when));
	assert_int_equal(strlen(when), 20);
	assert_true(fiel->mech_sha256_rsa_pkcs);
	assert_true(fiel->mech_rsa_pkcs);
	assert_non_null(strstr(fiel->uri, "id=%01"));
	assert_non_null(strstr(fiel->uri, "type=private"));
	assert_non_null(strstr(fiel->uri, "token=" LABEL));
	assert_null(strstr(fiel->uri, "object="));
	assert_non_null(fiel->cert_der);
	struct fm_satcert again;
	assert_int_equal(fm_satcert_parse_der(fiel->cert_der, fiel->cert_len, &again), 0);

	/* CSD, key visible: paired by CKA_ID, attributes read. */
	const struct fp11_identity *csd = by_id(ids, n, 0xa1);
	assert_non_null(csd);
	assert_int_equal(csd->id_len, 2);
	assert_int_equal(csd->id[1], 0xb2);
	assert_true(csd->key_visible);
	assert_string_equal(csd->key_label, "ACCEM SC");
	assert_true(csd->sensitive);
	assert_false(csd->extractable);
	assert_false(csd->always_authenticate);
	assert_int_equal(csd->cert.kind, FM_SATCERT_CSD);
	assert_string_equal(csd->cert.ou, "CSD01_AAA010101AAA");
	assert_string_equal(csd->cert.no_certificado, "30001000000500000002");
	assert_string_equal(csd->cert.curp, "HEGT761003MDFRNN09");
	assert_string_equal(csd->cert.rfc, "AAA010101AAA");
	assert_string_equal(csd->cert.rfc_representative, "HEGT7610034S2");
	assert_non_null(strstr(csd->uri, "id=%A1%B2") ? strstr(csd->uri, "id=%A1%B2")
						       : strstr(csd->uri, "id=%a1%b2"));
	assert_non_null(strstr(csd->uri, "object=ACCEM%20SC"));
	assert_non_null(strstr(csd->uri, "serial="));
	assert_non_null(strstr(csd->uri, "model=SoftHSM%20v2"));

	const struct fp11_identity *ext = by_id(ids, n, 0x03);
	assert_non_null(ext);
	assert_true(ext->key_visible);
	assert_true(ext->extractable);
	assert_true(ext->sensitive);
	assert_string_equal(ext->cert.no_certificado, "30001000000500000003");

	const struct fp11_identity *sat = by_id(ids, n, 0x0f);
	assert_non_null(sat);
	assert_false(sat->key_visible);
	assert_string_equal(sat->cert.no_certificado, "30001000000300023685");
	assert_string_equal(sat->cert.curp, "HEGT761003MDFRNN09");
	assert_int_equal(fm_satcert_check_validity(&sat->cert, time(NULL)), FIRMANTE_E_CERT_EXPIRED);

	const struct fp11_identity *al = by_id(ids, n, 0x05);
	assert_non_null(al);
	assert_false(al->key_visible);
	assert_string_equal(al->cert.no_certificado, "30001000000500000005");

	/* Key 06, certificate 66: paired by the RSA public key; the key's id counts. */
	const struct fp11_identity *pk = by_id(ids, n, 0x06);
	assert_non_null(pk);
	assert_true(pk->key_visible);
	assert_string_equal(pk->cert.no_certificado, "30001000000500000006");
	assert_string_equal(pk->cert.curp, "DIRL850101HDFZZS06");
	assert_non_null(strstr(pk->uri, "id=%06"));
	assert_null(by_id(ids, n, 0x66));

	fp11_identities_free(ids, n);
}

static void test_find(void **state)
{
	struct fixture *fx = *state;
	struct fp11_identity *ids = NULL, *one = NULL;
	size_t n = 0;
	assert_int_equal(fp11_list_identities(fx->ctx, &ids, &n), 0);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(fp11_find_identity(fx->ctx, ids[i].uri, &one), 0);
		assert_int_equal(one->id_len, ids[i].id_len);
		assert_memory_equal(one->id, ids[i].id, ids[i].id_len);
		assert_int_equal(one->cert_len, ids[i].cert_len);
		assert_memory_equal(one->cert_der, ids[i].cert_der, ids[i].cert_len);
		fp11_identities_free(one, 1);
		one = NULL;
	}
	fp11_identities_free(ids, n);

	/* The short form the test tool prints. */
	assert_int_equal(fp11_find_identity(fx->ctx, "pkcs11:token=" LABEL ";id=%01;type=private", &one), 0);
	assert_string_equal(one->cert.curp, "LOGM800101MDFPRR09");
	assert_string_equal(one->cert.no_certificado, "30001000000500000001");
	fp11_identities_free(one, 1);
	one = NULL;
	/* A PIN in the query is ignored (never used to log in). */
	assert_int_equal(fp11_find_identity(fx->ctx, "pkcs11:id=%01?pin-value=9999", &one), 0);
	assert_string_equal(one->cert.no_certificado, "30001000000500000001");
	fp11_identities_free(one, 1);
	one = NULL;
	assert_int_equal(fp11_find_identity(fx->ctx, "pkcs11:object=ACCEM%20SC", &one), 0);
	assert_string_equal(one->cert.no_certificado, "30001000000500000002");
	fp11_identities_free(one, 1);
	one = NULL;

	struct fp11_identity *untouched = (struct fp11_identity *)0x1;
	/* Several matches, no match, wrong type, other token, not a URI. */
	assert_int_equal(fp11_find_identity(fx->ctx, "pkcs11:token=" LABEL, &untouched),
			 FIRMANTE_E_KEY_NOT_FOUND);
	assert_int_equal(fp11_find_identity(fx->ctx, "pkcs11:id=%99", &untouched),
			 FIRMANTE_E_KEY_NOT_FOUND);
	assert_int_equal(fp11_find_identity(fx->ctx, "pkcs11:id=%01;type=cert", &untouched),
			 FIRMANTE_E_KEY_NOT_FOUND);
	assert_int_equal(fp11_find_identity(fx->ctx, "pkcs11:token=otro;id=%01", &untouched),
			 FIRMANTE_E_KEY_NOT_FOUND);
	assert_int_equal(fp11_find_identity(fx->ctx, "https://example.com/", &untouched),
			 FIRMANTE_E_BAD_REQUEST);
	assert_int_equal(fp11_find_identity(fx->ctx, "pkcs11:id=%zz", &untouched),
			 FIRMANTE_E_BAD_REQUEST);
	assert_ptr_equal(untouched, (struct fp11_identity *)0x1);
}

/* PIN callback: counts calls, answers with a PIN or an error. */
struct pin_ctx {
	const char *pin;
	int err;
	int calls;
	int context_calls;
};

static int pin_cb(void *data, const struct fp11_token_info *tok, bool context_specific,
		  char *pin, size_t pin_size)
{
	struct pin_ctx *p = data;
	p->calls++;
	if (context_specific)
		p->context_calls++;
	assert_string_equal(tok->label, LABEL);
	if (p->err)
		return p->err;
	snprintf(pin, pin_size, "%s", p->pin);
	return 0;
}

/* Correct PIN for CKU_USER, then the error in @data for CKU_CONTEXT_SPECIFIC. */
static int pin_cb_deny_context(void *data, const struct fp11_token_info *tok,
			       bool context_specific, char *pin, size_t pin_size)
{
	struct pin_ctx *p = data;
	p->calls++;
	if (context_specific)
		return p->err;
	snprintf(pin, pin_size, "%s", PIN);
	return 0;
}

/* Correct PIN for CKU_USER, the PIN in @data for CKU_CONTEXT_SPECIFIC. */
static int pin_cb_bad_context(void *data, const struct fp11_token_info *tok,
			      bool context_specific, char *pin, size_t pin_size)
{
	struct pin_ctx *p = data;
	p->calls++;
	snprintf(pin, pin_size, "%s", context_specific ? p->pin : PIN);
	return 0;
}

static bool verify(const struct fp11_identity *id, const uint8_t *data, size_t len,
		   const uint8_t *sig, size_t sig_len)
{
	const unsigned char *p = id->cert_der;
	X509 *x = d2i_X509(NULL, &p, (long)id->cert_len);
	assert_non_null(x);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	assert_non_null(md);
	bool ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, X509_get0_pubkey(x)) == 1 &&
		  EVP_DigestVerify(md, sig, sig_len, data, len) == 1;
	EVP_MD_CTX_free(md);
	X509_free(x);
	return ok;
}

static struct fp11_identity *find(struct fixture *fx, const char *uri)
{
	struct fp11_identity *one = NULL;
	assert_int_equal(fp11_find_identity(fx->ctx, uri, &one), 0);
	return one;
}

static void test_sign(void **state)
{
	struct fixture *fx = *state;
	static const uint8_t hello[] = "hello";
	uint8_t sig[512];
	size_t sig_len = sizeof(sig);
	struct pin_ctx pc = { PIN, 0, 0, 0 };

	/* Hidden key: found by CKA_ID after login. */
	struct fp11_identity *id = find(fx, "pkcs11:token=" LABEL ";id=%01;type=private");
	assert_int_equal(fp11_sign(fx->ctx, id, pin_cb, &pc, false, hello, 5, sig, &sig_len), 0);
	assert_int_equal(sig_len, 256);
	assert_int_equal(pc.calls, 1);
	assert_int_equal(pc.context_calls, 0);
	assert_true(verify(id, hello, 5, sig, sig_len));
	assert_false(verify(id, (const uint8_t *)"hellO", 5, sig, sig_len));
	fp11_identities_free(id, 1);

	/* Visible key. */
	id = find(fx, "pkcs11:token=" LABEL ";id=%a1%b2");
	pc.calls = 0;
	sig_len = sizeof(sig);
	assert_int_equal(fp11_sign(fx->ctx, id, pin_cb, &pc, false, hello, 5, sig, &sig_len), 0);
	assert_int_equal(pc.calls, 1);
	assert_true(verify(id, hello, 5, sig, sig_len));
	/* Empty data is signable too. */
	sig_len = sizeof(sig);
	assert_int_equal(fp11_sign(fx->ctx, id, pin_cb, &pc, false, NULL, 0, sig, &sig_len), 0);
	assert_true(verify(id, (const uint8_t *)"", 0, sig, sig_len));
	fp11_identities_free(id, 1);
}

static void test_sign_errors(void **state)
{
	struct fixture *fx = *state;
	static const uint8_t hello[] = "hello";
	uint8_t sig[512];
	size_t sig_len;
	struct fp11_identity *id = find(fx, "pkcs11:token=" LABEL ";id=%01;type=private");

	/* Wrong PIN: reported, and asked exactly once. */
	struct pin_ctx bad = { "000000", 0, 0, 0 };
	sig_len = sizeof(sig);
	memset(sig, 0xEE, sizeof(sig));
	assert_int_equal(fp11_sign(fx->ctx, id, pin_cb, &bad, false, hello, 5, sig, &sig_len),
			 FIRMANTE_E_PIN_INCORRECT);
	assert_int_equal(bad.calls, 1);
	assert_int_equal(sig_len, sizeof(sig));
	assert_int_equal(sig[0], 0xEE);

	/* The holder says no: that error, no signature. */
	struct pin_ctx deny = { NULL, FIRMANTE_E_USER_DENIED, 0, 0 };
	assert_int_equal(fp11_sign(fx->ctx, id, pin_cb, &deny, false, hello, 5, sig, &sig_len),
			 FIRMANTE_E_USER_DENIED);
	assert_int_equal(deny.calls, 1);
	assert_int_equal(sig_len, sizeof(sig));
	assert_int_equal(sig[0], 0xEE);

	/* No PIN source. */
	assert_int_equal(fp11_sign(fx->ctx, id, NULL, NULL, false, hello, 5, sig, &sig_len),
			 FIRMANTE_E_PINENTRY);

	/* Buffer too small: refused before asking for the PIN. */
	struct pin_ctx good = { PIN, 0, 0, 0 };
	size_t small = 100;
	assert_int_equal(fp11_sign(fx->ctx, id, pin_cb, &good, false, hello, 5, sig, &small),
			 FIRMANTE_E_BAD_REQUEST);
	assert_int_equal(good.calls, 0);
	assert_int_equal(small, 100);

	/* The token is gone (another serial): removed. */
	struct fp11_identity gone = *id;
	snprintf(gone.token.serial, sizeof(gone.token.serial), "0000000000000000");
	assert_int_equal(fp11_sign(fx->ctx, &gone, pin_cb, &good, false, hello, 5, sig, &sig_len),
			 FIRMANTE_E_TOKEN_REMOVED);
	assert_int_equal(good.calls, 0);

	/* A key id that is not on the token. */
	struct fp11_identity other = *id;
	other.id[0] = 0x77;
	assert_int_equal(fp11_sign(fx->ctx, &other, pin_cb, &good, false, hello, 5, sig, &sig_len),
			 FIRMANTE_E_KEY_NOT_FOUND);

	/* A correct PIN afterwards still works (the counter resets). */
	good.calls = 0;
	sig_len = sizeof(sig);
	assert_int_equal(fp11_sign(fx->ctx, id, pin_cb, &good, false, hello, 5, sig, &sig_len), 0);
	assert_int_equal(good.calls, 1);
	fp11_identities_free(id, 1);
}

static void test_hidden_extractable_refused(void **state)
{
	/*
	 * A visible extractable key is listed with its flags (the caller
	 * decides); fp11_sign() signs with it. An identity whose key was not
	 * visible is checked after login instead.
	 */
	struct fixture *fx = *state;
	static const uint8_t hello[] = "hello";
	uint8_t sig[512];
	size_t sig_len = sizeof(sig);
	struct pin_ctx good = { PIN, 0, 0, 0 };
	struct fp11_identity *id = find(fx, "pkcs11:id=%03");
	assert_true(id->extractable);
	assert_int_equal(fp11_sign(fx->ctx, id, pin_cb, &good, false, hello, 5, sig, &sig_len), 0);
	assert_true(verify(id, hello, 5, sig, sig_len));
	id->key_visible = false; /* as if it had been hidden */
	sig_len = sizeof(sig);
	assert_int_equal(fp11_sign(fx->ctx, id, pin_cb, &good, false, hello, 5, sig, &sig_len),
			 FIRMANTE_E_KEY_EXTRACTABLE);
	fp11_identities_free(id, 1);
}

static void test_known_answer(void **state)
{
	/* The SAT test FIEL on the token signs the official cadena byte for byte. */
	struct fixture *fx = *state;
	char *cadena = NULL, *b64 = NULL;
	size_t len = 0;
	uint8_t sig[512];
	size_t sig_len = sizeof(sig);
	struct pin_ctx good = { PIN, 0, 0, 0 };
	assert_int_equal(fm_read_file(CADENA, 1 << 20, &cadena, &len), 0);
	assert_int_equal(len, 405);
	struct fp11_identity *id = find(fx, "pkcs11:token=" LABEL ";id=%0f;type=private");
	assert_int_equal(fp11_sign(fx->ctx, id, pin_cb, &good, false, (const uint8_t *)cadena, len,
				   sig, &sig_len), 0);
	assert_int_equal(sig_len, 256);
	assert_int_equal(fm_base64_encode(sig, sig_len, &b64), 0);
	assert_string_equal(b64, kat_sello);
	assert_true(verify(id, (const uint8_t *)cadena, len, sig, sig_len));
	free(b64);
	free(cadena);
	fp11_identities_free(id, 1);
}

static void test_always_authenticate(void **state)
{
	/* CKU_USER login, then CKU_CONTEXT_SPECIFIC after C_SignInit. */
	struct fixture *fx = *state;
	static const uint8_t hello[] = "hello";
	uint8_t sig[512];
	size_t sig_len = sizeof(sig);
	struct pin_ctx good = { PIN, 0, 0, 0 };
	struct fp11_identity *id = find(fx, "pkcs11:id=%05");
	assert_int_equal(fp11_sign(fx->ctx, id, pin_cb, &good, false, hello, 5, sig, &sig_len), 0);
	assert_int_equal(good.calls, 2);
	assert_int_equal(good.context_calls, 1);
	assert_true(verify(id, hello, 5, sig, sig_len));
	/* Denied at the context-specific prompt: that error, no signature. */
	memset(sig, 0xEE, sizeof(sig));
	sig_len = sizeof(sig);
	struct pin_ctx deny_ctx = { PIN, FIRMANTE_E_USER_DENIED, 0, 0 };
	assert_int_equal(fp11_sign(fx->ctx, id, pin_cb_deny_context, &deny_ctx, false, hello, 5,
				   sig, &sig_len), FIRMANTE_E_USER_DENIED);
	assert_int_equal(deny_ctx.calls, 2);
	assert_int_equal(sig_len, sizeof(sig));
	assert_int_equal(sig[0], 0xEE);
	/* Wrong PIN at the context-specific prompt. */
	struct pin_ctx bad_ctx = { "999999", 0, 0, 0 };
	assert_int_equal(fp11_sign(fx->ctx, id, pin_cb_bad_context, &bad_ctx, false, hello, 5,
				   sig, &sig_len), FIRMANTE_E_PIN_INCORRECT);
	assert_int_equal(bad_ctx.calls, 2);
	fp11_identities_free(id, 1);
}

static void test_hash_in_software(void **state)
{
	/* CKM_RSA_PKCS over a DigestInfo built in code gives the same sello. */
	struct fixture *fx = *state;
	char *cadena = NULL, *b64 = NULL;
	size_t len = 0;
	uint8_t sig[512];
	size_t sig_len = sizeof(sig);
	struct pin_ctx good = { PIN, 0, 0, 0 };
	assert_int_equal(fm_read_file(CADENA, 1 << 20, &cadena, &len), 0);
	struct fp11_identity *id = find(fx, "pkcs11:id=%0f");
	fp11_set_hash_in_software(fx->ctx, true);
	int rc = fp11_sign(fx->ctx, id, pin_cb, &good, false, (const uint8_t *)cadena, len, sig,
			   &sig_len);
	fp11_set_hash_in_software(fx->ctx, false);
	fp11_set_hash_in_software(NULL, true);
	assert_int_equal(rc, 0);
	assert_int_equal(fm_base64_encode(sig, sig_len, &b64), 0);
	assert_string_equal(b64, kat_sello);
	free(b64);
	free(cadena);
	fp11_identities_free(id, 1);
}

static void test_ckr_name(void **state)
{
	assert_string_equal(fp11_ckr_name(CKR_OK), "CKR_OK");
	assert_string_equal(fp11_ckr_name(CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT");
	assert_string_equal(fp11_ckr_name(CKR_DEVICE_REMOVED), "CKR_DEVICE_REMOVED");
	assert_string_equal(fp11_ckr_name(CKR_USER_ALREADY_LOGGED_IN), "CKR_USER_ALREADY_LOGGED_IN");
	assert_string_equal(fp11_ckr_name(CKR_VENDOR_DEFINED + 5), "CKR_VENDOR_DEFINED");
	assert_string_equal(fp11_ckr_name(0x7777), "CKR_UNKNOWN");
}

static void test_tool_cert_file(void **state)
{
	/* The .cer the tool writes equals the certificate on the token. */
	struct fixture *fx = *state;
	char path[128], *der = NULL;
	size_t len = 0;
	struct fm_satcert c;
	snprintf(path, sizeof(path), "%s/certs/PESJ700101HDFRTN01.cer", fx->dir);
	assert_int_equal(fm_read_file(path, 1 << 20, &der, &len), 0);
	assert_int_equal(fm_satcert_parse_der((const uint8_t *)der, len, &c), 0);
	assert_string_equal(c.no_certificado, "30001000000500000003");
	assert_string_equal(c.curp, "PESJ700101HDFRTN01");
	assert_string_equal(c.rfc, "PESJ700101AB2");
	assert_int_equal(c.kind, FM_SATCERT_FIEL);
	struct fp11_identity *id = find(fx, "pkcs11:id=%03");
	assert_int_equal(id->cert_len, len);
	assert_memory_equal(id->cert_der, der, len);
	fp11_identities_free(id, 1);
	free(der);
	/* init refuses an existing label. */
	const char *again[] = { "", "init", "--dir", fx->dir, "--label", LABEL, "--pin", PIN,
				"--so-pin", "12345678", NULL };
	assert_int_not_equal(run_tool(again), 0);
}


#ifdef P11SHIM_PATH
/* ------------------------------------------------------------------ */
/* Faults injected by tests/p11shim (removal, PIN states, sessions, mechanisms). */

static int shim_setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	char path[128];
	if (!fx)
		return -1;
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/fm-p11-XXXXXX");
	if (!mkdtemp(fx->dir))
		goto fail;
	const char *d = fx->dir;
	const char *init[] = { "", "init", "--dir", d, "--label", LABEL, "--pin", PIN,
			       "--so-pin", "12345678", NULL };
	const char *fiel[] = { "", "signer", "--dir", d, "--label", LABEL, "--pin", PIN,
			       "--id", "01", "--name", "MARIA LOPEZ GARCIA",
			       "--curp", "LOGM800101MDFPRR09", "--rfc", "LOGM800101AB1",
			       "--serial", "30001000000500000001", NULL };
	const char *imp[] = { "", "import", "--dir", d, "--label", LABEL, "--pin", PIN,
			      "--id", "0f", "--cer", SAT_FIEL "/certificate.cer",
			      "--key", SAT_FIEL "/private_key.key",
			      "--password-file", SAT_FIEL "/password.txt", NULL };
	if (run_tool(init) || run_tool(fiel) || run_tool(imp))
		goto fail;
	snprintf(path, sizeof(path), "%s/softhsm2.conf", d);
	setenv("SOFTHSM2_CONF", path, 1);
	setenv("P11SHIM_MODULE", SOFTHSM, 1);
	snprintf(path, sizeof(path), "%s/control", d);
	setenv("P11SHIM_CONTROL", path, 1);
	snprintf(path, sizeof(path), "%s/calls.log", d);
	setenv("P11SHIM_LOG", path, 1);
	const char *paths[] = { P11SHIM_PATH };
	struct fp11_config cfg = { paths, 1, false };
	if (fp11_open(&cfg, &fx->ctx) != 0)
		goto fail;
	*state = fx;
	return 0;
fail:
	if (strcmp(fx->dir, "/tmp/fm-p11-XXXXXX") != 0)
		rm_rf(fx->dir);
	free(fx);
	return -1;
}

static void shim_control(struct fixture *fx, const char *text)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/control", fx->dir);
	assert_int_equal(fm_write_file_atomic(path, text, strlen(text), 0600), 0);
}

/* Lines of the shim's call log that start with @fn followed by a space. */
static int shim_calls(struct fixture *fx, const char *fn)
{
	char path[128], *log = NULL;
	size_t len = 0, fl = strlen(fn);
	int n = 0;
	snprintf(path, sizeof(path), "%s/calls.log", fx->dir);
	if (fm_read_file(path, 64u << 20, &log, &len) != 0)
		return 0;
	for (const char *p = log; p && *p;) {
		if (strncmp(p, fn, fl) == 0 && p[fl] == ' ')
			n++;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	free(log);
	return n;
}

static void shim_reset_log(struct fixture *fx)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/calls.log", fx->dir);
	assert_int_equal(truncate(path, 0), 0);
}

static int shim_sign(struct fixture *fx, const char *uri, struct pin_ctx *pc, bool allow_final)
{
	static const uint8_t hello[] = "hello";
	uint8_t sig[512];
	size_t sig_len = sizeof(sig);
	struct fp11_identity *id = find(fx, uri);
	int rc = fp11_sign(fx->ctx, id, pin_cb, pc, allow_final, hello, 5, sig, &sig_len);
	if (rc == 0)
		assert_true(verify(id, hello, 5, sig, sig_len));
	fp11_identities_free(id, 1);
	return rc;
}

static void test_shim_pin_states(void **state)
{
	struct fixture *fx = *state;
	struct fp11_token_info *toks = NULL;
	size_t n = 0;

	/* Locked: refused before asking. */
	shim_control(fx, "pin_flags=locked\n");
	assert_int_equal(fp11_list_tokens(fx->ctx, &toks, &n), 0);
	assert_int_equal(n, 1);
	assert_true(toks[0].user_pin_locked);
	free(toks);
	struct pin_ctx pc = { PIN, 0, 0, 0 };
	assert_int_equal(shim_sign(fx, "pkcs11:id=%01", &pc, true), FIRMANTE_E_PIN_LOCKED);
	assert_int_equal(pc.calls, 0);

	/* Final try: needs explicit permission. */
	shim_control(fx, "pin_flags=final_try\n");
	pc.calls = 0;
	assert_int_equal(shim_sign(fx, "pkcs11:id=%01", &pc, false), FIRMANTE_E_PIN_FINAL_TRY);
	assert_int_equal(pc.calls, 0);
	assert_int_equal(shim_sign(fx, "pkcs11:id=%01", &pc, true), 0);
	assert_int_equal(pc.calls, 1);

	/* Count low: reported, signing works. */
	shim_control(fx, "pin_flags=count_low\n");
	assert_int_equal(fp11_list_tokens(fx->ctx, &toks, &n), 0);
	assert_true(toks[0].user_pin_count_low);
	assert_false(toks[0].user_pin_final_try);
	free(toks);
	pc.calls = 0;
	assert_int_equal(shim_sign(fx, "pkcs11:id=%01", &pc, false), 0);
	assert_int_equal(pc.calls, 1);

	/* CKR_USER_ALREADY_LOGGED_IN is success. */
	shim_control(fx, "already_logged_in=1\n");
	pc.calls = 0;
	assert_int_equal(shim_sign(fx, "pkcs11:id=%01", &pc, false), 0);
	assert_int_equal(pc.calls, 1);

	/* A wrong PIN reaches C_Login once, never again. */
	shim_control(fx, "\n");
	shim_reset_log(fx);
	struct pin_ctx bad = { "000000", 0, 0, 0 };
	assert_int_equal(shim_sign(fx, "pkcs11:id=%01", &bad, false), FIRMANTE_E_PIN_INCORRECT);
	assert_int_equal(bad.calls, 1);
	assert_int_equal(shim_calls(fx, "C_Login"), 1);
	assert_int_equal(shim_calls(fx, "C_Sign"), 0);
}

static void test_shim_removal(void **state)
{
	struct fixture *fx = *state;
	struct fp11_token_info *toks = NULL;
	struct fp11_identity *ids = NULL;
	size_t n = 0;
	struct pin_ctx pc = { PIN, 0, 0, 0 };
	struct fp11_identity *id = find(fx, "pkcs11:id=%01");
	static const uint8_t hello[] = "hello";
	uint8_t sig[512];
	size_t sig_len = sizeof(sig);

	shim_control(fx, "removed=1\n");
	assert_int_equal(fp11_list_tokens(fx->ctx, &toks, &n), 0);
	assert_int_equal(n, 0);
	free(toks);
	assert_int_equal(fp11_list_identities(fx->ctx, &ids, &n), 0);
	assert_int_equal(n, 0);
	fp11_identities_free(ids, n);
	assert_int_equal(fp11_sign(fx->ctx, id, pin_cb, &pc, false, hello, 5, sig, &sig_len),
			 FIRMANTE_E_TOKEN_REMOVED);
	assert_int_equal(pc.calls, 0);

	/* Re-inserted under another slot id: found again by serial and label. */
	shim_control(fx, "removed=1\nslot_offset=7\n");
	shim_control(fx, "removed=0\nslot_offset=7\n");
	assert_int_equal(fp11_list_tokens(fx->ctx, &toks, &n), 0);
	assert_int_equal(n, 1);
	assert_int_not_equal(toks[0].slot_id, id->token.slot_id);
	free(toks);
	assert_int_equal(fp11_sign(fx->ctx, id, pin_cb, &pc, false, hello, 5, sig, &sig_len), 0);
	assert_int_equal(pc.calls, 1);
	assert_true(verify(id, hello, 5, sig, sig_len));
	fp11_identities_free(id, 1);
	shim_control(fx, "\n");
}

static void test_shim_sessions(void **state)
{
	struct fixture *fx = *state;
	struct pin_ctx pc = { PIN, 0, 0, 0 };
	static const uint8_t hello[] = "hello";
	uint8_t sig[512];
	size_t sig_len = sizeof(sig);
	struct fp11_identity *ids = NULL;
	size_t n = 0;

	/* Listing: a lost session is retried once. */
	shim_control(fx, "session_invalid=1\n");
	assert_int_equal(fp11_list_identities(fx->ctx, &ids, &n), 0);
	assert_int_equal(n, 2);
	fp11_identities_free(ids, n);

	/* Signing: one lost session before any PIN prompt is recovered. */
	struct fp11_identity *id = find(fx, "pkcs11:id=%01");
	shim_control(fx, "session_invalid=1\n");
	assert_int_equal(fp11_sign(fx->ctx, id, pin_cb, &pc, false, hello, 5, sig, &sig_len), 0);
	assert_int_equal(pc.calls, 1);
	assert_true(verify(id, hello, 5, sig, sig_len));

	/* Lost again on the retry: reported, nobody asked. */
	shim_control(fx, "session_invalid=2\n");
	pc.calls = 0;
	sig_len = sizeof(sig);
	assert_int_equal(fp11_sign(fx->ctx, id, pin_cb, &pc, false, hello, 5, sig, &sig_len),
			 FIRMANTE_E_TOKEN_REMOVED);
	assert_int_equal(pc.calls, 0);
	assert_int_equal(sig_len, sizeof(sig));

	/* The card resets right after a signature: the next one needs a new login. */
	shim_control(fx, "reset_after=1\n");
	pc.calls = 0;
	assert_int_equal(fp11_sign(fx->ctx, id, pin_cb, &pc, false, hello, 5, sig, &sig_len), 0);
	assert_int_equal(fp11_sign(fx->ctx, id, pin_cb, &pc, false, hello, 5, sig, &sig_len), 0);
	assert_int_equal(pc.calls, 2);
	fp11_identities_free(id, 1);
	shim_control(fx, "\n");
}

static void test_shim_kept_login(void **state)
{
	/* fp11_sign_as keeps the login for its owner only (token.h). */
	struct fixture *fx = *state;
	struct pin_ctx pc = { PIN, 0, 0, 0 };
	static const uint8_t hello[] = "hello";
	uint8_t sig[512];
	size_t sig_len;
	struct fp11_identity *id = find(fx, "pkcs11:id=%01");

	shim_control(fx, "\n");
	shim_reset_log(fx);
	for (int i = 0; i < 3; i++) {
		sig_len = sizeof(sig);
		assert_int_equal(fp11_sign_as(fx->ctx, id, "batch-1", pin_cb, &pc, false, hello, 5,
					      sig, &sig_len), 0);
		assert_true(verify(id, hello, 5, sig, sig_len));
	}
	/* One PIN, one login, no logout; the session was kept too. */
	assert_int_equal(pc.calls, 1);
	assert_int_equal(shim_calls(fx, "C_Login"), 1);
	assert_int_equal(shim_calls(fx, "C_Logout"), 0);
	assert_int_equal(shim_calls(fx, "C_Sign"), 3);
	assert_true(shim_calls(fx, "C_OpenSession") <= 1);

	/* Another owner: the kept login ends first, then its own PIN. */
	shim_reset_log(fx);
	pc.calls = 0;
	sig_len = sizeof(sig);
	assert_int_equal(fp11_sign_as(fx->ctx, id, "policy:nightly", pin_cb, &pc, false, hello, 5,
				      sig, &sig_len), 0);
	assert_int_equal(pc.calls, 1);
	assert_int_equal(shim_calls(fx, "C_Logout"), 1);
	assert_int_equal(shim_calls(fx, "C_Login"), 1);

	/* No owner: logged out before, logged in with the PIN, out after. */
	shim_reset_log(fx);
	pc.calls = 0;
	sig_len = sizeof(sig);
	assert_int_equal(fp11_sign(fx->ctx, id, pin_cb, &pc, false, hello, 5, sig, &sig_len), 0);
	assert_int_equal(pc.calls, 1);
	assert_int_equal(shim_calls(fx, "C_Login"), 1);
	assert_int_equal(shim_calls(fx, "C_Logout"), 2);

	/* fp11_drop_login ends a kept login of that owner, not of another. */
	sig_len = sizeof(sig);
	assert_int_equal(fp11_sign_as(fx->ctx, id, "pin-cache:7", pin_cb, &pc, false, hello, 5,
				      sig, &sig_len), 0);
	shim_reset_log(fx);
	fp11_drop_login(fx->ctx, &id->token, "pin-cache:8");
	assert_int_equal(shim_calls(fx, "C_Logout"), 0);
	fp11_drop_login(fx->ctx, &id->token, "pin-cache:7");
	assert_int_equal(shim_calls(fx, "C_Logout"), 1);
	pc.calls = 0;
	sig_len = sizeof(sig);
	assert_int_equal(fp11_sign_as(fx->ctx, id, "pin-cache:7", pin_cb, &pc, false, hello, 5,
				      sig, &sig_len), 0);
	assert_int_equal(pc.calls, 1);

	/* Bad owner tags. */
	sig_len = sizeof(sig);
	assert_int_equal(fp11_sign_as(fx->ctx, id, "", pin_cb, &pc, false, hello, 5, sig,
				      &sig_len), FIRMANTE_E_BAD_REQUEST);
	char longtag[FP11_OWNER_MAX + 1];
	memset(longtag, 'x', sizeof(longtag) - 1);
	longtag[sizeof(longtag) - 1] = '\0';
	assert_int_equal(fp11_sign_as(fx->ctx, id, longtag, pin_cb, &pc, false, hello, 5, sig,
				      &sig_len), FIRMANTE_E_BAD_REQUEST);
	fp11_drop_login(fx->ctx, &id->token, NULL);
	fp11_identities_free(id, 1);
}

static void test_shim_rsa_pkcs_only(void **state)
{
	/* Without CKM_SHA256_RSA_PKCS: DigestInfo + CKM_RSA_PKCS, same sello. */
	struct fixture *fx = *state;
	char *cadena = NULL, *b64 = NULL;
	size_t len = 0;
	uint8_t sig[512];
	size_t sig_len = sizeof(sig);
	struct pin_ctx pc = { PIN, 0, 0, 0 };

	shim_control(fx, "mechanisms=rsa_pkcs_only\n");
	/* Another kind of token in the slot: identities are read again
	 * after a slot event (fp11_tokens_changed). */
	fp11_tokens_changed(fx->ctx);
	struct fp11_identity *id = find(fx, "pkcs11:id=%0f");
	assert_false(id->mech_sha256_rsa_pkcs);
	assert_true(id->mech_rsa_pkcs);
	assert_int_equal(fm_read_file(CADENA, 1 << 20, &cadena, &len), 0);
	assert_int_equal(fp11_sign(fx->ctx, id, pin_cb, &pc, false, (const uint8_t *)cadena, len,
				   sig, &sig_len), 0);
	assert_int_equal(fm_base64_encode(sig, sig_len, &b64), 0);
	assert_string_equal(b64, kat_sello);
	free(b64);
	free(cadena);
	fp11_identities_free(id, 1);
	shim_control(fx, "\n");
	fp11_tokens_changed(fx->ctx);
}
#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_tokens),
		cmocka_unit_test(test_dedup_p11kit),
		cmocka_unit_test(test_identities),
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_sign),
		cmocka_unit_test(test_sign_errors),
		cmocka_unit_test(test_hidden_extractable_refused),
		cmocka_unit_test(test_known_answer),
		cmocka_unit_test(test_always_authenticate),
		cmocka_unit_test(test_hash_in_software),
		cmocka_unit_test(test_ckr_name),
		cmocka_unit_test(test_tool_cert_file),
	};
	int failed = cmocka_run_group_tests_name("softhsm2", tests, group_setup, group_teardown);
#ifdef P11SHIM_PATH
	const struct CMUnitTest shim_tests[] = {
		cmocka_unit_test(test_shim_pin_states),
		cmocka_unit_test(test_shim_removal),
		cmocka_unit_test(test_shim_sessions),
		cmocka_unit_test(test_shim_kept_login),
		cmocka_unit_test(test_shim_rsa_pkcs_only),
	};
	failed += cmocka_run_group_tests_name("p11shim", shim_tests, shim_setup, group_teardown);
#endif
	return failed;
}
