/*
 * The token room (include/firmante/token.h): PKCS#11 modules loaded through
 * p11-kit, tokens, identities (RSA private key + X.509 certificate) and
 * RSA PKCS#1 v1.5 SHA-256 signatures made on the token.
 *
 * Rules followed here (PKCS#11 v2.40 base specification):
 *  - tokens are found by manufacturer, model, serial and label, never by
 *    slot id (slot ids may change between calls, §5.5);
 *  - only public attributes are read: never CKA_VALUE or any private
 *    component of a private key;
 *  - C_GetAttributeValue is called one attribute at a time so that one
 *    sensitive or unknown attribute does not hide the others (§5.7);
 *  - a PIN is asked once per login and never re-sent by this code.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include "firmante/protocol.h"
#include "firmante/satcert.h"
#include "firmante/token.h"
#include "firmante/util.h"

#include "internal.h"

/* Caps. */
#define MAX_MODULES 64
#define MAX_SLOTS 256
#define MAX_OBJECTS 512       /* objects of one class on one token */
#define MAX_ATTR_LEN 65536    /* one attribute value (a certificate) */
#define MAX_MECHANISMS 1024
#define PIN_MAX 256
#define MAX_TOKEN_LOCKS 64    /* distinct tokens with their own signing lock */


#define MAX_KEY_HANDLES 16    /* key handles remembered per kept session */
#define ID_CACHE_LIST_AGE 5   /* seconds fp11_list_identities() trusts the cache */

/* A private key found on the kept session (handles are valid for the
 * session that found them while the object stays accessible, §5.7). */
struct key_handle {
	uint8_t id[64];
	size_t id_len;
	char label[128];     /* "" when the search was by CKA_ID only */
	CK_OBJECT_HANDLE h;
	bool always_auth;
};

/*
 * The signing lock of one token (by manufacturer, model, serial, label),
 * and the token's kept session. Everything below @m is guarded by @m,
 * except the drop_* members, guarded by the context's lock.
 */
struct token_lock {
	bool used;
	char manufacturer[33], model[17], serial[17], label[33];
	pthread_mutex_t m;
	struct module *mod;          /* where the token was last seen */
	CK_SLOT_ID slot;
	bool have_slot;
	CK_SESSION_HANDLE s;         /* kept session, CK_INVALID_HANDLE: none */
	bool mechs_known, sha256_rsa, rsa;
	unsigned long mechs_gen;     /* the identity cache generation they were read in */
	bool logged_in;              /* we logged in and have not logged out */
	char owner[FP11_OWNER_MAX];  /* whom the login belongs to */
	struct key_handle keys[MAX_KEY_HANDLES];
	size_t n_keys;
	bool drop_pending;           /* fp11_drop_login() while the token was busy */
	char drop_owner[FP11_OWNER_MAX];
	bool drop_any;
};

/* Identities read from the tokens, kept until a slot change or a miss. */
struct id_cache {
	struct fp11_identity *v;
	size_t n;
	struct token_ref *toks;      /* the tokens they were read from */
	size_t nt;
	bool valid;
	unsigned long gen;           /* bumped by every invalidation */
	struct timespec when;        /* CLOCK_MONOTONIC of the scan */
};

struct fp11_ctx {
	/* Guards the lock table and hash_in_software; never held across a
	 * PKCS#11 call, so a slow or hung token cannot block the others. */
	pthread_mutex_t lock;
	struct token_lock tok_locks[MAX_TOKEN_LOCKS];
	struct token_lock overflow;    /* tokens beyond MAX_TOKEN_LOCKS share it */
	CK_FUNCTION_LIST **registered; /* p11_kit_modules_load_and_initialize() */
	struct module *mods;
	size_t n_mods;
	bool hash_in_software; /* fp11_set_hash_in_software() */
	struct id_cache ids;   /* guarded by lock */
};


/* One object read from a token. */
struct p11obj {
	CK_OBJECT_HANDLE h;
	uint8_t *id;
	size_t id_len;
	char label[128];
	uint8_t *modulus, *exponent; /* public key components, may be NULL */
	size_t modulus_len, exponent_len;
	uint8_t *value; /* certificate DER */
	size_t value_len;
	bool sensitive, extractable, always_auth;
	bool used;
};

/* ------------------------------------------------------------------ */
/* Helpers */

/* Copy a blank-padded CK_UTF8CHAR field, dropping trailing padding. */
static void pad_copy(char *dst, size_t size, const CK_UTF8CHAR *src, size_t len)
{
	while (len > 0 && (src[len - 1] == ' ' || src[len - 1] == '\0'))
		len--;
	if (len >= size)
		len = size - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/* Blank-pad @s into a CK_UTF8CHAR field of @len bytes. */
static void pad_set(CK_UTF8CHAR *dst, size_t len, const char *s)
{
	size_t n = strlen(s);
	if (n > len)
		n = len;
	memset(dst, ' ', len);
	memcpy(dst, s, n);
}

static int map_rv(CK_RV rv)
{
	switch (rv) {
	case CKR_OK:
		return 0;
	case CKR_PIN_INCORRECT:
	case CKR_PIN_INVALID:
	case CKR_PIN_LEN_RANGE:
		return FIRMANTE_E_PIN_INCORRECT;
	case CKR_PIN_LOCKED:
		return FIRMANTE_E_PIN_LOCKED;
	case CKR_DEVICE_REMOVED:
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_TOKEN_NOT_RECOGNIZED:
	case CKR_SESSION_HANDLE_INVALID:
	case CKR_SESSION_CLOSED:
	case CKR_SLOT_ID_INVALID:
		return FIRMANTE_E_TOKEN_REMOVED;
	case CKR_HOST_MEMORY:
	case CKR_DEVICE_MEMORY:
		return FIRMANTE_E_NOMEM;
	case CKR_MECHANISM_INVALID:
	case CKR_MECHANISM_PARAM_INVALID:
	case CKR_KEY_TYPE_INCONSISTENT:
	case CKR_KEY_FUNCTION_NOT_PERMITTED:
	case CKR_KEY_SIZE_RANGE:
		return FIRMANTE_E_MECHANISM;
	case CKR_FUNCTION_CANCELED:
		return FIRMANTE_E_USER_DENIED;
	case CKR_KEY_HANDLE_INVALID:
		return FIRMANTE_E_KEY_NOT_FOUND;
	default:
		return FIRMANTE_E_TOKEN;
	}
}

static void fill_token_info(struct token_ref *t)
{
	struct fp11_token_info *i = &t->info;
	const CK_TOKEN_INFO *r = &t->raw;
	memset(i, 0, sizeof(*i));
	snprintf(i->module, sizeof(i->module), "%s", t->mod->name);
	i->slot_id = t->slot;
	pad_copy(i->label, sizeof(i->label), r->label, sizeof(r->label));
	pad_copy(i->manufacturer, sizeof(i->manufacturer), r->manufacturerID, sizeof(r->manufacturerID));
	pad_copy(i->model, sizeof(i->model), r->model, sizeof(r->model));
	pad_copy(i->serial, sizeof(i->serial), r->serialNumber, sizeof(r->serialNumber));
	i->flags = r->flags;
	i->login_required = (r->flags & CKF_LOGIN_REQUIRED) != 0;
	i->protected_auth_path = (r->flags & CKF_PROTECTED_AUTHENTICATION_PATH) != 0;
	i->user_pin_initialized = (r->flags & CKF_USER_PIN_INITIALIZED) != 0;
	i->user_pin_count_low = (r->flags & CKF_USER_PIN_COUNT_LOW) != 0;
	i->user_pin_final_try = (r->flags & CKF_USER_PIN_FINAL_TRY) != 0;
	i->user_pin_locked = (r->flags & CKF_USER_PIN_LOCKED) != 0;
}

/* A CK_TOKEN_INFO with the identifying fields of @i, for URI matching. */
static void raw_from_info(const struct fp11_token_info *i, CK_TOKEN_INFO *r)
{
	memset(r, 0, sizeof(*r));
	pad_set(r->label, sizeof(r->label), i->label);
	pad_set(r->manufacturerID, sizeof(r->manufacturerID), i->manufacturer);
	pad_set(r->model, sizeof(r->model), i->model);
	pad_set(r->serialNumber, sizeof(r->serialNumber), i->serial);
	r->flags = i->flags;
}

static bool same_token(const struct fp11_token_info *a, const struct fp11_token_info *b)
{
	return strcmp(a->manufacturer, b->manufacturer) == 0 && strcmp(a->model, b->model) == 0 &&
	       strcmp(a->serial, b->serial) == 0 && strcmp(a->label, b->label) == 0;
}

static int token_uri(const CK_TOKEN_INFO *raw, char *buf, size_t size)
{
	int rc = FIRMANTE_E_NOMEM;
	char *s = NULL;
	P11KitUri *u = p11_kit_uri_new();
	if (!u)
		return FIRMANTE_E_NOMEM;
	CK_TOKEN_INFO *ti = p11_kit_uri_get_token_info(u);
	memcpy(ti, raw, sizeof(*ti));
	if (p11_kit_uri_format(u, P11_KIT_URI_FOR_TOKEN, &s) != P11_KIT_URI_OK)
		goto out;
	if (strlen(s) >= size) {
		rc = FIRMANTE_E_TOKEN;
		goto out;
	}
	snprintf(buf, size, "%s", s);
	rc = 0;
out:
	free(s);
	p11_kit_uri_free(u);
	return rc;
}

static void id_cache_check_tokens(fp11_ctx *ctx, const struct token_ref *toks, size_t nt);

/* ------------------------------------------------------------------ */
/* Modules */

static void ctx_free_modules(fp11_ctx *ctx)
{
	for (size_t i = 0; ctx->mods && i < ctx->n_mods; i++) {
		if (ctx->mods[i].from_path) {
			p11_kit_module_finalize(ctx->mods[i].funcs);
			p11_kit_module_release(ctx->mods[i].funcs);
		}
	}
	if (ctx->registered)
		p11_kit_modules_finalize_and_release(ctx->registered);
	ctx->registered = NULL;
	free(ctx->mods);
	ctx->mods = NULL;
	ctx->n_mods = 0;
}

int fp11_open(const struct fp11_config *cfg, fp11_ctx **out)
{
	int rc = FIRMANTE_E_NOMEM;
	fp11_ctx *ctx = NULL;
	size_t n_reg = 0;

	if (!cfg || !out || (cfg->n_module_paths && !cfg->module_paths) ||
	    cfg->n_module_paths > MAX_MODULES)
		return FIRMANTE_E_CONFIG;
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return FIRMANTE_E_NOMEM;
	if (pthread_mutex_init(&ctx->lock, NULL) != 0) {
		free(ctx);
		return FIRMANTE_E_INTERNAL;
	}
	if (pthread_mutex_init(&ctx->overflow.m, NULL) != 0) {
		pthread_mutex_destroy(&ctx->lock);
		free(ctx);
		return FIRMANTE_E_INTERNAL;
	}
	if (cfg->use_p11kit_registered) {
		ctx->registered = p11_kit_modules_load_and_initialize(0);
		if (!ctx->registered) {
			rc = FIRMANTE_E_CONFIG;
			goto out;
		}
		while (ctx->registered[n_reg] && n_reg < MAX_MODULES)
			n_reg++;
	}
	ctx->mods = calloc(cfg->n_module_paths + n_reg + 1, sizeof(*ctx->mods));
	if (!ctx->mods)
		goto out;
	/* Configured paths first: their names are the ones reported. */
	for (size_t i = 0; i < cfg->n_module_paths; i++) {
		const char *path = cfg->module_paths[i];
		if (!path || path[0] != '/') {
			rc = FIRMANTE_E_CONFIG;
			goto out;
		}
		CK_FUNCTION_LIST *f = p11_kit_module_load(path, 0);
		if (!f) {
			rc = FIRMANTE_E_CONFIG;
			goto out;
		}
		CK_RV rv = p11_kit_module_initialize(f);
		if (rv != CKR_OK) {
			p11_kit_module_release(f);
			rc = FIRMANTE_E_CONFIG;
			goto out;
		}
		struct module *m = &ctx->mods[ctx->n_mods++];
		m->funcs = f;
		m->from_path = true;
		snprintf(m->name, sizeof(m->name), "%s", path);
	}
	for (size_t i = 0; i < n_reg; i++) {
		struct module *m = &ctx->mods[ctx->n_mods++];
		m->funcs = ctx->registered[i];
		char *name = p11_kit_module_get_name(m->funcs);
		if (!name)
			name = p11_kit_module_get_filename(m->funcs);
		snprintf(m->name, sizeof(m->name), "%s", name ? name : "p11-kit");
		free(name);
	}
	*out = ctx;
	ctx = NULL;
	rc = 0;
out:
	if (ctx) {
		ctx_free_modules(ctx);
		pthread_mutex_destroy(&ctx->overflow.m);
		pthread_mutex_destroy(&ctx->lock);
		free(ctx);
	}
	return rc;
}

void fp11_close(fp11_ctx *ctx)
{
	if (!ctx)
		return;
	pthread_mutex_lock(&ctx->lock);
	/* Kept sessions: log out (nothing stays logged in after us) and close. */
	for (size_t i = 0; i < MAX_TOKEN_LOCKS; i++) {
		struct token_lock *l = &ctx->tok_locks[i];

		if (!l->used || l->s == CK_INVALID_HANDLE || !l->mod)
			continue;
		if (l->logged_in)
			l->mod->funcs->C_Logout(l->s);
		l->mod->funcs->C_CloseSession(l->s);
		l->s = CK_INVALID_HANDLE;
	}
	ctx_free_modules(ctx);
	for (size_t i = 0; i < MAX_TOKEN_LOCKS; i++)
		if (ctx->tok_locks[i].used)
			pthread_mutex_destroy(&ctx->tok_locks[i].m);
	fp11_identities_free(ctx->ids.v, ctx->ids.n);
	free(ctx->ids.toks);
	pthread_mutex_unlock(&ctx->lock);
	pthread_mutex_destroy(&ctx->overflow.m);
	pthread_mutex_destroy(&ctx->lock);
	free(ctx);
}

int fp11_list_modules(fp11_ctx *ctx, struct fp11_module_info **out, size_t *n)
{
	struct fp11_module_info *mi = NULL;

	if (!ctx || !out || !n)
		return FIRMANTE_E_INTERNAL;
	mi = calloc(ctx->n_mods + 1, sizeof(*mi));
	if (!mi)
		return FIRMANTE_E_NOMEM;
	for (size_t i = 0; i < ctx->n_mods; i++) {
		CK_INFO info;

		snprintf(mi[i].name, sizeof(mi[i].name), "%s", ctx->mods[i].name);
		mi[i].from_path = ctx->mods[i].from_path;
		memset(&info, 0, sizeof(info));
		if (ctx->mods[i].funcs->C_GetInfo(&info) == CKR_OK) {
			size_t len = sizeof(info.libraryDescription);

			while (len > 0 && (info.libraryDescription[len - 1] == ' ' ||
					   info.libraryDescription[len - 1] == '\0'))
				len--;
			memcpy(mi[i].description, info.libraryDescription, len);
			mi[i].description[len] = '\0';
		}
	}
	*out = mi;
	*n = ctx->n_mods;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Tokens */

/*
 * Every initialised token present in any slot of any module, duplicates
 * (the same token seen through two modules) removed. No lock is held.
 */
static int enum_tokens(fp11_ctx *ctx, struct token_ref **out, size_t *n_out)
{
	int rc = FIRMANTE_E_NOMEM;
	struct token_ref *toks = NULL;
	size_t n = 0, cap = 0;
	CK_SLOT_ID *slots = NULL;

	for (size_t m = 0; m < ctx->n_mods; m++) {
		CK_FUNCTION_LIST *f = ctx->mods[m].funcs;
		CK_ULONG ns = 0;
		CK_RV rv;
		free(slots);
		slots = NULL;
		/* The slot count may change between the two calls (hot-plug). */
		for (int tries = 0; tries < 4; tries++) {
			rv = f->C_GetSlotList(CK_TRUE, NULL, &ns);
			if (rv != CKR_OK || ns == 0)
				break;
			if (ns > MAX_SLOTS)
				ns = MAX_SLOTS;
			free(slots);
			slots = calloc(ns, sizeof(*slots));
			if (!slots)
				goto out;
			rv = f->C_GetSlotList(CK_TRUE, slots, &ns);
			if (rv != CKR_BUFFER_TOO_SMALL)
				break;
		}
		if (rv != CKR_OK)
			continue; /* one broken module does not hide the others */
		for (CK_ULONG s = 0; s < ns && slots; s++) {
			struct token_ref t;
			memset(&t, 0, sizeof(t));
			t.mod = &ctx->mods[m];
			t.slot = slots[s];
			if (f->C_GetTokenInfo(slots[s], &t.raw) != CKR_OK)
				continue;
			if (!(t.raw.flags & CKF_TOKEN_INITIALIZED))
				continue;
			fill_token_info(&t);
			bool dup = false;
			for (size_t k = 0; k < n && !dup; k++)
				dup = same_token(&toks[k].info, &t.info);
			if (dup)
				continue;
			if (token_uri(&t.raw, t.info.uri, sizeof(t.info.uri)) != 0)
				t.info.uri[0] = '\0';
			if (n == cap) {
				size_t ncap = cap ? cap * 2 : 8;
				struct token_ref *nt = realloc(toks, ncap * sizeof(*toks));
				if (!nt)
					goto out;
				toks = nt;
				cap = ncap;
			}
			toks[n++] = t;
		}
	}
	*out = toks;
	*n_out = n;
	toks = NULL;
	rc = 0;
out:
	free(slots);
	free(toks);
	return rc;
}

int fp11_list_tokens(fp11_ctx *ctx, struct fp11_token_info **out, size_t *n)
{
	struct token_ref *toks = NULL;
	size_t nt = 0;
	int rc;

	if (!ctx || !out || !n)
		return FIRMANTE_E_BAD_REQUEST;
	rc = enum_tokens(ctx, &toks, &nt);
	if (rc != 0)
		return rc;
	id_cache_check_tokens(ctx, toks, nt);
	struct fp11_token_info *arr = calloc(nt ? nt : 1, sizeof(*arr));
	if (!arr) {
		free(toks);
		return FIRMANTE_E_NOMEM;
	}
	for (size_t i = 0; i < nt; i++)
		arr[i] = toks[i].info;
	free(toks);
	*out = arr;
	*n = nt;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Objects and attributes */

/*
 * One attribute value, malloc'd. Returns 0 and sets *val (NULL when the
 * attribute is absent, sensitive or empty), or FIRMANTE_E_NOMEM /
 * FIRMANTE_E_TOKEN_REMOVED.
 */
static int get_attr(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
		    CK_ATTRIBUTE_TYPE type, uint8_t **val, size_t *len)
{
	CK_ATTRIBUTE a = { type, NULL, 0 };
	*val = NULL;
	*len = 0;
	CK_RV rv = f->C_GetAttributeValue(s, o, &a, 1);
	if (rv != CKR_OK) {
		int e = map_rv(rv);
		return e == FIRMANTE_E_TOKEN_REMOVED || e == FIRMANTE_E_NOMEM ? e : 0;
	}
	if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen == 0 ||
	    a.ulValueLen > MAX_ATTR_LEN)
		return 0;
	uint8_t *buf = malloc(a.ulValueLen);
	if (!buf)
		return FIRMANTE_E_NOMEM;
	a.pValue = buf;
	rv = f->C_GetAttributeValue(s, o, &a, 1);
	if (rv != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen == 0) {
		free(buf);
		int e = map_rv(rv);
		return e == FIRMANTE_E_TOKEN_REMOVED || e == FIRMANTE_E_NOMEM ? e : 0;
	}
	*val = buf;
	*len = a.ulValueLen;
	return 0;
}

/* A CK_BBOOL attribute; @dflt when absent or unreadable. */
static bool get_bool(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
		     CK_ATTRIBUTE_TYPE type, bool dflt)
{
	CK_BBOOL b = CK_FALSE;
	CK_ATTRIBUTE a = { type, &b, sizeof(b) };
	if (f->C_GetAttributeValue(s, o, &a, 1) != CKR_OK || a.ulValueLen != sizeof(b))
		return dflt;
	return b == CK_TRUE;
}

static void obj_clear(struct p11obj *o)
{
	free(o->id);
	free(o->modulus);
	free(o->exponent);
	free(o->value);
	memset(o, 0, sizeof(*o));
}

static void objs_free(struct p11obj *objs, size_t n)
{
	for (size_t i = 0; objs && i < n; i++)
		obj_clear(&objs[i]);
	free(objs);
}

enum obj_kind { OBJ_PRIVATE, OBJ_PUBLIC, OBJ_CERT };

/*
 * Objects matching @tmpl (at most MAX_OBJECTS) and their public attributes
 * for @kind. Never reads a private key's secret components.
 */
static int find_objects(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl,
			CK_ULONG n_tmpl, enum obj_kind kind, struct p11obj **out, size_t *n_out)
{
	int rc = FIRMANTE_E_NOMEM;
	CK_OBJECT_HANDLE *hs = NULL;
	struct p11obj *objs = NULL;
	CK_ULONG nh = 0;

	hs = calloc(MAX_OBJECTS, sizeof(*hs));
	if (!hs)
		return FIRMANTE_E_NOMEM;
	CK_RV rv = f->C_FindObjectsInit(s, tmpl, n_tmpl);
	if (rv != CKR_OK) {
		rc = map_rv(rv);
		goto out;
	}
	while (nh < MAX_OBJECTS) {
		CK_ULONG got = 0;
		rv = f->C_FindObjects(s, hs + nh, MAX_OBJECTS - nh, &got);
		if (rv != CKR_OK || got == 0)
			break;
		nh += got;
	}
	f->C_FindObjectsFinal(s);
	if (rv != CKR_OK) {
		rc = map_rv(rv);
		goto out;
	}
	objs = calloc(nh ? nh : 1, sizeof(*objs));
	if (!objs)
		goto out;
	for (CK_ULONG i = 0; i < nh; i++) {
		struct p11obj *o = &objs[i];
		uint8_t *label = NULL;
		size_t label_len = 0;
		o->h = hs[i];
		rc = get_attr(f, s, o->h, CKA_ID, &o->id, &o->id_len);
		if (rc == 0)
			rc = get_attr(f, s, o->h, CKA_LABEL, &label, &label_len);
		if (rc != 0)
			goto out;
		if (label) {
			pad_copy(o->label, sizeof(o->label), label, label_len);
			free(label);
		}
		if (kind == OBJ_PRIVATE || kind == OBJ_PUBLIC) {
			/* Public components only (CKA_MODULUS, CKA_PUBLIC_EXPONENT). */
			rc = get_attr(f, s, o->h, CKA_MODULUS, &o->modulus, &o->modulus_len);
			if (rc == 0)
				rc = get_attr(f, s, o->h, CKA_PUBLIC_EXPONENT, &o->exponent,
					      &o->exponent_len);
			if (rc != 0)
				goto out;
		}
		if (kind == OBJ_PRIVATE) {
			o->sensitive = get_bool(f, s, o->h, CKA_SENSITIVE, false);
			o->extractable = get_bool(f, s, o->h, CKA_EXTRACTABLE, false);
			o->always_auth = get_bool(f, s, o->h, CKA_ALWAYS_AUTHENTICATE, false);
		}
		if (kind == OBJ_CERT) {
			rc = get_attr(f, s, o->h, CKA_VALUE, &o->value, &o->value_len);
			if (rc != 0)
				goto out;
		}
	}
	*out = objs;
	*n_out = nh;
	objs = NULL;
	rc = 0;
out:
	objs_free(objs, nh);
	free(hs);
	return rc;
}

/* Is the RSA public key of certificate @der equal to (@n, @e)? */
static bool cert_key_matches(const uint8_t *der, size_t len, const uint8_t *n, size_t n_len,
			     const uint8_t *e, size_t e_len)
{
	bool match = false;
	BIGNUM *cn = NULL, *ce = NULL, *kn = NULL, *ke = NULL;
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)len);
	if (!x || !n || !e)
		goto out;
	EVP_PKEY *pk = X509_get0_pubkey(x);
	if (!pk || EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA)
		goto out;
	if (!EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &cn) ||
	    !EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &ce))
		goto out;
	kn = BN_bin2bn(n, (int)n_len, NULL);
	ke = BN_bin2bn(e, (int)e_len, NULL);
	match = kn && ke && BN_cmp(cn, kn) == 0 && BN_cmp(ce, ke) == 0;
out:
	BN_free(cn);
	BN_free(ce);
	BN_free(kn);
	BN_free(ke);
	X509_free(x);
	return match;
}

static bool same_id(const struct p11obj *a, const struct p11obj *b)
{
	return a->id_len > 0 && a->id_len == b->id_len && memcmp(a->id, b->id, a->id_len) == 0;
}

/* Is @der a CA certificate (basicConstraints cA)? Unreadable counts as not. */
static bool cert_is_ca(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)len);
	if (!x)
		return false;
	bool ca = X509_check_ca(x) != 0;
	X509_free(x);
	return ca;
}

static int key_uri(const struct token_ref *t, const uint8_t *id, size_t id_len,
		   const char *label, char *buf, size_t size)
{
	int rc = FIRMANTE_E_NOMEM;
	char *s = NULL;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	P11KitUri *u = p11_kit_uri_new();
	if (!u)
		return FIRMANTE_E_NOMEM;
	memcpy(p11_kit_uri_get_token_info(u), &t->raw, sizeof(t->raw));
	CK_ATTRIBUTE a_class = { CKA_CLASS, &cls, sizeof(cls) };
	CK_ATTRIBUTE a_id = { CKA_ID, (void *)id, id_len };
	CK_ATTRIBUTE a_label = { CKA_LABEL, (void *)label, label ? strlen(label) : 0 };
	if (p11_kit_uri_set_attribute(u, &a_class) != P11_KIT_URI_OK)
		goto out;
	if (id_len && p11_kit_uri_set_attribute(u, &a_id) != P11_KIT_URI_OK)
		goto out;
	if (label && label[0] && p11_kit_uri_set_attribute(u, &a_label) != P11_KIT_URI_OK)
		goto out;
	if (p11_kit_uri_format(u, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, &s) != P11_KIT_URI_OK)
		goto out;
	if (strlen(s) >= size) {
		rc = FIRMANTE_E_TOKEN;
		goto out;
	}
	snprintf(buf, size, "%s", s);
	rc = 0;
out:
	free(s);
	p11_kit_uri_free(u);
	return rc;
}

/* Which RSA signing mechanisms the token offers (CKF_SIGN). */
static void token_mechs(const struct token_ref *t, bool *sha256_rsa, bool *rsa)
{
	CK_FUNCTION_LIST *f = t->mod->funcs;
	CK_MECHANISM_INFO mi;
	*sha256_rsa = false;
	*rsa = false;
	CK_ULONG n = 0;
	if (f->C_GetMechanismList(t->slot, NULL, &n) != CKR_OK || n == 0 || n > MAX_MECHANISMS)
		return;
	CK_MECHANISM_TYPE *list = calloc(n, sizeof(*list));
	if (!list)
		return;
	if (f->C_GetMechanismList(t->slot, list, &n) == CKR_OK) {
		for (CK_ULONG i = 0; i < n; i++) {
			if (list[i] != CKM_SHA256_RSA_PKCS && list[i] != CKM_RSA_PKCS)
				continue;
			if (f->C_GetMechanismInfo(t->slot, list[i], &mi) != CKR_OK ||
			    !(mi.flags & CKF_SIGN))
				continue;
			if (list[i] == CKM_SHA256_RSA_PKCS)
				*sha256_rsa = true;
			else
				*rsa = true;
		}
	}
	free(list);
}

struct id_list {
	struct fp11_identity *v;
	size_t n, cap;
};

static int id_push(struct id_list *l, struct fp11_identity **slot)
{
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 8;
		struct fp11_identity *nv = realloc(l->v, ncap * sizeof(*nv));
		if (!nv)
			return FIRMANTE_E_NOMEM;
		l->v = nv;
		l->cap = ncap;
	}
	*slot = &l->v[l->n++];
	memset(*slot, 0, sizeof(**slot));
	return 0;
}

/* Fill an identity from token @t, key @k (may be NULL: key not visible) and cert @c. */
static int make_identity(struct id_list *l, const struct token_ref *t, const struct p11obj *k,
			 const struct p11obj *c, bool sha256_rsa, bool rsa)
{
	struct fp11_identity *id;
	const struct p11obj *idsrc = k ? k : c;
	if (idsrc->id_len > sizeof(id->id))
		return 0; /* unusual ids do not fit: skip */
	int rc = id_push(l, &id);
	if (rc != 0)
		return rc;
	id->token = t->info;
	memcpy(id->id, idsrc->id, idsrc->id_len);
	id->id_len = idsrc->id_len;
	snprintf(id->key_label, sizeof(id->key_label), "%s", k ? k->label : c->label);
	id->key_visible = k != NULL;
	if (k) {
		id->sensitive = k->sensitive;
		id->extractable = k->extractable;
		id->always_authenticate = k->always_auth;
	}
	id->mech_sha256_rsa_pkcs = sha256_rsa;
	id->mech_rsa_pkcs = rsa;
	id->cert_der = malloc(c->value_len);
	if (!id->cert_der) {
		l->n--;
		return FIRMANTE_E_NOMEM;
	}
	memcpy(id->cert_der, c->value, c->value_len);
	id->cert_len = c->value_len;
	id->cert_err = fm_satcert_parse_der(id->cert_der, id->cert_len, &id->cert);
	rc = key_uri(t, id->id, id->id_len, k ? id->key_label : NULL, id->uri, sizeof(id->uri));
	if (rc != 0) {
		free(id->cert_der);
		l->n--;
		return rc;
	}
	return 0;
}

/* Identities of one token, appended to @l; FIRMANTE_E_TOKEN_REMOVED when
 * the token or its session went away. */
static int token_identities_once(const struct token_ref *t, struct id_list *l)
{
	CK_FUNCTION_LIST *f = t->mod->funcs;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	struct p11obj *keys = NULL, *certs = NULL, *pubs = NULL;
	size_t nk = 0, nc = 0, np = 0;
	CK_OBJECT_CLASS c_priv = CKO_PRIVATE_KEY, c_pub = CKO_PUBLIC_KEY, c_cert = CKO_CERTIFICATE;
	CK_KEY_TYPE k_rsa = CKK_RSA;
	CK_CERTIFICATE_TYPE x509 = CKC_X_509;
	CK_SESSION_INFO si;
	int rc;

	CK_RV rv = f->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
	if (rv != CKR_OK)
		return map_rv(rv);
	/* Another thread may log in or out while we search (the login state is
	 * the application's, PKCS#11 v2.40 §5.6): only a state that held from
	 * before the key search to after it tells that every key was visible. */
	bool logged_in_before = f->C_GetSessionInfo(s, &si) == CKR_OK &&
				(si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS);
	CK_ATTRIBUTE t_priv[] = { { CKA_CLASS, &c_priv, sizeof(c_priv) },
				  { CKA_KEY_TYPE, &k_rsa, sizeof(k_rsa) } };
	CK_ATTRIBUTE t_pub[] = { { CKA_CLASS, &c_pub, sizeof(c_pub) },
				 { CKA_KEY_TYPE, &k_rsa, sizeof(k_rsa) } };
	CK_ATTRIBUTE t_cert[] = { { CKA_CLASS, &c_cert, sizeof(c_cert) },
				  { CKA_CERTIFICATE_TYPE, &x509, sizeof(x509) } };
	rc = find_objects(f, s, t_priv, 2, OBJ_PRIVATE, &keys, &nk);
	if (rc == 0)
		rc = find_objects(f, s, t_cert, 2, OBJ_CERT, &certs, &nc);
	if (rc == 0)
		rc = find_objects(f, s, t_pub, 2, OBJ_PUBLIC, &pubs, &np);
	if (rc != 0)
		goto out;
	bool logged_in = logged_in_before && f->C_GetSessionInfo(s, &si) == CKR_OK &&
			 (si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS);

	bool sha256_rsa, rsa;
	token_mechs(t, &sha256_rsa, &rsa);

	for (size_t i = 0; i < nk; i++) {
		struct p11obj *k = &keys[i];
		const uint8_t *kn = k->modulus, *ke = k->exponent;
		size_t kn_len = k->modulus_len, ke_len = k->exponent_len;
		if (!kn || !ke) {
			/* The private key hides its public part: use the public key object. */
			for (size_t j = 0; j < np; j++) {
				if (same_id(&pubs[j], k) && pubs[j].modulus && pubs[j].exponent) {
					kn = pubs[j].modulus;
					kn_len = pubs[j].modulus_len;
					ke = pubs[j].exponent;
					ke_len = pubs[j].exponent_len;
					break;
				}
			}
		}
		struct p11obj *cert = NULL;
		/* 1. By CKA_ID, checked against the public key when it is known. */
		for (size_t j = 0; j < nc && !cert; j++) {
			if (!certs[j].value || !same_id(&certs[j], k))
				continue;
			if (kn && ke && !cert_key_matches(certs[j].value, certs[j].value_len, kn, kn_len,
							  ke, ke_len))
				continue;
			cert = &certs[j];
		}
		/* 2. By public key. */
		for (size_t j = 0; j < nc && !cert && kn && ke; j++) {
			if (certs[j].value && cert_key_matches(certs[j].value, certs[j].value_len, kn,
							       kn_len, ke, ke_len))
				cert = &certs[j];
		}
		if (!cert)
			continue;
		cert->used = true;
		rc = make_identity(l, t, k, cert, sha256_rsa, rsa);
		if (rc != 0)
			goto out;
	}

	/*
	 * Private keys may be invisible until login (CKA_PRIVATE, §4.4). Then
	 * list end-entity certificates that have no visible key: the key is
	 * looked up by CKA_ID after login, in fp11_sign().
	 */
	if (t->info.login_required && !logged_in) {
		for (size_t j = 0; j < nc; j++) {
			struct p11obj *c = &certs[j];
			if (c->used || !c->value || c->id_len == 0 ||
			    cert_is_ca(c->value, c->value_len))
				continue;
			bool key_seen = false;
			for (size_t i = 0; i < nk && !key_seen; i++)
				key_seen = same_id(&keys[i], c);
			if (key_seen)
				continue;
			rc = make_identity(l, t, NULL, c, sha256_rsa, rsa);
			if (rc != 0)
				goto out;
		}
	}
	rc = 0;
out:
	objs_free(keys, nk);
	objs_free(certs, nc);
	objs_free(pubs, np);
	f->C_CloseSession(s);
	return rc;
}

static struct token_lock *token_lock(fp11_ctx *ctx, const struct fp11_token_info *tok);

/* How long a scan waits for a token's signing lock (seconds) before it
 * reads the token without it. */
#define SCAN_LOCK_WAIT 2

/*
 * Identities of one token, appended to @l. A lost session is retried once
 * with a new one; a token that went away is simply not listed.
 * The scan holds the token's signing lock, so no login or logout of ours
 * (the login state is the application's, PKCS#11 v2.40 §5.6) happens while
 * it reads objects and attributes. When the lock is busy for longer than
 * SCAN_LOCK_WAIT (a PIN dialog, a slow or hung token) the token is read
 * without it and *@consistent is cleared: the result is answered but not
 * cached.
 */
static int token_identities(fp11_ctx *ctx, const struct token_ref *t, struct id_list *l,
			    bool *consistent)
{
	struct token_lock *tl = token_lock(ctx, &t->info);
	struct timespec until;
	bool locked;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += SCAN_LOCK_WAIT;
	locked = pthread_mutex_timedlock(&tl->m, &until) == 0;
	if (!locked)
		*consistent = false;
	for (int attempt = 0; attempt < 2; attempt++) {
		size_t before = l->n;
		rc = token_identities_once(t, l);
		if (rc != FIRMANTE_E_TOKEN_REMOVED)
			goto out;
		while (l->n > before)
			free(l->v[--l->n].cert_der);
	}
	rc = 0;
out:
	if (locked)
		pthread_mutex_unlock(&tl->m);
	return rc;
}

void fp11_identities_free(struct fp11_identity *ids, size_t n)
{
	if (!ids)
		return;
	for (size_t i = 0; i < n; i++)
		free(ids[i].cert_der);
	free(ids);
}

/* Every identity of every present token, and the tokens they were read
 * from (@toks, may be NULL). Each token is read under its signing lock
 * when it can be had (token_identities; *@consistent cleared when not);
 * ctx->lock is never held here. */
static int scan_identities(fp11_ctx *ctx, struct fp11_identity **out, size_t *n,
			   struct token_ref **toks_out, size_t *nt_out, bool *consistent)
{
	struct token_ref *toks = NULL;
	size_t nt = 0;
	struct id_list l = { NULL, 0, 0 };
	int rc = enum_tokens(ctx, &toks, &nt);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < nt; i++) {
		rc = token_identities(ctx, &toks[i], &l, consistent);
		if (rc != 0)
			goto out;
	}
	if (!l.v) {
		l.v = calloc(1, sizeof(*l.v));
		if (!l.v) {
			rc = FIRMANTE_E_NOMEM;
			goto out;
		}
	}
	*out = l.v;
	*n = l.n;
	l.v = NULL;
	l.n = 0;
	if (toks_out) {
		*toks_out = toks;
		*nt_out = nt;
		toks = NULL;
	}
	rc = 0;
out:
	fp11_identities_free(l.v, l.n);
	free(toks);
	return rc;
}

/* A deep copy of @n identities (certificate DER included). */
static int ids_copy(const struct fp11_identity *src, size_t n, struct fp11_identity **out)
{
	struct fp11_identity *v = calloc(n ? n : 1, sizeof(*v));

	if (!v)
		return FIRMANTE_E_NOMEM;
	for (size_t i = 0; i < n; i++) {
		v[i] = src[i];
		v[i].cert_der = NULL;
		if (src[i].cert_der && src[i].cert_len) {
			v[i].cert_der = malloc(src[i].cert_len);
			if (!v[i].cert_der) {
				fp11_identities_free(v, i);
				return FIRMANTE_E_NOMEM;
			}
			memcpy(v[i].cert_der, src[i].cert_der, src[i].cert_len);
		}
	}
	*out = v;
	return 0;
}

/* Caller holds ctx->lock. */
static void id_cache_drop(fp11_ctx *ctx)
{
	fp11_identities_free(ctx->ids.v, ctx->ids.n);
	free(ctx->ids.toks);
	ctx->ids.v = NULL;
	ctx->ids.toks = NULL;
	ctx->ids.n = ctx->ids.nt = 0;
	ctx->ids.valid = false;
	ctx->ids.gen++;
}

/*
 * Scan the tokens and keep the result as the identity cache (unless the
 * cache was invalidated during the scan: then the result is used once but
 * not kept). On success *@out is a copy for the caller.
 */
static int id_cache_refresh(fp11_ctx *ctx, struct fp11_identity **out, size_t *n)
{
	struct fp11_identity *v = NULL;
	struct token_ref *toks = NULL;
	size_t nv = 0, nt = 0;
	unsigned long gen;
	int rc;

	pthread_mutex_lock(&ctx->lock);
	gen = ctx->ids.gen;
	pthread_mutex_unlock(&ctx->lock);
	bool consistent = true;
	rc = scan_identities(ctx, &v, &nv, &toks, &nt, &consistent);
	if (rc != 0)
		return rc;
	rc = ids_copy(v, nv, out);
	if (rc != 0) {
		fp11_identities_free(v, nv);
		free(toks);
		return rc;
	}
	*n = nv;
	pthread_mutex_lock(&ctx->lock);
	/* A scan made while a token's signing lock was busy is answered but
	 * not kept (token_identities). */
	if (ctx->ids.gen == gen && consistent) {
		fp11_identities_free(ctx->ids.v, ctx->ids.n);
		free(ctx->ids.toks);
		ctx->ids.v = v;
		ctx->ids.n = nv;
		ctx->ids.toks = toks;
		ctx->ids.nt = nt;
		ctx->ids.valid = true;
		clock_gettime(CLOCK_MONOTONIC, &ctx->ids.when);
		v = NULL;
		toks = NULL;
	}
	pthread_mutex_unlock(&ctx->lock);
	fp11_identities_free(v, nv);
	free(toks);
	return 0;
}

/* A copy of the cache when it is valid (and, with @max_age > 0, younger
 * than @max_age seconds). Returns 0, 1 (no usable cache), FIRMANTE_E_NOMEM. */
static int id_cache_get(fp11_ctx *ctx, long max_age, struct fp11_identity **out, size_t *n)
{
	int rc = 1;

	pthread_mutex_lock(&ctx->lock);
	if (ctx->ids.valid) {
		struct timespec now;

		clock_gettime(CLOCK_MONOTONIC, &now);
		if (max_age <= 0 || now.tv_sec - ctx->ids.when.tv_sec < max_age) {
			rc = ids_copy(ctx->ids.v, ctx->ids.n, out);
			if (rc == 0)
				*n = ctx->ids.n;
		}
	}
	pthread_mutex_unlock(&ctx->lock);
	return rc;
}

/* The tokens listed now differ from those the cache was read from (a
 * token left or arrived, or came back under another slot id). */
static void id_cache_check_tokens(fp11_ctx *ctx, const struct token_ref *toks, size_t nt)
{
	pthread_mutex_lock(&ctx->lock);
	if (ctx->ids.valid) {
		bool same = ctx->ids.nt == nt;

		for (size_t i = 0; i < nt && same; i++)
			same = ctx->ids.toks[i].mod == toks[i].mod &&
			       ctx->ids.toks[i].slot == toks[i].slot &&
			       same_token(&ctx->ids.toks[i].info, &toks[i].info);
		if (!same)
			id_cache_drop(ctx);
	}
	pthread_mutex_unlock(&ctx->lock);
}

void fp11_tokens_changed(fp11_ctx *ctx)
{
	if (!ctx)
		return;
	pthread_mutex_lock(&ctx->lock);
	id_cache_drop(ctx);
	pthread_mutex_unlock(&ctx->lock);
}

int fp11_list_identities(fp11_ctx *ctx, struct fp11_identity **out, size_t *n)
{
	int rc;

	if (!ctx || !out || !n)
		return FIRMANTE_E_BAD_REQUEST;
	rc = id_cache_get(ctx, ID_CACHE_LIST_AGE, out, n);
	if (rc <= 0)
		return rc;
	return id_cache_refresh(ctx, out, n);
}

/* The identities of @ids matching @u: how many, and the last one's index. */
static size_t uri_matches(P11KitUri *u, const struct fp11_identity *ids, size_t n, size_t *which)
{
	size_t found = 0;

	for (size_t i = 0; i < n; i++) {
		CK_TOKEN_INFO raw;
		CK_OBJECT_CLASS priv = CKO_PRIVATE_KEY;
		raw_from_info(&ids[i].token, &raw);
		if (!p11_kit_uri_match_token_info(u, &raw))
			continue;
		CK_ATTRIBUTE attrs[] = {
			{ CKA_CLASS, &priv, sizeof(priv) },
			{ CKA_ID, (void *)ids[i].id, ids[i].id_len },
			{ CKA_LABEL, (void *)ids[i].key_label, strlen(ids[i].key_label) },
		};
		if (!p11_kit_uri_match_attributes(u, attrs, 3))
			continue;
		found++;
		*which = i;
	}
	return found;
}

int fp11_find_identity(fp11_ctx *ctx, const char *uri, struct fp11_identity **out)
{
	int rc;
	P11KitUri *u = NULL;
	struct fp11_identity *ids = NULL, *one = NULL;
	size_t n = 0, found = 0, which = 0;

	if (!ctx || !uri || !out)
		return FIRMANTE_E_BAD_REQUEST;
	u = p11_kit_uri_new();
	if (!u)
		return FIRMANTE_E_NOMEM;
	if (p11_kit_uri_parse(uri, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, u) != P11_KIT_URI_OK) {
		rc = FIRMANTE_E_BAD_REQUEST;
		goto out;
	}
	/* Unknown path attributes: RFC 7512 §2.3 says such a URI matches nothing. */
	if (p11_kit_uri_any_unrecognized(u)) {
		rc = FIRMANTE_E_KEY_NOT_FOUND;
		goto out;
	}
	CK_ATTRIBUTE *cls = p11_kit_uri_get_attribute(u, CKA_CLASS);
	if (cls && (cls->ulValueLen != sizeof(CK_OBJECT_CLASS) ||
		    *(CK_OBJECT_CLASS *)cls->pValue != CKO_PRIVATE_KEY)) {
		rc = FIRMANTE_E_KEY_NOT_FOUND;
		goto out;
	}
	/* The cache first (only the match is copied); a miss (or an
	 * ambiguous match) reads the tokens once more. */
	pthread_mutex_lock(&ctx->lock);
	rc = 1;
	if (ctx->ids.valid && uri_matches(u, ctx->ids.v, ctx->ids.n, &which) == 1)
		rc = ids_copy(&ctx->ids.v[which], 1, &one);
	pthread_mutex_unlock(&ctx->lock);
	if (rc < 0)
		goto out;
	if (rc == 0) {
		*out = one;
		goto out;
	}
	{
		rc = id_cache_refresh(ctx, &ids, &n);
		if (rc != 0) {
			ids = NULL;
			n = 0;
			goto out;
		}
		found = uri_matches(u, ids, n, &which);
	}
	if (found != 1) {
		rc = FIRMANTE_E_KEY_NOT_FOUND;
		goto out;
	}
	one = calloc(1, sizeof(*one));
	if (!one) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	*one = ids[which];
	ids[which].cert_der = NULL; /* ownership moves to @one */
	*out = one;
	rc = 0;
out:
	fp11_identities_free(ids, n);
	p11_kit_uri_free(u);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Signing */

/*
 * The signing lock and kept session of the token @tok: logins are per
 * token (PKCS#11 v2.40 §5.6), so signatures on one token run one at a
 * time, while different tokens sign in parallel. Entries are never
 * removed (a token that comes back finds its entry again). Tokens beyond
 * MAX_TOKEN_LOCKS share one entry that keeps nothing between calls.
 */
static struct token_lock *token_lock(fp11_ctx *ctx, const struct fp11_token_info *tok)
{
	struct token_lock *tl = &ctx->overflow;
	struct token_lock *free_slot = NULL;

	pthread_mutex_lock(&ctx->lock);
	for (size_t i = 0; i < MAX_TOKEN_LOCKS; i++) {
		struct token_lock *l = &ctx->tok_locks[i];
		if (!l->used) {
			if (!free_slot)
				free_slot = l;
			continue;
		}
		if (strcmp(l->manufacturer, tok->manufacturer) == 0 &&
		    strcmp(l->model, tok->model) == 0 && strcmp(l->serial, tok->serial) == 0 &&
		    strcmp(l->label, tok->label) == 0) {
			tl = l;
			goto out;
		}
	}
	if (free_slot && pthread_mutex_init(&free_slot->m, NULL) == 0) {
		free_slot->used = true;
		free_slot->s = CK_INVALID_HANDLE;
		snprintf(free_slot->manufacturer, sizeof(free_slot->manufacturer), "%s", tok->manufacturer);
		snprintf(free_slot->model, sizeof(free_slot->model), "%s", tok->model);
		snprintf(free_slot->serial, sizeof(free_slot->serial), "%s", tok->serial);
		snprintf(free_slot->label, sizeof(free_slot->label), "%s", tok->label);
		tl = free_slot;
	}
out:
	pthread_mutex_unlock(&ctx->lock);
	return tl;
}

/* DER prefix of a SHA-256 DigestInfo (RFC 8017 §9.2, note 1). */
static const uint8_t sha256_digestinfo_prefix[19] = {
	0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
	0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
};

static int do_login(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_USER_TYPE user,
		    const struct fp11_token_info *tok, fp11_pin_cb pin_cb, void *pin_cb_data,
		    bool *asked)
{
	CK_RV rv;
	if (tok->protected_auth_path) {
		*asked = true;
		/* PIN pad: NULL PIN (PKCS#11 v2.40 §5.6, C_Login). */
		rv = f->C_Login(s, user, NULL, 0);
	} else {
		char pin[PIN_MAX];
		if (!pin_cb)
			return FIRMANTE_E_PINENTRY;
		memset(pin, 0, sizeof(pin));
		*asked = true;
		int rc = pin_cb(pin_cb_data, tok, user == CKU_CONTEXT_SPECIFIC, pin, sizeof(pin));
		if (rc != 0) {
			fm_wipe(pin, sizeof(pin));
			return rc < 0 ? rc : FIRMANTE_E_PINENTRY;
		}
		pin[sizeof(pin) - 1] = '\0';
		rv = f->C_Login(s, user, (CK_UTF8CHAR *)pin, strlen(pin));
		fm_wipe(pin, sizeof(pin));
	}
	if (rv == CKR_USER_ALREADY_LOGGED_IN)
		return 0;
	return map_rv(rv);
}

/* The session (or the token under it) is gone: a card reset, a removal. */
static bool session_lost(CK_RV rv)
{
	return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
	       rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT ||
	       rv == CKR_USER_NOT_LOGGED_IN;
}

/* Forget the kept session; @close: log out and close it (it still lives).
 * A lost handle is not closed: the module may have given its number to
 * another session meanwhile. Caller holds tl->m. */
static void session_forget(struct token_lock *tl, bool close)
{
	if (close && tl->s != CK_INVALID_HANDLE && tl->mod) {
		if (tl->logged_in)
			tl->mod->funcs->C_Logout(tl->s);
		tl->mod->funcs->C_CloseSession(tl->s);
	}
	tl->s = CK_INVALID_HANDLE;
	tl->logged_in = false;
	tl->owner[0] = '\0';
	tl->n_keys = 0;
	tl->mechs_known = false;
}

/* End the kept login (C_Logout). Caller holds tl->m. Returns the CK_RV. */
static CK_RV session_logout(struct token_lock *tl)
{
	CK_RV rv = CKR_OK;

	if (tl->logged_in && tl->s != CK_INVALID_HANDLE)
		rv = tl->mod->funcs->C_Logout(tl->s);
	tl->logged_in = false;
	tl->owner[0] = '\0';
	tl->n_keys = 0; /* private key handles may not survive a logout */
	if (session_lost(rv) && rv != CKR_USER_NOT_LOGGED_IN)
		session_forget(tl, false);
	return rv;
}

/* A logout fp11_drop_login() asked for while the token was busy. Caller holds tl->m. */
static void apply_drop(fp11_ctx *ctx, struct token_lock *tl)
{
	char who[FP11_OWNER_MAX];
	bool pending, any;

	pthread_mutex_lock(&ctx->lock);
	pending = tl->drop_pending;
	any = tl->drop_any;
	memcpy(who, tl->drop_owner, sizeof(who));
	tl->drop_pending = false;
	pthread_mutex_unlock(&ctx->lock);
	if (pending && tl->logged_in && (any || strcmp(who, tl->owner) == 0))
		session_logout(tl);
}

/*
 * A session on the token of @id for @tl: on the slot where it was last
 * seen when the same token is still there, else found again by
 * enumeration (slot ids may change, §5.5). Caller holds tl->m.
 */
static int open_session(fp11_ctx *ctx, struct token_lock *tl, const struct fp11_identity *id)
{
	struct token_ref *toks = NULL, *t = NULL;
	size_t nt = 0;
	CK_RV rv;
	int rc;

	session_forget(tl, false);
	if (tl->have_slot) {
		struct token_ref r;

		memset(&r, 0, sizeof(r));
		r.mod = tl->mod;
		r.slot = tl->slot;
		if (r.mod->funcs->C_GetTokenInfo(r.slot, &r.raw) == CKR_OK &&
		    (r.raw.flags & CKF_TOKEN_INITIALIZED)) {
			fill_token_info(&r);
			if (same_token(&r.info, &id->token) &&
			    r.mod->funcs->C_OpenSession(r.slot, CKF_SERIAL_SESSION, NULL, NULL,
							&tl->s) == CKR_OK)
				return 0;
			tl->s = CK_INVALID_HANDLE;
		}
		tl->have_slot = false;
	}
	rc = enum_tokens(ctx, &toks, &nt);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < nt && !t; i++)
		if (same_token(&toks[i].info, &id->token))
			t = &toks[i];
	if (!t) {
		free(toks);
		return FIRMANTE_E_TOKEN_REMOVED;
	}
	tl->mod = t->mod;
	tl->slot = t->slot;
	tl->have_slot = true;
	free(toks);
	rv = tl->mod->funcs->C_OpenSession(tl->slot, CKF_SERIAL_SESSION, NULL, NULL, &tl->s);
	if (rv != CKR_OK) {
		tl->s = CK_INVALID_HANDLE;
		return map_rv(rv);
	}
	return 0;
}

/*
 * The private key of @id on the kept session: remembered, or found by
 * CKA_ID (and the label when it was visible). Caller holds tl->m.
 * Sets *@rv_out to the failing CK_RV of a lost session.
 */
static int find_key(struct token_lock *tl, const struct fp11_identity *id,
		    const struct key_handle **out, bool *cached, CK_RV *rv_out)
{
	CK_FUNCTION_LIST *f = tl->mod->funcs;
	const char *label = id->key_visible && id->key_label[0] ? id->key_label : "";
	struct key_handle *kh;

	*cached = false;
	if (id->id_len == 0 || id->id_len > sizeof(kh->id))
		return FIRMANTE_E_KEY_NOT_FOUND;
	for (size_t i = 0; i < tl->n_keys; i++) {
		kh = &tl->keys[i];
		if (kh->id_len == id->id_len && memcmp(kh->id, id->id, id->id_len) == 0 &&
		    strcmp(kh->label, label) == 0) {
			*out = kh;
			*cached = true;
			return 0;
		}
	}
	CK_OBJECT_CLASS priv = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &priv, sizeof(priv) },
		{ CKA_ID, (void *)id->id, id->id_len },
		{ CKA_LABEL, (void *)label, strlen(label) },
	};
	CK_OBJECT_HANDLE keys[2];
	CK_ULONG nkeys = 0;
	CK_RV rv = f->C_FindObjectsInit(tl->s, tmpl, label[0] ? 3 : 2);
	if (rv == CKR_OK) {
		rv = f->C_FindObjects(tl->s, keys, 2, &nkeys);
		f->C_FindObjectsFinal(tl->s);
	}
	if (rv != CKR_OK) {
		*rv_out = rv;
		return map_rv(rv);
	}
	if (nkeys != 1)
		return FIRMANTE_E_KEY_NOT_FOUND;
	/* A key hidden before login: the caller could not check it (token.h).
	 * An attribute that cannot be read is the token's error (a lost
	 * session or login), never taken for "extractable". */
	if (!id->key_visible) {
		CK_BBOOL sens = CK_FALSE, extr = CK_TRUE;
		CK_ATTRIBUTE ka[] = { { CKA_SENSITIVE, &sens, sizeof(sens) },
				      { CKA_EXTRACTABLE, &extr, sizeof(extr) } };
		rv = f->C_GetAttributeValue(tl->s, keys[0], ka, 2);
		/* An attribute the key does not have (its length is then
		 * CK_UNAVAILABLE_INFORMATION) is refused below. */
		if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE) {
			*rv_out = rv;
			return map_rv(rv);
		}
		if (ka[0].ulValueLen != sizeof(sens) || ka[1].ulValueLen != sizeof(extr) ||
		    sens != CK_TRUE || extr != CK_FALSE)
			return FIRMANTE_E_KEY_EXTRACTABLE;
	}
	if (tl->n_keys == MAX_KEY_HANDLES)
		tl->n_keys = 0;
	kh = &tl->keys[tl->n_keys++];
	memset(kh, 0, sizeof(*kh));
	memcpy(kh->id, id->id, id->id_len);
	kh->id_len = id->id_len;
	snprintf(kh->label, sizeof(kh->label), "%s", label);
	kh->h = keys[0];
	kh->always_auth = get_bool(f, tl->s, keys[0], CKA_ALWAYS_AUTHENTICATE, false);
	*out = kh;
	return 0;
}

/*
 * One signing attempt on the token's kept session; the caller holds tl->m.
 * *@asked: the holder was asked for a PIN (callback or PIN pad) during
 * this attempt. *@retry: the attempt failed on something that went stale
 * (a lost session, a key handle or mechanism list no longer valid) before
 * anything was asked, and may be tried again.
 */
/* Why an attempt may be repeated: RETRY_KEPT_LOST: the kept session's
 * token is no longer in its slot (no session was tried: it does not count
 * as the one retry of a lost session); RETRY_LOST: a session was lost;
 * RETRY_STALE: a remembered key handle or mechanism list went stale. */
enum retry_why { RETRY_NONE, RETRY_KEPT_LOST, RETRY_LOST, RETRY_STALE };

static int sign_once(fp11_ctx *ctx, struct token_lock *tl, const struct fp11_identity *id,
		     const char *owner, fp11_pin_cb pin_cb, void *pin_cb_data, bool allow_final_try,
		     const uint8_t *data, size_t len, uint8_t *sig, size_t *sig_len, bool *asked,
		     enum retry_why *retry)
{
	int rc;
	CK_FUNCTION_LIST *f;
	CK_RV rv = CKR_OK;
	bool op_active = false, cached_key = false, cached_mechs = true;
	const struct key_handle *kh = NULL;
	uint8_t tbs[sizeof(sha256_digestinfo_prefix) + 32];

	bool kept = tl->s != CK_INVALID_HANDLE;

	*retry = RETRY_NONE;
	if (!kept) {
		rc = open_session(ctx, tl, id);
		if (rc != 0)
			return rc;
	}
	f = tl->mod->funcs;

	/* Another owner's login ends before this request's begins. */
	if (tl->logged_in && !(owner && strcmp(tl->owner, owner) == 0)) {
		rv = session_logout(tl);
		if (tl->s == CK_INVALID_HANDLE)
			goto lost;
	}
	if (!tl->logged_in) {
		struct token_ref t;

		memset(&t, 0, sizeof(t));
		t.mod = tl->mod;
		t.slot = tl->slot;
		/* Fresh flags: PIN locked, final try, login required. */
		rv = f->C_GetTokenInfo(tl->slot, &t.raw);
		if (rv == CKR_OK)
			fill_token_info(&t);
		if (rv == CKR_OK ? !same_token(&t.info, &id->token) :
		    session_lost(rv) || rv == CKR_SLOT_ID_INVALID) {
			/* The token is not (or no longer) in that slot: found
			 * again by enumeration; no session was tried yet. */
			session_forget(tl, false);
			tl->have_slot = false;
			*retry = kept ? RETRY_KEPT_LOST : RETRY_LOST;
			rc = FIRMANTE_E_TOKEN_REMOVED;
			goto out;
		}
		if (rv != CKR_OK) {
			rc = map_rv(rv);
			goto out;
		}
		if (t.info.user_pin_locked) {
			rc = FIRMANTE_E_PIN_LOCKED;
			goto out;
		}
		if (t.info.login_required) {
			CK_SESSION_INFO si;

			/* The session still lives: checked before the holder is asked. */
			rv = f->C_GetSessionInfo(tl->s, &si);
			if (rv != CKR_OK) {
				if (session_lost(rv))
					goto lost;
				rc = map_rv(rv);
				goto out;
			}
			if (si.state != CKS_RO_USER_FUNCTIONS && si.state != CKS_RW_USER_FUNCTIONS) {
				if (t.info.user_pin_final_try && !allow_final_try) {
					rc = FIRMANTE_E_PIN_FINAL_TRY;
					goto out;
				}
				rc = do_login(f, tl->s, CKU_USER, &t.info, pin_cb, pin_cb_data, asked);
				if (rc == FIRMANTE_E_TOKEN_REMOVED) {
					rv = CKR_SESSION_HANDLE_INVALID;
					goto lost;
				}
				if (rc != 0)
					goto out;
				tl->logged_in = true;
				snprintf(tl->owner, sizeof(tl->owner), "%s", owner ? owner : "");
				tl->n_keys = 0;
			}
		}
	}

	rc = find_key(tl, id, &kh, &cached_key, &rv);
	if (rc != 0) {
		if (session_lost(rv))
			goto lost;
		goto out;
	}
	pthread_mutex_lock(&ctx->lock);
	bool soft = ctx->hash_in_software;
	unsigned long gen = ctx->ids.gen;
	pthread_mutex_unlock(&ctx->lock);
	/* The mechanism list is read again after a slot event (fp11_tokens_changed). */
	if (!tl->mechs_known || tl->mechs_gen != gen) {
		struct token_ref t;

		memset(&t, 0, sizeof(t));
		t.mod = tl->mod;
		t.slot = tl->slot;
		token_mechs(&t, &tl->sha256_rsa, &tl->rsa);
		tl->mechs_known = true;
		tl->mechs_gen = gen;
		cached_mechs = false;
	}
	bool sha256_rsa = tl->sha256_rsa, rsa = tl->rsa;
	if (soft && rsa)
		sha256_rsa = false;
	CK_MECHANISM mech = { CKM_SHA256_RSA_PKCS, NULL, 0 };
	/* Some modules refuse a NULL pData even with a zero length. */
	static const uint8_t empty[1];
	const uint8_t *in = data ? data : empty;
	size_t in_len = len;
	if (!sha256_rsa) {
		if (!rsa) {
			rc = FIRMANTE_E_MECHANISM;
			if (cached_mechs)
				goto stale;
			goto out;
		}
		/* Hash here and sign the DigestInfo (RFC 8017 §9.2). */
		unsigned int mdlen = 0;
		memcpy(tbs, sha256_digestinfo_prefix, sizeof(sha256_digestinfo_prefix));
		if (!EVP_Digest(data ? data : empty, len, tbs + sizeof(sha256_digestinfo_prefix), &mdlen,
				EVP_sha256(), NULL) || mdlen != 32) {
			rc = FIRMANTE_E_INTERNAL;
			goto out;
		}
		mech.mechanism = CKM_RSA_PKCS;
		in = tbs;
		in_len = sizeof(tbs);
	}
	rv = f->C_SignInit(tl->s, &mech, kh->h);
	if (rv != CKR_OK) {
		if (session_lost(rv))
			goto lost;
		rc = map_rv(rv);
		/* A remembered key handle or mechanism list that went stale. */
		if ((cached_key && (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID)) ||
		    (cached_mechs && rc == FIRMANTE_E_MECHANISM))
			goto stale;
		goto out;
	}
	op_active = true;
	if (kh->always_auth) {
		/* CKA_ALWAYS_AUTHENTICATE: context-specific login after C_SignInit (§4.9). */
		rc = do_login(f, tl->s, CKU_CONTEXT_SPECIFIC, &id->token, pin_cb, pin_cb_data, asked);
		if (rc != 0)
			goto out;
	}
	CK_ULONG out_len = *sig_len;
	rv = f->C_Sign(tl->s, (CK_BYTE_PTR)in, in_len, sig, &out_len);
	if (rv == CKR_BUFFER_TOO_SMALL) {
		rc = FIRMANTE_E_BAD_REQUEST;
		goto out;
	}
	if (rv != CKR_OK) {
		if (session_lost(rv))
			goto lost;
		rc = map_rv(rv);
		goto out;
	}
	op_active = false; /* C_Sign ends the operation (§5.12) */
	*sig_len = out_len;
	rc = 0;
	goto out;
stale:
	tl->n_keys = 0;
	tl->mechs_known = false;
	*retry = *asked ? RETRY_NONE : RETRY_STALE;
	goto out;
lost:
	/* The session (and with it any login) is gone; the next attempt opens
	 * a new one, and logs in again only through the PIN callback. */
	session_forget(tl, rv == CKR_USER_NOT_LOGGED_IN);
	*retry = *asked ? RETRY_NONE : RETRY_LOST;
	rc = FIRMANTE_E_TOKEN_REMOVED;
out:
	fm_wipe(tbs, sizeof(tbs));
	/* An operation left active (a failed context-specific login, a
	 * buffer too small) would block the next C_SignInit: start afresh. */
	if (op_active && tl->s != CK_INVALID_HANDLE)
		session_forget(tl, true);
	return rc;
}

int fp11_sign_as(fp11_ctx *ctx, const struct fp11_identity *id, const char *login_owner,
		 fp11_pin_cb pin_cb, void *pin_cb_data, bool allow_final_try, const uint8_t *data,
		 size_t len, uint8_t *sig, size_t *sig_len)
{
	int rc;

	if (!ctx || !id || !sig || !sig_len || (!data && len))
		return FIRMANTE_E_BAD_REQUEST;
	if (login_owner && (!login_owner[0] || strlen(login_owner) >= FP11_OWNER_MAX))
		return FIRMANTE_E_BAD_REQUEST;
	if (id->cert_err == 0 && id->cert.key_bits > 0 &&
	    *sig_len < (size_t)(id->cert.key_bits + 7) / 8)
		return FIRMANTE_E_BAD_REQUEST;

	struct token_lock *tl = token_lock(ctx, &id->token);
	bool keep = tl != &ctx->overflow;
	pthread_mutex_lock(&tl->m);
	apply_drop(ctx, tl);
	for (int lost = 0, stale = 0, kept_lost = 0;;) {
		bool asked = false;
		enum retry_why retry = RETRY_NONE;
		rc = sign_once(ctx, tl, id, keep ? login_owner : NULL, pin_cb, pin_cb_data,
			       allow_final_try, data, len, sig, sig_len, &asked, &retry);
		/*
		 * A session lost (card reset, re-insertion) before the holder
		 * was asked anything is recovered once with a new session (a
		 * kept session whose token moved to another slot does not
		 * count: no session was tried), and
		 * a remembered key handle or mechanism list that went stale is
		 * looked up once more. Once a PIN was asked, never again
		 * without the holder.
		 */
		if (asked || retry == RETRY_NONE || (retry == RETRY_LOST && lost++ >= 1) ||
		    (retry == RETRY_STALE && stale++ >= 1) ||
		    (retry == RETRY_KEPT_LOST && kept_lost++ >= 1))
			break;
	}
	/* Without an owner the login ends with the request. */
	if (tl->logged_in && (!keep || !login_owner))
		session_logout(tl);
	apply_drop(ctx, tl);
	if (!keep)
		session_forget(tl, true);
	pthread_mutex_unlock(&tl->m);
	return rc;
}

int fp11_sign(fp11_ctx *ctx, const struct fp11_identity *id, fp11_pin_cb pin_cb,
	      void *pin_cb_data, bool allow_final_try, const uint8_t *data, size_t len,
	      uint8_t *sig, size_t *sig_len)
{
	return fp11_sign_as(ctx, id, NULL, pin_cb, pin_cb_data, allow_final_try, data, len, sig,
			    sig_len);
}

void fp11_drop_login(fp11_ctx *ctx, const struct fp11_token_info *tok, const char *owner)
{
	struct token_lock *tl;

	if (!ctx || !tok)
		return;
	tl = token_lock(ctx, tok);
	pthread_mutex_lock(&ctx->lock);
	/* Two different owners pending: drop whichever login is there. */
	if (tl->drop_pending && (!owner || strcmp(tl->drop_owner, owner) != 0))
		tl->drop_any = true;
	else
		tl->drop_any = !owner;
	snprintf(tl->drop_owner, sizeof(tl->drop_owner), "%s", owner ? owner : "");
	tl->drop_pending = true;
	pthread_mutex_unlock(&ctx->lock);
	/* Never wait for a busy (or hung) token: its signer applies the drop. */
	if (pthread_mutex_trylock(&tl->m) == 0) {
		apply_drop(ctx, tl);
		pthread_mutex_unlock(&tl->m);
	}
}

void fp11_set_hash_in_software(fp11_ctx *ctx, bool on)
{
	if (!ctx)
		return;
	pthread_mutex_lock(&ctx->lock);
	ctx->hash_in_software = on;
	pthread_mutex_unlock(&ctx->lock);
}

/* ------------------------------------------------------------------ */

const char *fp11_ckr_name(unsigned long rv)
{
#define R(x) { x, #x }
	static const struct {
		unsigned long rv;
		const char *name;
	} names[] = {
		R(CKR_OK), R(CKR_CANCEL), R(CKR_HOST_MEMORY), R(CKR_SLOT_ID_INVALID),
		R(CKR_GENERAL_ERROR), R(CKR_FUNCTION_FAILED), R(CKR_ARGUMENTS_BAD),
		R(CKR_NO_EVENT), R(CKR_NEED_TO_CREATE_THREADS), R(CKR_CANT_LOCK),
		R(CKR_ATTRIBUTE_READ_ONLY), R(CKR_ATTRIBUTE_SENSITIVE),
		R(CKR_ATTRIBUTE_TYPE_INVALID), R(CKR_ATTRIBUTE_VALUE_INVALID),
		R(CKR_DATA_INVALID), R(CKR_DATA_LEN_RANGE), R(CKR_DEVICE_ERROR),
		R(CKR_DEVICE_MEMORY), R(CKR_DEVICE_REMOVED), R(CKR_ENCRYPTED_DATA_INVALID),
		R(CKR_FUNCTION_CANCELED), R(CKR_FUNCTION_NOT_PARALLEL),
		R(CKR_FUNCTION_NOT_SUPPORTED), R(CKR_KEY_HANDLE_INVALID), R(CKR_KEY_SIZE_RANGE),
		R(CKR_KEY_TYPE_INCONSISTENT), R(CKR_KEY_FUNCTION_NOT_PERMITTED),
		R(CKR_MECHANISM_INVALID), R(CKR_MECHANISM_PARAM_INVALID),
		R(CKR_OBJECT_HANDLE_INVALID), R(CKR_OPERATION_ACTIVE),
		R(CKR_OPERATION_NOT_INITIALIZED), R(CKR_PIN_INCORRECT), R(CKR_PIN_INVALID),
		R(CKR_PIN_LEN_RANGE), R(CKR_PIN_EXPIRED), R(CKR_PIN_LOCKED),
		R(CKR_SESSION_CLOSED), R(CKR_SESSION_COUNT), R(CKR_SESSION_HANDLE_INVALID),
		R(CKR_SESSION_PARALLEL_NOT_SUPPORTED), R(CKR_SESSION_READ_ONLY),
		R(CKR_SESSION_EXISTS), R(CKR_SESSION_READ_ONLY_EXISTS),
		R(CKR_SESSION_READ_WRITE_SO_EXISTS), R(CKR_SIGNATURE_INVALID),
		R(CKR_SIGNATURE_LEN_RANGE), R(CKR_TEMPLATE_INCOMPLETE),
		R(CKR_TEMPLATE_INCONSISTENT), R(CKR_TOKEN_NOT_PRESENT),
		R(CKR_TOKEN_NOT_RECOGNIZED), R(CKR_TOKEN_WRITE_PROTECTED),
		R(CKR_USER_ALREADY_LOGGED_IN), R(CKR_USER_NOT_LOGGED_IN),
		R(CKR_USER_PIN_NOT_INITIALIZED), R(CKR_USER_TYPE_INVALID),
		R(CKR_USER_ANOTHER_ALREADY_LOGGED_IN), R(CKR_USER_TOO_MANY_TYPES),
		R(CKR_BUFFER_TOO_SMALL), R(CKR_RANDOM_NO_RNG), R(CKR_DOMAIN_PARAMS_INVALID),
		R(CKR_CRYPTOKI_NOT_INITIALIZED), R(CKR_CRYPTOKI_ALREADY_INITIALIZED),
		R(CKR_MUTEX_BAD), R(CKR_MUTEX_NOT_LOCKED), R(CKR_FUNCTION_REJECTED),
	};
#undef R
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].rv == rv)
			return names[i].name;
	if (rv >= CKR_VENDOR_DEFINED)
		return "CKR_VENDOR_DEFINED";
	return "CKR_UNKNOWN";
}

/* ------------------------------------------------------------------ */
/* For the other files of this room (internal.h). */

int fp11_enum_tokens(fp11_ctx *ctx, struct token_ref **out, size_t *n)
{
	fp11_tokens_changed(ctx);
	return enum_tokens(ctx, out, n);
}

int fp11_map_rv(unsigned long rv)
{
	return map_rv(rv);
}

int fp11_login(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_USER_TYPE user,
	       const struct fp11_token_info *tok, fp11_pin_cb pin_cb, void *pin_cb_data,
	       bool *asked)
{
	return do_login(f, s, user, tok, pin_cb, pin_cb_data, asked);
}
