/*
 * titulos sign through POST /v1/sign-batch: every title is read and
 * checked first; then, per signer of the configuration, one batch (one
 * approval by the holder over a manifest, one PIN) with every title that
 * signer signs; then each title is serialized, verified and written. A
 * progress bar goes to stderr when it is a terminal.
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
};

struct sb_progress {
	struct sb_title *titles;
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
	bar(p);
	return 0;
}

/* One signer: every title holding its curp, in batches. */
static int sign_as(firmante_client *cl, const struct titulo_conf_firmante *cf,
		   struct sb_title *titles, size_t n, size_t *map, size_t *signed_titles)
{
	struct firmante_batch_doc *docs = NULL;
	struct sb_progress p;
	size_t total = 0;
	int status = SB_OK;

	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < titulo_firmantes_count(titles[i].t); k++) {
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
		rc = firmante_client_sign_batch(cl, cf->key, rid, docs, count, on_progress, &p, &got,
						&prob);
		if (p.tty)
			fputc('\n', stderr);
		if (rc) {
			if (!p.failed)
				fprintf(stderr, "titulos: signer %s (%s): agent: %s: %s\n", cf->seccion,
					cf->curp, prob.code[0] ? prob.code : firmante_err_code(rc),
					prob.detail[0] ? prob.detail : firmante_err_title(rc));
			status = SB_FAILURE_IO;
		}
		start += count;
	}
	free(docs);
	if (status == SB_OK)
		*signed_titles += total;
	return status;
}

int titulos_sign_batch(firmante_client *cl, titulo_verifier *v, const struct titulo_config *conf,
		       const char *const *in_paths, const char *const *out_paths, size_t n,
		       titulos_sign_check_fn check, void *check_ctx, size_t *written)
{
	struct sb_title *titles = NULL;
	size_t *map = NULL, sellos = 0, ok = 0;
	int status = SB_OK, problems = 0;

	*written = 0;
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
	}
	if (problems) {
		fprintf(stderr, "titulos: %d problem(s); nothing was sent to the agent\n", problems);
		status = SB_FINDINGS;
		goto out;
	}
	/* 2. one batch (or a few, for very large runs) per signer */
	for (size_t s = 0; s < conf->nfirmantes && status == SB_OK; s++)
		status = sign_as(cl, &conf->firmantes[s], titles, n, map, &sellos);
	if (status)
		goto out;
	/* 3. verify what will be written, then write */
	for (size_t i = 0; i < n; i++) {
		struct titulo_findings f = { 0 };
		char *out = NULL;
		size_t out_len = 0;
		int rc = titulo_serialize(titles[i].t, &out, &out_len);

		if (rc) {
			fprintf(stderr, "titulos: %s: cannot serialize: %s\n", titles[i].in_path,
				firmante_err_title(rc));
			status = SB_FAILURE_IO;
			break;
		}
		rc = titulo_verify(v, out, out_len, 0, &f);
		for (size_t k = 0; k < f.count; k++) {
			char line[1400];

			titulo_finding_format(&f.items[k], line, sizeof(line));
			fprintf(stderr, "%s: %s\n", titles[i].in_path, line);
		}
		titulo_findings_clear(&f);
		if (rc) {
			fprintf(stderr, "titulos: %s: signed document does not verify; not written\n",
				titles[i].in_path);
			free(out);
			status = rc == FIRMANTE_E_INVALID ? SB_FINDINGS : SB_FAILURE_IO;
			break;
		}
		if (fm_write_file_atomic(titles[i].out_path, out, out_len, 0644) != 0) {
			fprintf(stderr, "titulos: %s: cannot write: %s\n", titles[i].out_path,
				strerror(errno));
			free(out);
			status = SB_FAILURE_IO;
			break;
		}
		free(out);
		printf("%s: signed (%zu sello(s)) -> %s\n", titles[i].in_path,
		       titulo_firmantes_count(titles[i].t), titles[i].out_path);
		ok++;
	}
	*written = ok;
out:
	for (size_t i = 0; titles && i < n; i++) {
		titulo_free(titles[i].t);
		free(titles[i].xml);
	}
	free(titles);
	free(map);
	return status;
}
