/*
 * firmanted: one signature, from decision to audit record.
 *
 * agent_sign_one() is the whole signing path for one cadena:
 *   decide (policy: unattended; else the holder: pinentry or the approval
 *   queue) -> PIN (pinentry, PIN pad, or the policy's PIN file) ->
 *   C_Sign on the token -> verify the signature -> audit record.
 * A request that is not approved never reaches the token, and every
 * outcome after the document was understood leaves one audit record.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "agent.h"
#include "firmante/protocol.h"
#include "firmante/util.h"
#include "workers.h"

/* One pinentry dialog at a time: the holder sees one request at a time. */
static pthread_mutex_t dialog_lock = PTHREAD_MUTEX_INITIALIZER;

struct pin_src {
	const struct agent_config *cfg;
	agent_pinentry *pe;              /* interactive: pinentry (opened when first needed) */
	const struct agent_policy *pol;  /* unattended: the policy's PIN file */
	struct agent_batch *batch;       /* an approved batch: its PIN, asked once */
	char fresh[AGENT_PIN_MAX + 1];   /* a PIN just typed, for the cache once accepted */
	bool from_cache;
	const char *folio;
	char detail[256];
};

static int pin_cb(void *data, const struct fp11_token_info *tok, bool context_specific,
		  char *pin, size_t pin_size)
{
	struct pin_src *ps = data;

	int rc;

	if (ps->pol)
		return agent_policy_read_pin(ps->pol, pin, pin_size, ps->detail, sizeof(ps->detail));
	if (ps->batch && context_specific) {
		/* CKA_ALWAYS_AUTHENTICATE: the holder enters the PIN for every
		 * signature, also within a batch; it is not kept. */
		struct agent_batch *b = ps->batch;

		pthread_mutex_lock(&dialog_lock);
		rc = 0;
		if (!b->pe)
			rc = agent_pinentry_open(ps->cfg, &b->pe, ps->detail, sizeof(ps->detail));
		if (!rc)
			rc = agent_pinentry_getpin(b->pe, tok, true, ps->folio, pin, pin_size,
						   ps->detail, sizeof(ps->detail));
		pthread_mutex_unlock(&dialog_lock);
		return rc;
	}
	if (ps->batch) {
		struct agent_batch *b = ps->batch;

		if (!b->have_pin) {
			pthread_mutex_lock(&dialog_lock);
			rc = 0;
			if (!b->pe)
				rc = agent_pinentry_open(ps->cfg, &b->pe, ps->detail,
							 sizeof(ps->detail));
			if (!rc)
				rc = agent_pinentry_getpin(b->pe, tok, context_specific, ps->folio,
							   b->pin, sizeof(b->pin), ps->detail,
							   sizeof(ps->detail));
			pthread_mutex_unlock(&dialog_lock);
			if (rc)
				return rc;
			b->have_pin = true;
		}
		if (strlen(b->pin) >= pin_size)
			return FIRMANTE_E_PINENTRY;
		memcpy(pin, b->pin, strlen(b->pin) + 1);
		return 0;
	}
	if (!context_specific && agent_pincache_get(tok, pin, pin_size)) {
		ps->from_cache = true;
		return 0;
	}
	if (!ps->pe) {
		rc = agent_pinentry_open(ps->cfg, &ps->pe, ps->detail, sizeof(ps->detail));
		if (rc) {
			ps->pe = NULL;
			return rc;
		}
	}
	rc = agent_pinentry_getpin(ps->pe, tok, context_specific, ps->folio, pin, pin_size,
				   ps->detail, sizeof(ps->detail));
	if (!rc && !context_specific && strlen(pin) < sizeof(ps->fresh))
		memcpy(ps->fresh, pin, strlen(pin) + 1);
	return rc;
}

/*
 * Verification contexts of the certificates signed with, prepared once: a
 * certificate (DER, compared byte for byte) maps to an EVP_MD_CTX set up
 * for RSASSA-PKCS1-v1_5 with SHA-256 over its key (EVP_DigestVerifyInit
 * fetches the algorithms; a copy of the prepared context does not). A few
 * signers per agent at most; the oldest entry makes room.
 */
#define VERIFIER_CACHE 8
static struct {
	uint8_t *der;
	size_t len;
	EVP_MD_CTX *tmpl;
} verifiers[VERIFIER_CACHE];
static size_t verifiers_next;
static pthread_mutex_t verifiers_lock = PTHREAD_MUTEX_INITIALIZER;

/* A copy of the cached context of @der into @md; false when not cached.
 * Caller holds verifiers_lock. */
static bool verifier_copy(const uint8_t *der, size_t der_len, EVP_MD_CTX *md, bool *ok)
{
	for (size_t i = 0; i < VERIFIER_CACHE; i++)
		if (verifiers[i].tmpl && verifiers[i].len == der_len &&
		    memcmp(verifiers[i].der, der, der_len) == 0) {
			*ok = EVP_MD_CTX_copy_ex(md, verifiers[i].tmpl) == 1;
			return true;
		}
	return false;
}

/* A context over the RSA key of certificate @der, ready for
 * EVP_DigestVerify, prepared and cached when new. Returns 0, or
 * FIRMANTE_E_CERT_INVALID, FIRMANTE_E_TOKEN (not an RSA key, OpenSSL
 * failure), FIRMANTE_E_NOMEM. */
static int verifier_for(const uint8_t *der, size_t der_len, EVP_MD_CTX *md)
{
	const unsigned char *p = der;
	EVP_MD_CTX *tmpl = NULL;
	EVP_PKEY *pk = NULL;
	uint8_t *copy = NULL;
	bool found, ok = false;
	X509 *x;
	int rc = FIRMANTE_E_TOKEN;

	pthread_mutex_lock(&verifiers_lock);
	found = verifier_copy(der, der_len, md, &ok);
	pthread_mutex_unlock(&verifiers_lock);
	if (found)
		return ok ? 0 : FIRMANTE_E_TOKEN;
	x = d2i_X509(NULL, &p, (long)der_len);
	if (!x)
		return FIRMANTE_E_CERT_INVALID;
	pk = X509_get_pubkey(x);
	X509_free(x);
	if (!pk || EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA)
		goto out;
	tmpl = EVP_MD_CTX_new();
	copy = malloc(der_len ? der_len : 1);
	if (!tmpl || !copy) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	if (EVP_DigestVerifyInit(tmpl, NULL, EVP_sha256(), NULL, pk) != 1 ||
	    EVP_MD_CTX_copy_ex(md, tmpl) != 1)
		goto out;
	memcpy(copy, der, der_len);
	pthread_mutex_lock(&verifiers_lock);
	{
		size_t i = verifiers_next++ % VERIFIER_CACHE;

		free(verifiers[i].der);
		EVP_MD_CTX_free(verifiers[i].tmpl);
		verifiers[i].der = copy;
		verifiers[i].len = der_len;
		verifiers[i].tmpl = tmpl;
	}
	pthread_mutex_unlock(&verifiers_lock);
	copy = NULL;
	tmpl = NULL;
	rc = 0;
out:
	free(copy);
	EVP_MD_CTX_free(tmpl);
	EVP_PKEY_free(pk); /* the context holds its own reference */
	return rc;
}

/* RSASSA-PKCS1-v1_5 SHA-256 check of @sig over @data with the certificate's key. */
static int verify_sello(const uint8_t *der, size_t der_len, const char *data, size_t len,
			const uint8_t *sig, size_t sig_len)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int rc;

	if (!md)
		return FIRMANTE_E_NOMEM;
	rc = verifier_for(der, der_len, md);
	if (rc == 0 && EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)data, len) != 1)
		rc = FIRMANTE_E_TOKEN;
	EVP_MD_CTX_free(md);
	return rc;
}

/* The holder's decision on @job: through the approval queue
 * (`firmante approve`), or pinentry CONFIRM, whose dialog then stays open
 * (*@pe) for the PIN. Takes the dialog lock for pinentry (*@locked). */
static int ask_holder(struct agent *a, struct agent_sign_job *job, agent_pinentry **pe,
		      bool *locked, const char **decision)
{
	int rc;

	if (a->cfg->approval_queue) {
		rc = agent_queue_wait(a->cfg, agent_approval_content(job->approval),
				      job->client_fd, decision, job->detail, sizeof(job->detail));
		if (rc)
			return rc;
		/* Approved: the PIN dialog (if any) comes one at a time. */
		pthread_mutex_lock(&dialog_lock);
		*locked = true;
		return 0;
	}
	pthread_mutex_lock(&dialog_lock);
	*locked = true;
	rc = agent_pinentry_open(a->cfg, pe, job->detail, sizeof(job->detail));
	if (rc) {
		*pe = NULL;
		*decision = "not-asked";
		return rc;
	}
	rc = agent_pinentry_confirm(*pe, job->approval, job->detail, sizeof(job->detail));
	if (rc == FIRMANTE_E_USER_DENIED)
		*decision = agent_pinentry_timed_out(*pe) ? "timeout" : "denied";
	else if (rc)
		*decision = "not-asked";
	else
		*decision = "approved";
	return rc;
}

int agent_sign_one(struct agent *a, struct agent_sign_job *job)
{
	const struct fp11_identity *id = job->approval->identity;
	const struct agent_policy *pol;
	struct agent_audit_record rec;
	agent_pinentry *pe = NULL;
	struct pin_src ps;
	const char *decision = "none";
	char owner[FP11_OWNER_MAX];
	bool locked = false, reserved = false;
	size_t sig_len = sizeof(job->sig);
	int rc = 0, arc;

	memset(&ps, 0, sizeof(ps));
	ps.cfg = a->cfg;
	ps.folio = job->approval->folio_control ? job->approval->folio_control : "";
	pol = agent_policy_match(a->policies, job->caller);
	if (pol && pol->unattended) {
		decision = "unattended";
		if (!agent_policy_allows_key(pol, id->cert.no_certificado)) {
			snprintf(job->detail, sizeof(job->detail),
				 "caller \"%s\" may not sign with certificate %s (not among its keys)",
				 pol->name, id->cert.no_certificado);
			decision = "refused";
			rc = FIRMANTE_E_FORBIDDEN;
			goto out;
		}
		if (id->token.protected_auth_path) {
			snprintf(job->detail, sizeof(job->detail),
				 "token \"%s\" has a PIN pad; unattended signing needs a PIN from a file",
				 id->token.label);
			decision = "refused";
			rc = FIRMANTE_E_CONFIG;
			goto out;
		}
		rc = agent_policy_reserve(a->policies, pol, job->detail, sizeof(job->detail));
		if (rc) {
			decision = "refused";
			goto out;
		}
		reserved = true;
		ps.pol = pol;
		/* The policy's PIN comes from a root-only file at every login
		 * anyway: its login is kept (until another caller's request). */
		snprintf(owner, sizeof(owner), "policy:%s", pol->name);
		/* Unattended: a token in "final try" state is never tried. */
		rc = agent_token_sign_as(a->p11, id, owner, pin_cb, &ps, false,
					 (const uint8_t *)job->cadena, job->cadena_len, job->sig,
					 &sig_len);
	} else if (job->batch) {
		/* An item of a batch the holder approved (agent_approve_batch). */
		decision = "approved-batch";
		ps.batch = job->batch;
		/* The holder approved the batch and gave one PIN: the login is
		 * kept until the batch ends (agent_batch_end). */
		rc = agent_token_sign_as(a->p11, id, job->batch->id, pin_cb, &ps,
					 id->token.user_pin_final_try && !job->batch->have_pin,
					 (const uint8_t *)job->cadena, job->cadena_len, job->sig,
					 &sig_len);
		if (rc == FIRMANTE_E_PIN_INCORRECT || rc == FIRMANTE_E_PIN_LOCKED) {
			fm_wipe(job->batch->pin, sizeof(job->batch->pin));
			job->batch->have_pin = false;
		}
	} else {
		rc = ask_holder(a, job, &pe, &locked, &decision);
		if (rc)
			goto out;
		ps.pe = pe;
		pe = NULL; /* ps owns it now */
		/* With a live PIN-cache entry (the holder's opt-in) the login is
		 * kept as long as the entry lives; else it ends with the request. */
		bool cached = agent_pincache_owner(&id->token, owner, sizeof(owner));
		/* The confirmation showed the "final try" warning: approving it
		 * is the holder's explicit confirmation. */
		rc = agent_token_sign_as(a->p11, id, cached ? owner : NULL, pin_cb, &ps,
					 id->token.user_pin_final_try, (const uint8_t *)job->cadena,
					 job->cadena_len, job->sig, &sig_len);
		/* The entry may have been wiped while the token signed. */
		if (cached) {
			char now[FP11_OWNER_MAX];

			if (!agent_pincache_owner(&id->token, now, sizeof(now)) ||
			    strcmp(now, owner) != 0)
				fp11_drop_login(a->p11, &id->token, owner);
		}
		/* The PIN cache (opt-in per token) keeps only a PIN the token took. */
		if (!rc && ps.fresh[0])
			agent_pincache_put(&id->token, ps.fresh);
		else if (rc == FIRMANTE_E_PIN_INCORRECT || rc == FIRMANTE_E_PIN_LOCKED ||
			 rc == FIRMANTE_E_TOKEN_REMOVED)
			agent_pincache_forget(&id->token);
	}
	if (rc) {
		if (ps.detail[0])
			snprintf(job->detail, sizeof(job->detail), "%s", ps.detail);
		else if (rc == FIRMANTE_E_PIN_INCORRECT)
			snprintf(job->detail, sizeof(job->detail),
				 "token \"%s\" refused the PIN; nothing was signed and the agent does not retry",
				 id->token.label);
		else if (rc == FIRMANTE_E_PIN_FINAL_TRY)
			snprintf(job->detail, sizeof(job->detail),
				 "token \"%s\" allows one more PIN try only; the agent does not use it "
				 "without the holder's explicit confirmation", id->token.label);
		else if (rc == FIRMANTE_E_PIN_LOCKED)
			snprintf(job->detail, sizeof(job->detail), "the PIN of token \"%s\" is locked",
				 id->token.label);
		goto out;
	}
	/* A wrong signature never leaves the agent. */
	rc = verify_sello(id->cert_der, id->cert_len, job->cadena, job->cadena_len, job->sig,
			  sig_len);
	if (rc) {
		snprintf(job->detail, sizeof(job->detail),
			 "the token's signature does not verify against certificate %s; not returned",
			 id->cert.no_certificado);
		rc = FIRMANTE_E_TOKEN;
		goto out;
	}
	job->sig_len = sig_len;
out:
	if (rc && reserved)
		agent_policy_release(a->policies, pol);
	agent_pinentry_close(pe);
	agent_pinentry_close(ps.pe);
	fm_wipe(ps.fresh, sizeof(ps.fresh));
	if (locked)
		pthread_mutex_unlock(&dialog_lock);
	memset(&rec, 0, sizeof(rec));
	rec.event = "sign";
	rec.caller = job->caller;
	rec.policy = pol ? pol->name : NULL;
	rec.key = id->uri;
	rec.no_certificado = id->cert.no_certificado;
	rec.folio_control = job->approval->folio_control;
	rec.cadena_sha256 = job->cadena_sha256;
	rec.decision = decision;
	rec.batch = job->batch ? job->batch->id : NULL;
	rec.result = rc ? firmante_err_code(rc) : "signed";
	arc = job->defer_audit_sync && !rc ? agent_audit_append_deferred(a->audit, &rec) :
	      agent_audit_append(a->audit, &rec);
	if (arc && !rc) {
		/* No trace, no signature. */
		snprintf(job->detail, sizeof(job->detail),
			 "the audit record could not be written to %s; the signature is withheld",
			 agent_audit_path(a->audit));
		rc = arc;
	}
	if (rc) {
		fm_wipe(job->sig, sizeof(job->sig));
		job->sig_len = 0;
	}
	return rc;
}

int agent_pair_origin(struct agent *a, const struct agent_caller *caller, const char *code,
		      char token[65], char *detail, size_t detail_size)
{
	struct agent_audit_record rec;
	agent_pinentry *pe = NULL;
	const char *decision = "not-asked";
	char text[1024];
	int rc;

	if (pthread_mutex_trylock(&dialog_lock) != 0) {
		snprintf(detail, detail_size,
			 "another dialog is open for the holder; ask again once it is closed");
		return FIRMANTE_E_FORBIDDEN;
	}
	snprintf(text, sizeof(text),
		 "A web page asks to use your e.firma signing agent.\n"
		 "Page (origin): %s\n"
		 "Code: %.3s %.3s\n"
		 "Pair only if you opened this page yourself and it shows the same code.\n"
		 "Each signature it asks for will still need your approval.",
		 caller->origin, code, code + 3);
	rc = agent_pinentry_open(a->cfg, &pe, detail, detail_size);
	if (rc) {
		pe = NULL;
		goto out;
	}
	rc = agent_pinentry_ask(pe, text, "Pair", "Refuse", detail, detail_size);
	if (rc == FIRMANTE_E_USER_DENIED)
		decision = agent_pinentry_timed_out(pe) ? "timeout" : "denied";
	if (rc)
		goto out;
	decision = "approved";
	rc = agent_pairings_add(a->pairings, caller->origin, token);
	if (rc)
		snprintf(detail, detail_size, "the pairing could not be saved: %s",
			 firmante_err_title(rc));
out:
	agent_pinentry_close(pe);
	pthread_mutex_unlock(&dialog_lock);
	memset(&rec, 0, sizeof(rec));
	rec.event = "pair";
	rec.caller = caller;
	rec.origin = caller->origin;
	rec.decision = decision;
	rec.result = rc ? firmante_err_code(rc) : "paired";
	if (agent_audit_append(a->audit, &rec) != 0 && !rc) {
		agent_pairings_revoke(a->pairings, caller->origin);
		fm_wipe(token, 65);
		snprintf(detail, detail_size, "the audit record could not be written; not paired");
		rc = FIRMANTE_E_IO;
	}
	return rc;
}

int agent_approve_batch(struct agent *a, const struct agent_caller *caller,
			const struct fp11_identity *id, json_t *manifest, const char *text,
			struct agent_batch *b, char *detail, size_t detail_size)
{
	static unsigned long batch_seq;
	static pthread_mutex_t seq_lock = PTHREAD_MUTEX_INITIALIZER;
	const struct agent_policy *pol = agent_policy_match(a->policies, caller);
	struct agent_audit_record rec;
	const char *decision = "not-asked";
	char sha_note[160];
	json_t *content;
	int rc = 0;

	memset(b, 0, sizeof(*b));
	b->token = id->token;
	pthread_mutex_lock(&seq_lock);
	snprintf(b->id, sizeof(b->id), "batch-%ld-%lu", (long)a->started, ++batch_seq);
	pthread_mutex_unlock(&seq_lock);
	if (pol && pol->unattended) {
		b->unattended = true;
		decision = "unattended";
	} else if (a->cfg->approval_queue) {
		struct agent_approval ap;

		memset(&ap, 0, sizeof(ap));
		ap.caller = caller;
		ap.identity = id;
		content = agent_approval_content(&ap);
		if (content) {
			json_object_del(content, "title");
			json_object_set(content, "batch", manifest);
		}
		rc = agent_queue_wait(a->cfg, content, -1, &decision, detail, detail_size);
	} else {
		pthread_mutex_lock(&dialog_lock);
		rc = agent_pinentry_open(a->cfg, &b->pe, detail, detail_size);
		if (rc) {
			b->pe = NULL;
		} else {
			rc = agent_pinentry_ask(b->pe, text, "Sign all", "Refuse", detail,
						detail_size);
			if (rc == FIRMANTE_E_USER_DENIED)
				decision = agent_pinentry_timed_out(b->pe) ? "timeout" : "denied";
			else if (!rc)
				decision = "approved";
		}
		pthread_mutex_unlock(&dialog_lock);
	}
	snprintf(sha_note, sizeof(sha_note), "%s",
		 json_string_value(json_object_get(manifest, "manifestSha256")) ?
		 json_string_value(json_object_get(manifest, "manifestSha256")) : "");
	memset(&rec, 0, sizeof(rec));
	rec.event = "sign-batch";
	rec.caller = caller;
	rec.policy = pol ? pol->name : NULL;
	rec.key = id->uri;
	rec.no_certificado = id->cert.no_certificado;
	rec.cadena_sha256 = sha_note; /* the manifest: SHA-256 over the list of cadenas */
	rec.batch = b->id;
	rec.decision = decision;
	rec.result = rc ? firmante_err_code(rc) : "approved";
	if (agent_audit_append(a->audit, &rec) != 0 && !rc) {
		snprintf(detail, detail_size, "the audit record could not be written; nothing signed");
		rc = FIRMANTE_E_IO;
	}
	if (rc) {
		agent_pinentry_close(b->pe);
		b->pe = NULL;
	}
	return rc;
}

void agent_batch_end(struct agent *a, const struct agent_caller *caller, struct agent_batch *b,
		     const char *result, size_t signed_count, size_t total)
{
	struct agent_audit_record rec;
	char res[96];

	if (!b)
		return;
	agent_pinentry_close(b->pe);
	b->pe = NULL;
	fm_wipe(b->pin, sizeof(b->pin));
	b->have_pin = false;
	/* The login the holder gave for this batch ends with it. */
	if (!b->unattended)
		fp11_drop_login(a->p11, &b->token, b->id);
	snprintf(res, sizeof(res), "%s: %zu of %zu signed", result, signed_count, total);
	memset(&rec, 0, sizeof(rec));
	rec.event = "sign-batch-end";
	rec.caller = caller;
	rec.batch = b->id;
	rec.decision = !strcmp(result, "cancelled") ? "cancelled" : "none";
	rec.result = res;
	agent_audit_append(a->audit, &rec);
}
