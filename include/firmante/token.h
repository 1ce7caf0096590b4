/*
 * The token room (pkcs11/, prefix fp11_): PKCS#11 modules, tokens, signing
 * identities (private key + certificate) and RSA signatures made on the token.
 *
 * Modules are loaded through p11-kit: the modules registered with p11-kit
 * (p11_kit_modules_load_and_initialize) and/or module paths from the
 * agent's configuration. A client of the agent never names a module.
 * Tokens are identified by serial and label, never by slot id. Keys are
 * paired with certificates by CKA_ID (PKCS#11 v2.40 §4.4), falling back to
 * comparing the RSA public key. Nothing here ever asks a token for private
 * key material.
 *
 * Thread safety: an fp11_ctx may be shared between threads. Signatures on
 * one token are serialised by a per-token lock (a login belongs to the
 * token, PKCS#11 v2.40 §5.6); different tokens sign in parallel. Listing
 * takes no lock and runs beside a signature (modules are initialised by
 * p11-kit for multi-threaded use), so a slow or hung token never blocks
 * listing or the other tokens. fp11_close() must not race other calls.
 *
 * Kept state: each token has one session, opened at its first signature
 * and kept open between signatures (found again by enumeration when it is
 * lost). A login on it is kept only when the signature names an owner
 * (fp11_sign_as); the key handles and mechanism list found on it are
 * remembered while it lives. Identities (certificates parsed once) are
 * kept in a cache, read again after fp11_tokens_changed(), when
 * fp11_list_tokens() sees the set of tokens or their slots change, and
 * when fp11_find_identity() finds no match.
 */
#ifndef FIRMANTE_TOKEN_H
#define FIRMANTE_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "firmante/satcert.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fp11_ctx fp11_ctx;

/* Which modules to load. */
struct fp11_config {
	/* Absolute paths of PKCS#11 modules to load besides (or instead of)
	 * the p11-kit registered ones. May be NULL when n_module_paths is 0. */
	const char *const *module_paths;
	size_t n_module_paths;
	/* Also load every module registered with p11-kit. */
	bool use_p11kit_registered;
};

/* One token (CK_TOKEN_INFO, PKCS#11 v2.40 §5.4), blank padding trimmed. */
struct fp11_token_info {
	char module[256];        /* module path or p11-kit module name */
	unsigned long slot_id;   /* informational only; never an identifier */
	char label[33];
	char manufacturer[33];
	char model[17];
	char serial[17];
	unsigned long flags;     /* raw CK_TOKEN_INFO.flags */
	bool login_required;     /* CKF_LOGIN_REQUIRED */
	bool protected_auth_path;/* CKF_PROTECTED_AUTHENTICATION_PATH: PIN pad */
	bool user_pin_initialized;
	bool user_pin_count_low; /* CKF_USER_PIN_COUNT_LOW */
	bool user_pin_final_try; /* CKF_USER_PIN_FINAL_TRY */
	bool user_pin_locked;    /* CKF_USER_PIN_LOCKED */
	char uri[512];           /* RFC 7512 URI of the token */
};

/* One signing identity: an RSA private key with its X.509 certificate. */
struct fp11_identity {
	struct fp11_token_info token;
	uint8_t id[64];          /* CKA_ID */
	size_t id_len;
	char key_label[128];     /* CKA_LABEL of the private key (see key_visible) */
	char uri[1024];          /* RFC 7512 URI of the private key
	                          * (token, serial, id, object, type=private) */
	uint8_t *cert_der;       /* certificate (CKA_VALUE), owned */
	size_t cert_len;
	struct fm_satcert cert;  /* valid when cert_err == 0 */
	int cert_err;            /* 0 or error from fm_satcert_parse_der() */
	bool sensitive;          /* CKA_SENSITIVE */
	bool extractable;        /* CKA_EXTRACTABLE */
	bool always_authenticate;/* CKA_ALWAYS_AUTHENTICATE */
	bool mech_sha256_rsa_pkcs; /* token offers CKM_SHA256_RSA_PKCS for signing */
	bool mech_rsa_pkcs;        /* token offers CKM_RSA_PKCS for signing */
	/* The private key object was visible without login. When false (a
	 * CKA_PRIVATE key on a token that needs login), the identity comes
	 * from an end-entity certificate with this CKA_ID; key_label is the
	 * certificate's CKA_LABEL, the URI has no "object", and sensitive,
	 * extractable and always_authenticate are unknown (false);
	 * fp11_sign() checks them after login. */
	bool key_visible;
};

/*
 * PIN callback. Called by fp11_sign() only when a login is needed and the
 * token has no PIN pad. @tok holds the token's current flags (count low,
 * final try). @context_specific is true for a CKU_CONTEXT_SPECIFIC login
 * (CKA_ALWAYS_AUTHENTICATE keys). The callback writes a NUL-terminated
 * PIN of at most @pin_size - 1 bytes into @pin and returns 0, or returns a
 * negative firmante error (FIRMANTE_E_USER_DENIED, FIRMANTE_E_PINENTRY...)
 * which fp11_sign() returns unchanged. fp11_sign() wipes @pin after use.
 */
typedef int (*fp11_pin_cb)(void *data, const struct fp11_token_info *tok,
			   bool context_specific, char *pin, size_t pin_size);

/*
 * fp11_open - load and initialise the configured modules.
 * @cfg: which modules; the strings are copied.
 * @out: the new context, written only on success; free with fp11_close().
 * Returns 0, FIRMANTE_E_CONFIG (a module path failed to load or
 * initialise; no module at all is not an error), FIRMANTE_E_NOMEM.
 */
int fp11_open(const struct fp11_config *cfg, fp11_ctx **out);

/* fp11_close - finalise the modules and free @ctx. NULL is a no-op. */
void fp11_close(fp11_ctx *ctx);

/* One loaded module (fp11_list_modules). */
struct fp11_module_info {
	char name[256];          /* configured path, or the p11-kit module name */
	bool from_path;          /* loaded from a configured path, not p11-kit */
	char description[33];    /* CK_INFO.libraryDescription, padding trimmed */
};

/*
 * fp11_list_modules - the modules @ctx loaded: configured paths first, then
 * the p11-kit registered ones (PKCS#11 v2.40 §5.4 C_GetInfo for the
 * description; empty when the module does not answer).
 * @out: malloc'd array (free with free()), @n: its length; written on success.
 * Returns 0, FIRMANTE_E_NOMEM, FIRMANTE_E_INTERNAL (NULL argument).
 */
int fp11_list_modules(fp11_ctx *ctx, struct fp11_module_info **out, size_t *n);

/*
 * fp11_list_tokens - tokens present in any slot of any loaded module.
 * @out: malloc'd array (free with free()), @n: its length; written on success.
 * Returns 0, FIRMANTE_E_NOMEM, FIRMANTE_E_TOKEN.
 */
int fp11_list_tokens(fp11_ctx *ctx, struct fp11_token_info **out, size_t *n);

/*
 * fp11_tokens_changed - forget the identity cache: the next
 * fp11_find_identity() or fp11_list_identities() reads the tokens again.
 * For slot events (a token arrived, left, or came back under another slot
 * id). NULL @ctx is a no-op.
 */
void fp11_tokens_changed(fp11_ctx *ctx);

/*
 * fp11_list_identities - every RSA private key that has a certificate
 * (paired by CKA_ID, else by public key), on every present token. Keys
 * without a certificate are skipped. Certificates are read without login
 * (they are public objects; PKCS#11 v2.40 §4.6.3). On a token that needs
 * login, private keys may stay hidden until login (CKA_PRIVATE, §4.4): then
 * every end-entity certificate (not a CA) with a non-empty CKA_ID and no
 * visible key is listed too, with key_visible false. Tokens that are not
 * initialised (CKF_TOKEN_INITIALIZED clear) are not listed, and a token
 * seen through two modules (p11-kit and a configured path) is listed once.
 * Answered from the identity cache when it is valid and at most 5 seconds
 * old (objects written by another program raise no slot event); else the
 * tokens are read and the cache refreshed.
 * @out: array freed with fp11_identities_free(); @n: its length.
 * Returns 0, FIRMANTE_E_NOMEM, FIRMANTE_E_TOKEN.
 */
int fp11_list_identities(fp11_ctx *ctx, struct fp11_identity **out, size_t *n);

/* fp11_identities_free - free an array from fp11_list_identities(). */
void fp11_identities_free(struct fp11_identity *ids, size_t n);

/*
 * fp11_find_identity - the identity matching a PKCS#11 URI (RFC 7512).
 * @uri: "pkcs11:..." with any of token, serial, manufacturer, model,
 *       object, id, type (type, when present, must be "private").
 *       Query attributes (pin-value, pin-source, module-*) are ignored:
 *       a PIN never comes from a URI.
 * @out: a single identity, freed with fp11_identities_free(out, 1).
 * Looked up in the identity cache; when it holds no single match, the
 * tokens are read once more (a key imported meanwhile) before the error.
 * Returns 0, FIRMANTE_E_BAD_REQUEST (not a PKCS#11 URI),
 * FIRMANTE_E_KEY_NOT_FOUND (no match, or more than one), FIRMANTE_E_NOMEM,
 * FIRMANTE_E_TOKEN.
 */
int fp11_find_identity(fp11_ctx *ctx, const char *uri, struct fp11_identity **out);

/*
 * fp11_sign - RSASSA-PKCS1-v1_5 with SHA-256 over @data, made on the token.
 * Uses CKM_SHA256_RSA_PKCS when offered, else hashes in code and signs a
 * DigestInfo (RFC 8017 §9.2) with CKM_RSA_PKCS.
 * Logs in as CKU_USER when needed (PIN from @pin_cb, or the PIN pad), and
 * with CKU_CONTEXT_SPECIFIC for CKA_ALWAYS_AUTHENTICATE keys. Never retries
 * a PIN by itself. Refuses a token in "final try" state unless
 * @allow_final_try, and a locked one.
 * @id: identity from fp11_list_identities()/fp11_find_identity(); found
 *      again on the token by serial, label and CKA_ID (slot ids may change).
 * @sig: buffer of *@sig_len bytes; on success *@sig_len is the signature
 *       length (the modulus size, 256 bytes for RSA-2048).
 * For an identity with key_visible false, the key's CKA_SENSITIVE and
 * CKA_EXTRACTABLE are read after login and an extractable or non-sensitive
 * key is refused with FIRMANTE_E_KEY_EXTRACTABLE (the caller could not
 * have checked them; DESIGN.md "Keys stay on the token").
 * The PIN buffer is wiped. The token's session is kept open for the next
 * call; a login made here is logged out before return (fp11_sign_as()
 * keeps one). A session lost before the holder was asked anything
 * (CKR_SESSION_HANDLE_INVALID, CKR_DEVICE_REMOVED: a card reset or
 * re-insertion) is retried once with a new session, and a remembered key
 * handle or mechanism list the token no longer accepts is looked up once
 * more; once a PIN was asked, the error is returned (DESIGN.md: never
 * re-send a PIN without the holder).
 * Returns 0, FIRMANTE_E_KEY_NOT_FOUND, FIRMANTE_E_TOKEN_REMOVED,
 * FIRMANTE_E_PIN_INCORRECT, FIRMANTE_E_PIN_LOCKED, FIRMANTE_E_PIN_FINAL_TRY,
 * FIRMANTE_E_MECHANISM, FIRMANTE_E_TOKEN, FIRMANTE_E_NOMEM,
 * FIRMANTE_E_BAD_REQUEST (@sig too small), FIRMANTE_E_KEY_EXTRACTABLE,
 * FIRMANTE_E_PINENTRY (login needed but @pin_cb is NULL), FIRMANTE_E_USER_DENIED
 * (also CKR_FUNCTION_CANCELED from a PIN pad), or the callback's error.
 */
int fp11_sign(fp11_ctx *ctx, const struct fp11_identity *id,
	      fp11_pin_cb pin_cb, void *pin_cb_data, bool allow_final_try,
	      const uint8_t *data, size_t len, uint8_t *sig, size_t *sig_len);

/* Longest login owner tag of fp11_sign_as(), NUL included. */
#define FP11_OWNER_MAX 96

/*
 * fp11_sign_as - fp11_sign() that keeps the token's login for @login_owner.
 * @login_owner: NULL: as fp11_sign() (a login made is logged out before
 *   return). Else a non-empty tag of at most FP11_OWNER_MAX - 1 bytes
 *   naming whose PIN or approval the login rests on (a batch id, an
 *   unattended policy, a PIN-cache entry): the login stays after return,
 *   and a later call with the same tag signs without logging in again. A
 *   call with another tag or none first logs the kept login out
 *   (C_Logout) and then logs in with its own PIN. The login also ends with
 *   fp11_drop_login(), fp11_close(), and with the session (reset, removal:
 *   then the next call logs in again through @pin_cb, never by itself).
 *   CKA_ALWAYS_AUTHENTICATE keys still get their CKU_CONTEXT_SPECIFIC
 *   login for every signature. Tokens beyond the 64th share one entry
 *   that keeps neither session nor login.
 * Other arguments, ownership and errors as fp11_sign(); an empty or too
 * long @login_owner gives FIRMANTE_E_BAD_REQUEST.
 */
int fp11_sign_as(fp11_ctx *ctx, const struct fp11_identity *id, const char *login_owner,
		 fp11_pin_cb pin_cb, void *pin_cb_data, bool allow_final_try,
		 const uint8_t *data, size_t len, uint8_t *sig, size_t *sig_len);

/*
 * fp11_drop_login - end the kept login of token @tok (C_Logout on its
 * session) when it belongs to @owner (NULL: whoever it belongs to). Never
 * waits for a busy token: then the call signing on it logs out when it
 * ends. Nothing happens when no such login is kept. NULL @ctx or @tok is
 * a no-op.
 */
void fp11_drop_login(fp11_ctx *ctx, const struct fp11_token_info *tok, const char *owner);

/*
 * fp11_set_hash_in_software - when @on, fp11_sign() hashes in code and signs
 * a SHA-256 DigestInfo (RFC 8017 §9.2) with CKM_RSA_PKCS even when the token
 * offers CKM_SHA256_RSA_PKCS: for tokens whose on-card hashing is slow or
 * limits the input size. The signature is the same (RSASSA-PKCS1-v1_5 is
 * deterministic). Default off. NULL @ctx is a no-op.
 */
void fp11_set_hash_in_software(fp11_ctx *ctx, bool on);

/* What fp11_import_efirma() wrote. */
struct fp11_import_result {
	char token_label[33];
	char label[128];          /* CKA_LABEL of key, public key and certificate */
	uint8_t id[64];           /* CKA_ID: the certificate's subject key identifier */
	size_t id_len;
	char no_certificado[21];
};

/*
 * fp11_import_efirma - move a SAT e.firma onto a token.
 * @token_uri: RFC 7512 token URI; NULL when exactly one token is present.
 * @pin_cb: asked for the token's user PIN when it needs login.
 * @cert_der: the .cer file (DER X.509). A CSD (subject OU present; SAT's
 *            rule for telling the two apart) is refused.
 * @key_der: the .key file: a DER EncryptedPrivateKeyInfo (PKCS#8, RFC 5208;
 *           SAT uses PBES2 with PBKDF2 and DES-EDE3-CBC, RFC 8018).
 * @password: UTF-8 password of the .key; when it fails, its ISO-8859-1 form
 *            is tried too (older SAT tools encoded Ñ and accents so).
 * The key must match the certificate. The private key is written with
 * CKA_SENSITIVE true, CKA_EXTRACTABLE false, CKA_PRIVATE true, CKA_SIGN
 * true; a public key object and the certificate are written beside it; all
 * three get CKA_ID = the certificate's subject key identifier (RFC 5280
 * §4.2.1.2; when absent, its method 1: SHA-1 of the subjectPublicKey) and
 * the label "e.firma RFC noCertificado". An object with that CKA_ID
 * already on the token is refused. If the token refuses an object, the
 * ones written are removed. Decrypted key material lives only in secure
 * memory and is wiped before return.
 * @res: written on success. @detail: a sentence for the user on failure.
 * Returns 0, FIRMANTE_E_CERT_INVALID, FIRMANTE_E_CERT_NOT_FIEL (CSD),
 * FIRMANTE_E_PIN_INCORRECT (the password does not open the .key),
 * FIRMANTE_E_BAD_DOCUMENT (the .key is not an encrypted PKCS#8 RSA key),
 * FIRMANTE_E_INVALID (key and certificate differ; the id is already on the
 * token; several tokens match), FIRMANTE_E_TOKEN_REMOVED (no token),
 * FIRMANTE_E_TOO_LARGE (file above 64 KiB), FIRMANTE_E_BAD_REQUEST, token
 * login errors as fp11_sign(), FIRMANTE_E_TOKEN, FIRMANTE_E_NOMEM.
 */
int fp11_import_efirma(fp11_ctx *ctx, const char *token_uri, fp11_pin_cb pin_cb,
		       void *pin_cb_data, const uint8_t *cert_der, size_t cert_len,
		       const uint8_t *key_der, size_t key_len, const char *password,
		       struct fp11_import_result *res, char *detail, size_t detail_size);

/*
 * fp11_ckr_name - "CKR_PIN_INCORRECT" etc. for a CK_RV value (for logs).
 */
const char *fp11_ckr_name(unsigned long rv);

#ifdef __cplusplus
}
#endif
#endif
