/*
 * Shared between the files of the token room (pkcs11/); not installed.
 */
#ifndef FIRMANTE_PKCS11_INTERNAL_H
#define FIRMANTE_PKCS11_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include <p11-kit/pkcs11.h>

#include "firmante/token.h"

struct module {
	CK_FUNCTION_LIST *funcs;
	char name[256];
	bool from_path; /* loaded with p11_kit_module_load() */
};

/* A token found during one enumeration. */
struct token_ref {
	struct module *mod;
	CK_SLOT_ID slot;
	CK_TOKEN_INFO raw;
	struct fp11_token_info info;
};

/* Every initialised token present now (see token.c); @out freed with free().
 * Also forgets the identity cache: the caller (import.c) may be about to
 * write objects. */
int fp11_enum_tokens(fp11_ctx *ctx, struct token_ref **out, size_t *n);

/* CK_RV -> negative firmante error. */
int fp11_map_rv(unsigned long rv);

/* C_Login with a PIN from @pin_cb (or the PIN pad); *@asked set when the
 * holder was asked. CKR_USER_ALREADY_LOGGED_IN counts as success. */
int fp11_login(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_USER_TYPE user,
	       const struct fp11_token_info *tok, fp11_pin_cb pin_cb, void *pin_cb_data,
	       bool *asked);

#endif
