/*
 * titulos sign through the agent's POST /v1/sign-batch (sign_batch.c).
 */
#ifndef TITULOS_SIGN_BATCH_H
#define TITULOS_SIGN_BATCH_H

#include <stddef.h>

#include "firmante/client.h"
#include "firmante/titulo-build.h"
#include "firmante/titulo.h"

/* Checks of one title before anything is sent (e.g. the signers' keys on
 * its fechaExpedicion); prints its findings and returns how many there are. */
typedef int (*titulos_sign_check_fn)(void *ctx, titulo *t, const char *in_path);

/* What titulos_sign_batch() did, also when it failed. */
struct titulos_sign_counts {
	size_t kept;    /* outputs that already held the title, signed and verified */
	size_t written; /* titles signed and written by this run */
};

/*
 * titulos_sign_batch - sign the titles of @in_paths (@n of them) and write
 * each to the matching @out_paths entry. Every title is read, parsed and
 * checked (@check, and every FirmaResponsable must have a [firmante]
 * section) before the agent is asked for anything; then each configured
 * signer signs all of its titles in one POST /v1/sign-batch (the holder
 * approves one manifest, enters one PIN), split only past 1000 titles or
 * 6 MiB of documents. A title is serialized, verified and written
 * atomically (fm_write_file_atomic) as soon as its last sello arrives, so
 * when the agent goes away mid-batch the titles already signed are on disk
 * and no output file is partial.
 * Resuming: unless @force, a title whose output file already exists is
 * kept and not sent when that file is exactly the input title with sellos
 * (the output's sellos put into the input serialize to the same bytes) and
 * verifies; any other existing output is signed again and replaced (a line
 * on stdout says why).
 * A progress bar goes to stderr when it is a terminal; otherwise one line
 * per batch and per title on stdout. When it stops after signing began, it
 * prints what was written, what was not, and how to resume.
 * @counts: titles kept and written (filled also on failure).
 * Returns the exit status: 0, 1 (findings; nothing sent, or a signed title
 * does not verify), 3 (agent or I/O error, message printed).
 */
int titulos_sign_batch(firmante_client *cl, titulo_verifier *v, const struct titulo_config *conf,
		       const char *const *in_paths, const char *const *out_paths, size_t n,
		       titulos_sign_check_fn check, void *check_ctx, int force,
		       struct titulos_sign_counts *counts);

#endif
