/*
 * titulos sign through POST /v1/sign-batch: every title is read and
 * checked first; a title whose output already holds exactly this title
 * with sellos that verify is kept and skipped (an interrupted run resumes);
 * then, per signer of the configuration, one batch (one approval by the
 * holder over a manifest, one PIN) with every title that signer signs.
 * Each title is serialized, verified and written atomically as soon as its
 * last sello arrives, so an agent that goes away mid-batch loses nothing
 * already signed. A progress bar goes to stderr when it is a terminal.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "firmante/client.h"
#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "firmante/titulo.h"
#include "firmante/util.h"
#include "sign_batch.h"

enum { SB_OK = 0, SB_FINDINGS = 1, SB_FAILURE_IO = 3 };

/* Documents per request: the agent takes at most 1000 and 8 MiB of JSON. */
#define SB_MAX_DOCS 1000
#define SB_MAX_BYTES (6u * 1024u * 1024u)

struct sb_title {
	const char *in_path;
	const char *out_path;
	char *xml;
	size_t len;
	titulo *t;
	char rid[FIRMANTE_MAX_REQUEST_ID];
	size_t pending;  /* sellos still to come before the title is written */
	int kept;        /* the output already holds this title, signed and verified */
	int written;     /* written by this run */
};

/* What the run did so far, for the progress callback and the summary. */
struct sb_run {
	titulo_verifier *v;
	size_t written;   /* titles written by this run */
	int write_status; /* the exit status of a failed write or verification */
};

struct sb_progress {
	struct sb_title *titles;
	struct sb_run *run;
	size_t *map;           /* batch position -> title index */
	const char *curp;      /* the signer of this batch */
	const char *seccion;
	size_t done, total, base, count;
	int tty;
	int failed;
};

static void bar(const struct sb_progress *p)
{
	char line[64];
	size_t width = 30, fill = p->total ? (p->done * width) / p->total : width;

	if (!p->tty)
		return;
	memset(line, '#', fill);
	memset(line + fill, '.', width - fill);
	line[width] = '\0';
	fprintf(stderr, "\r%-16.16s [%s] %zu/%zu", p->seccion, line, p->done, p->total);
	fflush(stderr);
}

/* Serialize, verify and write one title whose sellos are all in. Returns 0
 * or the exit status (message printed). */
static int write_title(struct sb_run *run, struct sb_title *t, int tty)
{
	struct titulo_findings f = { 0 };
	char *out = NULL;
	size_t out_len = 0;
	int rc = titulo_serialize(t->t, &out, &out_len);

	if (rc) {
		fprintf(stderr, "%stitulos: %s: cannot serialize: %s\n", tty ? "\n" : "", t->in_path,
			firmante_err_title(rc));
		return SB_FAILURE_IO;
	}
	rc = titulo_verify(run->v, out, out_len, 0, &f);
	for (size_t k = 0; k < f.count; k++) {
		char line[1400];

		titulo_finding_format(&f.items[k], line, sizeof(line));
		fprintf(stderr, "%s%s: %s\n", tty && k == 0 ? "\n" : "", t->in_path, line);
	}
	titulo_findings_clear(&f);
	if (rc) {
		fprintf(stderr, "titulos: %s: signed document does not verify; not written\n",
			t->in_path);
		free(out);
		return rc == FIRMANTE_E_INVALID ? SB_FINDINGS : SB_FAILURE_IO;
	}
	if (fm_write_file_atomic(t->out_path, out, out_len, 0644) != 0) {
		fprintf(stderr, "%stitulos: %s: cannot write: %s\n", tty ? "\n" : "", t->out_path,
			strerror(errno));
		free(out);
		return SB_FAILURE_IO;
	}
	free(out);
	if (!tty)
		printf("%s: signed (%zu sello(s)) -> %s\n", t->in_path,
		       titulo_firmantes_count(t->t), t->out_path);
	t->written = 1;
	run->written++;
	return SB_OK;
}

static int on_progress(void *data, const struct firmante_batch_manifest *m, size_t index,
		       const char *doc_id, const struct firmante_sello *s,
		       const struct firmante_problem *prob)
{
	struct sb_progress *p = data;
	struct sb_title *t;
	size_t k;
	const char *curp;

	if (index == (size_t)-1) {
		if (!p->tty)
			printf("%s: the holder approved %zu title(s), folioControl %s to %s "
			       "(manifest SHA-256 %s)\n", p->seccion, m->count, m->first_folio,
			       m->last_folio, m->manifest_sha256);
		bar(p);
		return 0;
	}
	if (index >= p->count)
		return 1; /* not a document of this request */
	t = &p->titles[p->map[p->base + index]];
	if (prob) {
		if (p->tty)
			fputc('\n', stderr);
		fprintf(stderr, "titulos: %s: %s: agent: %s: %s\n", t->in_path, p->seccion,
			prob->code, prob->detail[0] ? prob->detail : prob->title);
		p->failed = 1;
		return 1;
	}
	/* The sello must be for this signer's FirmaResponsable. */
	for (k = 0; k < titulo_firmantes_count(t->t); k++) {
		curp = titulo_firmante_attr(t->t, k, "curp");
		if (curp && !strcmp(curp, p->curp))
			break;
	}
	if (k == titulo_firmantes_count(t->t) || s->firmante_index != (int)k ||
	    strcmp(s->curp, p->curp) != 0 || (doc_id && strcmp(doc_id, t->rid) != 0)) {
		fprintf(stderr, "titulos: %s: the agent signed for FirmaResponsable[%d] (%s); "
			"expected %s\n", t->in_path, s->firmante_index + 1, s->curp, p->curp);
		p->failed = 1;
		return 1;
	}
	if (titulo_set_firma(t->t, k, s->sello, s->certificado, s->no_certificado) != 0) {
		fprintf(stderr, "titulos: %s: the agent's answer is malformed\n", t->in_path);
		p->failed = 1;
		return 1;
	}
	p->done++;
	if (t->pending && --t->pending == 0) {
		int rc = write_title(p->run, t, p->tty);

		if (rc) {
			p->run->write_status = rc;
			p->failed = 1;
			return 1;
		}
	}
	bar(p);
	return 0;
}

/* "paused" / "resumed" lines of the batch stream, shown to the person. */
static void on_event(void *data, const char *event, const char *reason, size_t index,
		     const char *token_label, long timeout_s)
{
	const struct sb_progress *p = data;

	if (!event)
		return;
	if (p->tty)
		fputc('\n', stderr);
	if (!strcmp(event, "paused")) {
		char within[48] = "";

		if (timeout_s > 0)
			snprintf(within, sizeof(within), " within %ld s", timeout_s);
		fprintf(stderr, "titulos: %s: the agent paused the batch at title %zu of %zu: %s%s%s%s"
			"; put the token back in (any port)%s to go on\n", p->seccion, p->done + 1,
			p->total, reason && !strcmp(reason, "token-removed") ?
			"the token was removed" : (reason ? reason : "paused"),
			token_label ? " (token " : "", token_label ? token_label : "",
			token_label ? ")" : "", within);
	} else if (!strcmp(event, "resumed")) {
		fprintf(stderr, "titulos: %s: the token is back; the batch goes on at title %zu of "
			"%zu\n", p->seccion, p->done + 1, p->total);
	} else {
		fprintf(stderr, "titulos: %s: agent event \"%.40s\"\n", p->seccion, event);
	}
	(void)index;
	bar(p);
}

/* One signer: every title holding its curp, in batches. */
static int sign_as(firmante_client *cl, const struct titulo_conf_firmante *cf,
		   struct sb_title *titles, size_t n, size_t *map, struct sb_run *run)
{
	struct firmante_batch_doc *docs = NULL;
	struct sb_progress p;
	size_t total = 0;
	int status = SB_OK;

	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; !titles[i].kept && k < titulo_firmantes_count(titles[i].t); k++) {
			const char *curp = titulo_firmante_attr(titles[i].t, k, "curp");

			if (curp && !strcmp(curp, cf->curp)) {
				map[total++] = i;
				break;
			}
		}
	if (total == 0)
		return SB_OK;
	docs = calloc(total, sizeof(*docs));
	if (!docs)
		return SB_FAILURE_IO;
	memset(&p, 0, sizeof(p));
	p.titles = titles;
	p.run = run;
	p.map = map;
	p.curp = cf->curp;
	p.seccion = cf->seccion;
	p.total = total;
	p.tty = isatty(STDERR_FILENO);
	for (size_t start = 0; start < total && status == SB_OK;) {
		size_t count = 0, bytes = 0, got = 0;
		struct firmante_problem prob;
		char rid[96];
		int rc;

		while (start + count < total && count < SB_MAX_DOCS) {
			struct sb_title *t = &titles[map[start + count]];

			if (count && bytes + t->len * 2 > SB_MAX_BYTES)
				break;
			snprintf(t->rid, sizeof(t->rid), "titulo-%.60s-%.40s",
				 titulo_attr(t->t, "TituloElectronico", "folioControl") ?
				 titulo_attr(t->t, "TituloElectronico", "folioControl") : "",
				 cf->seccion);
			for (char *q = t->rid; *q; q++)
				if (*q <= ' ' || *q > '~')
					*q = '_';
			docs[count].id = t->rid;
			docs[count].xml = t->xml;
			docs[count].len = t->len;
			bytes += t->len * 2; /* JSON escaping */
			count++;
		}
		p.base = start;
		p.count = count;
		snprintf(rid, sizeof(rid), "titulos-%.40s-%zu", cf->seccion, start);
		for (char *q = rid; *q; q++)
			if (*q <= ' ' || *q > '~')
				*q = '_';
		memset(&prob, 0, sizeof(prob));
		firmante_client_set_batch_events(cl, on_event, &p);
		rc = firmante_client_sign_batch(cl, cf->key, rid, docs, count, on_progress, &p, &got,
						&prob);
		firmante_client_set_batch_events(cl, NULL, NULL);
		if (p.tty)
			fputc('\n', stderr);
		if (rc) {
			if (!p.failed)
				fprintf(stderr, "titulos: signer %s (%s): agent: %s: %s\n", cf->seccion,
					cf->curp, prob.code[0] ? prob.code : firmante_err_code(rc),
					prob.detail[0] ? prob.detail : firmante_err_title(rc));
			if (rc == FIRMANTE_E_PROTOCOL || rc == FIRMANTE_E_AGENT_UNREACHABLE ||
			    rc == FIRMANTE_E_TIMEOUT)
				fprintf(stderr, "titulos: the agent went away or stopped answering after "
					"%zu of %zu sello(s) of %s; start it again (firmanted) and "
					"run the same command to go on\n", p.done, total, cf->seccion);
			status = run->write_status ? run->write_status : SB_FAILURE_IO;
		}
		start += count;
	}
	free(docs);
	return status;
}

/*
 * Does @t->out_path already hold this very title, signed, and does it
 * verify? The output's sellos are put into the input title and the result
 * must serialize to the output's bytes exactly, so an output made from
 * another input (or edited afterwards) is never taken for this one. Returns
 * 1 (keep it), 0 (sign again; @why says why) or -1 (cannot read it).
 */
static int output_matches(titulo_verifier *v, struct sb_title *t, const char **why)
{
	struct titulo_error err = { 0 };
	struct titulo_findings f = { 0 };
	char *xml = NULL, *again = NULL;
	size_t len = 0, again_len = 0;
	titulo *done = NULL;
	int rc, match = 0;

	*why = NULL;
	rc = fm_read_file(t->out_path, FIRMANTE_MAX_DOCUMENT, &xml, &len);
	if (rc) {
		if (errno == ENOENT)
			return 0;
		if (rc == FIRMANTE_E_TOO_LARGE) {
			*why = "it is too large to be a title";
			return 0;
		}
		return -1;
	}
	if (titulo_parse(xml, len, &done, &err) != 0 ||
	    titulo_firmantes_count(done) != titulo_firmantes_count(t->t)) {
		*why = "it is not a signed copy of this title";
		goto out;
	}
	for (size_t k = 0; k < titulo_firmantes_count(done); k++) {
		const char *sello = titulo_firmante_attr(done, k, "sello");
		const char *cert = titulo_firmante_attr(done, k, "certificadoResponsable");
		const char *no = titulo_firmante_attr(done, k, "noCertificadoResponsable");

		if (!sello || !*sello || !cert || !*cert || !no || !*no) {
			*why = "it lacks a sello";
			goto out;
		}
		if (titulo_set_firma(t->t, k, sello, cert, no) != 0) {
			*why = "it is not a signed copy of this title";
			goto out;
		}
	}
	if (titulo_serialize(t->t, &again, &again_len) != 0 || again_len != len ||
	    memcmp(again, xml, len) != 0) {
		*why = "it was signed from a different unsigned title";
		goto out;
	}
	rc = titulo_verify(v, xml, len, 0, &f);
	titulo_findings_clear(&f);
	if (rc) {
		*why = "its sellos do not verify";
		goto out;
	}
	match = 1;
out:
	free(again);
	free(xml);
	titulo_free(done);
	return match;
}

int titulos_sign_batch(firmante_client *cl, titulo_verifier *v, const struct titulo_config *conf,
		       const char *const *in_paths, const char *const *out_paths, size_t n,
		       titulos_sign_check_fn check, void *check_ctx, int force,
		       struct titulos_sign_counts *counts)
{
	struct sb_title *titles = NULL;
	struct sb_run run = { .v = v };
	size_t *map = NULL, kept = 0;
	int status = SB_OK, problems = 0, started = 0;

	memset(counts, 0, sizeof(*counts));
	titles = calloc(n ? n : 1, sizeof(*titles));
	map = calloc(n ? n : 1, sizeof(*map));
	if (!titles || !map) {
		status = SB_FAILURE_IO;
		goto out;
	}
	/* 1. read and check everything before the agent is asked for anything */
	for (size_t i = 0; i < n; i++) {
		struct titulo_error err = { 0 };
		struct sb_title *t = &titles[i];
		int rc;

		t->in_path = in_paths[i];
		t->out_path = out_paths[i];
		rc = fm_read_file(t->in_path, FIRMANTE_MAX_DOCUMENT, &t->xml, &t->len);
		if (rc) {
			t->xml = NULL;
			fprintf(stderr, "titulos: %s: cannot read: %s\n", t->in_path,
				rc == FIRMANTE_E_TOO_LARGE ? "file too large" : strerror(errno));
			status = rc == FIRMANTE_E_TOO_LARGE ? SB_FINDINGS : SB_FAILURE_IO;
			goto out;
		}
		rc = titulo_parse(t->xml, t->len, &t->t, &err);
		if (rc) {
			t->t = NULL;
			fprintf(stderr, "titulos: %s:%d: %s%s%s\n", t->in_path, err.line, err.field,
				err.field[0] ? ": " : "", err.message);
			status = SB_FINDINGS;
			goto out;
		}
		for (size_t k = 0; k < titulo_firmantes_count(t->t); k++) {
			const char *curp = titulo_firmante_attr(t->t, k, "curp");

			if (!titulo_config_firmante_by_curp(conf, curp)) {
				fprintf(stderr, "titulos: %s: FirmaResponsable[%zu] (%s): no [firmante] "
					"section with this curp in %s\n", t->in_path, k + 1,
					curp ? curp : "no curp", conf->path);
				problems++;
			}
		}
		if (check)
			problems += check(check_ctx, t->t, t->in_path);
		for (size_t s = 0; s < conf->nfirmantes; s++)
			for (size_t k = 0; k < titulo_firmantes_count(t->t); k++) {
				const char *curp = titulo_firmante_attr(t->t, k, "curp");

				if (curp && !strcmp(curp, conf->firmantes[s].curp)) {
					t->pending++;
					break;
				}
			}
	}
	/* 1b. an interrupted run resumes: titles already signed are kept */
	for (size_t i = 0; !problems && !force && i < n; i++) {
		const char *why = NULL;
		int m = output_matches(v, &titles[i], &why);

		if (m < 0) {
			fprintf(stderr, "titulos: %s: cannot read: %s\n", titles[i].out_path,
				strerror(errno));
			status = SB_FAILURE_IO;
			goto out;
		}
		if (m == 1) {
			titles[i].kept = 1;
			kept++;
			continue;
		}
		if (!why)
			continue; /* no output yet */
		printf("%s: exists but %s; it is signed again and replaced\n",
		       titles[i].out_path, why);
		/* the output's sellos may have been copied in: start from the input */
		titulo_free(titles[i].t);
		titles[i].t = NULL;
		{
			struct titulo_error err = { 0 };

			if (titulo_parse(titles[i].xml, titles[i].len, &titles[i].t, &err) != 0) {
				fprintf(stderr, "titulos: %s:%d: %s\n", titles[i].in_path, err.line,
					err.message);
				status = SB_FINDINGS;
				goto out;
			}
		}
	}
	if (kept)
		printf("%zu title(s) already signed in the output and verified: kept, not signed "
		       "again (--force signs them again)\n", kept);
	if (problems) {
		fprintf(stderr, "titulos: %d problem(s); nothing was sent to the agent\n", problems);
		status = SB_FINDINGS;
		goto out;
	}
	/* 2. one batch (or a few, for very large runs) per signer; each title
	 * is written as soon as its last sello arrives */
	started = 1;
	for (size_t s = 0; s < conf->nfirmantes && status == SB_OK; s++)
		status = sign_as(cl, &conf->firmantes[s], titles, n, map, &run);
	/* a title no configured signer signs (cannot happen after the checks) */
	for (size_t i = 0; status == SB_OK && i < n; i++)
		if (!titles[i].kept && !titles[i].written) {
			fprintf(stderr, "titulos: %s: no sello arrived; not written\n",
				titles[i].in_path);
			status = SB_FAILURE_IO;
		}
out:
	for (size_t i = 0; titles && i < n; i++) {
		titulo_free(titles[i].t);
		free(titles[i].xml);
	}
	counts->kept = kept;
	counts->written = run.written;
	if (status && started) {
		size_t left = n - kept - run.written;

		fprintf(stderr, "titulos: stopped: %zu title(s) signed and written by this run, %zu "
			"already signed before, %zu not signed (nothing partial was written).\n",
			run.written, kept, left);
		if (left)
			fprintf(stderr, "titulos: to go on, run the same titulos sign command again: "
				"titles already signed in the output are verified and kept, only "
				"the %zu others are signed\n", left);
		if (left && titles && n)
			for (size_t i = 0, shown = 0; i < n && shown < 5; i++)
				if (!titles[i].kept && !titles[i].written) {
					fprintf(stderr, "titulos:   not signed: %s%s\n", titles[i].in_path,
						shown == 4 && left > 5 ? " (and others)" : "");
					shown++;
				}
	}
	free(titles);
	free(map);
	return status;
}
