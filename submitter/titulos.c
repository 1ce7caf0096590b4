/*
 * titulos: build, sign and verify Título Electrónico documents.
 *
 *   titulos build  --config institucion.conf --csv egresados.csv --out DIR
 *                  [--skip-invalid] [--registrados FILE] [--json]
 *   titulos sign   --config institucion.conf --in DIR --out DIR [--socket PATH]
 *   titulos verify [--autoridad-cer FILE] [--json] FILE...
 *   titulos show   [--json] FILE
 *   titulos codes  [--markdown]
 *
 * Exit status: 0 ok, 1 findings or invalid input, 2 usage, 3 agent or I/O
 * failure; 4 state database locked, 5 state database damaged (the MET
 * commands). See docs/titulos.md and docs/met.md.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "firmante/client.h"
#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "firmante/titulo.h"
#include "firmante/util.h"
#include "sign_batch.h"

enum { EXIT_OK = 0, EXIT_FINDINGS = 1, EXIT_USAGE = 2, EXIT_FAILURE_IO = 3 };

/* submit, status, results, cancel, report (cmd_met.c); -1 = not one of them. */
int titulos_cmd_met(const char *cmd, int argc, char **argv);
/* alta, qa-check, perfil, dgair (cmd_qa.c, docs/onboarding.md); -1 = not one of them. */
int titulos_cmd_onboarding(const char *cmd, int argc, char **argv);

#define MAX_PATH 4096

static void print_findings(const struct titulo_findings *f, const char *prefix)
{
	char line[1400];
	for (size_t i = 0; i < f->count; i++) {
		titulo_finding_format(&f->items[i], line, sizeof(line));
		if (prefix)
			fprintf(stderr, "%s: %s\n", prefix, line);
		else
			fprintf(stderr, "%s\n", line);
	}
	if (f->errors + f->warnings > f->count)
		fprintf(stderr, "%s%s(%zu more not shown)\n", prefix ? prefix : "", prefix ? ": " : "",
			f->errors + f->warnings - f->count);
}

/* Findings as a table for a terminal: row, column, severity, rule, field,
 * message (the file named once above). */
static void print_table(const struct titulo_findings *f, FILE *o)
{
	const char *file = NULL;
	for (size_t i = 0; i < f->count; i++) {
		const struct titulo_finding *x = &f->items[i];
		if (!file || strcmp(file, x->file) != 0) {
			file = x->file;
			fprintf(o, "%s\n  %5s %4s  %-8s %-28s %-32s %s\n", file[0] ? file : "(input)",
				"row", "col", "severity", "rule", "field", "message");
		}
		char row[24] = "", col[24] = "";
		if (x->row)
			snprintf(row, sizeof(row), "%lu", x->row);
		if (x->column)
			snprintf(col, sizeof(col), "%lu", x->column);
		fprintf(o, "  %5s %4s  %-8s %-28s %-32s %s\n", row, col,
			x->severity == TITULO_ERROR ? "error" : x->severity == TITULO_WARNING ? "warning" : "note",
			x->rule, x->field, x->message);
	}
	if (f->errors + f->warnings > f->count)
		fprintf(o, "(%zu more not shown)\n", f->errors + f->warnings - f->count);
}

/* Catalogs and configuration; reports problems. Returns an exit status. */
static int load_setup(const char *conf_path, titulo_catalogos **cat, struct titulo_config **conf)
{
	struct titulo_error err = { 0 };
	struct titulo_findings f = { 0 };
	int rc = titulo_catalogos_load(NULL, cat, &err);
	if (rc) {
		fprintf(stderr, "titulos: catalogs: %s%s%s\n", err.field, err.field[0] ? ": " : "",
			err.message);
		return EXIT_FAILURE_IO;
	}
	rc = titulo_config_load(conf_path, *cat, conf, &f);
	print_findings(&f, NULL);
	titulo_findings_clear(&f);
	if (rc) {
		if (rc == FIRMANTE_E_NOMEM)
			fprintf(stderr, "titulos: out of memory\n");
		else if (rc == FIRMANTE_E_IO)
			fprintf(stderr, "titulos: %s: the configuration cannot be read\n", conf_path);
		else
			fprintf(stderr, "titulos: %s: configuration not usable\n", conf_path);
		titulo_catalogos_free(*cat);
		*cat = NULL;
		/* a file that cannot be read is an I/O failure (3), as for the CSV */
		return rc == FIRMANTE_E_NOMEM || rc == FIRMANTE_E_IO ? EXIT_FAILURE_IO : EXIT_FINDINGS;
	}
	return EXIT_OK;
}

static int ensure_dir(const char *dir)
{
	if (mkdir(dir, 0755) == 0 || errno == EEXIST) {
		struct stat st;
		if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
			return 0;
	}
	return -1;
}

static int join_path(char *buf, size_t size, const char *dir, const char *name)
{
	int n = snprintf(buf, size, "%s/%s", dir, name);
	return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

/* ---- build ----------------------------------------------------------- */

static void usage_build(FILE *o)
{
	fprintf(o,
		"Usage: titulos build --config FILE --csv FILE --out DIR [--skip-invalid]\n"
		"                     [--registrados FILE] [--json]\n"
		"Build one unsigned Título Electrónico per CSV row as DIR/<folioControl>.xml.\n"
		"Every problem of the file is reported in one pass as\n"
		"file:row:column: field: message (a table on a terminal). Nothing is written\n"
		"when any row has an error, unless --skip-invalid is given.\n\n"
		"  -c, --config FILE       institution configuration (INI)\n"
		"  -i, --csv FILE          graduates, one title per row: UTF-8 (BOM or not) or\n"
		"                          Windows-1252, ',' or ';' between fields, header row\n"
		"  -o, --out DIR           output directory (created if missing)\n"
		"  -k, --skip-invalid      write the valid rows, list the rows left out\n"
		"  -r, --registrados FILE  folioControl values already recorded, one per line;\n"
		"                          a row reusing one is an error\n"
		"  -j, --json              findings and result as JSON on standard output\n"
		"  -h, --help              this help\n"
		"Every row is checked first (the CSV is read twice, in chunks). Titles are\n"
		"written under hidden .FOLIO.xml.PID.fmtmp names, synced once, and renamed\n"
		"when all were written: a write error leaves nothing, a killed build no\n"
		"partial title. DIR may not hold titles that are not in this CSV (titulos\n"
		"sign would sign them too).\n"
		"Exit status: 0 written, 1 errors in the input or a file over a limit (with\n"
		"--skip-invalid: rows were left out), 2 usage, 3 a file cannot be read or\n"
		"written. Rule codes: titulos codes.\n");
}

/* Folios already recorded: a sorted list read from a file. */
struct registrados {
	char **v;
	size_t n;
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int registrado(void *ctx, const char *folio)
{
	struct registrados *r = ctx;
	return bsearch(&folio, r->v, r->n, sizeof(*r->v), cmp_str) != NULL;
}

#define MAX_REGISTRADOS 1000000u

static int load_registrados(const char *path, struct registrados *r)
{
	char *buf = NULL;
	size_t len = 0;
	int rc = fm_read_file(path, 64u << 20, &buf, &len);
	if (rc)
		return rc;
	for (char *p = buf, *e; p < buf + len; p = e + 1) {
		e = memchr(p, '\n', (size_t)(buf + len - p));
		if (!e)
			e = buf + len;
		*e = '\0';
		char *end = e;
		while (end > p && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			continue;
		if (r->n >= MAX_REGISTRADOS) {
			free(buf);
			return FIRMANTE_E_TOO_LARGE;
		}
		char **v = realloc(r->v, (r->n + 1) * sizeof(*v));
		char *d = strdup(p);
		if (!v || !d) {
			free(d);
			if (v)
				r->v = v;
			free(buf);
			return FIRMANTE_E_NOMEM;
		}
		r->v = v;
		r->v[r->n++] = d;
	}
	free(buf);
	if (r->n)
		qsort(r->v, r->n, sizeof(*r->v), cmp_str);
	return 0;
}

static void free_registrados(struct registrados *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i]);
	free(r->v);
}

/* Titles in @dir that this batch does not write: titulos sign would sign
 * them too. Reports them; 0 when there are none, -1 otherwise. */
static int stale_titles(const char *dir, const struct titulo_build *tb)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0; /* created empty below, or reported when written */
	size_t stale = 0;
	char first[256] = "";
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		char folio[256];
		if (n <= 4 || e->d_name[0] == '.' || strcmp(e->d_name + n - 4, ".xml") != 0)
			continue;
		if (n - 4 < sizeof(folio)) {
			memcpy(folio, e->d_name, n - 4);
			folio[n - 4] = '\0';
			if (titulo_build_has_folio(tb, folio))
				continue;
		}
		if (!stale++)
			snprintf(first, sizeof(first), "%s", e->d_name);
	}
	closedir(d);
	if (!stale)
		return 0;
	fprintf(stderr, "titulos: %s already holds %zu title(s) that are not in this CSV (%s%s); "
		"titulos sign signs every .xml file of the directory: use an empty directory, or "
		"move those files away; nothing written\n",
		dir, stale, first, stale > 1 ? ", ..." : "");
	return -1;
}

/* titulos build: each title serialized and added to the batch of files. */
struct build_out {
	const char *dir;
	struct fm_batch *batch;
	json_t *written; /* --json: the paths, or NULL */
	size_t staged;
	int reported;    /* write_title said why it stopped */
};

static int write_title(void *ctx, const char *folio, unsigned long row, titulo **t)
{
	(void)row;
	struct build_out *o = ctx;
	char name[256], path[MAX_PATH];
	char *xml = NULL;
	size_t len = 0;
	int n = snprintf(name, sizeof(name), "%s.xml", folio);
	if (n < 0 || (size_t)n >= sizeof(name) || join_path(path, sizeof(path), o->dir, name) != 0) {
		fprintf(stderr, "titulos: %s: path too long\n", o->dir);
		o->reported = 1;
		return FIRMANTE_E_IO;
	}
	int rc = titulo_serialize(*t, &xml, &len);
	if (rc) {
		fprintf(stderr, "titulos: %s: cannot serialize: %s\n", folio, firmante_err_title(rc));
		o->reported = 1;
		return rc;
	}
	rc = fm_batch_add(o->batch, name, xml, len);
	free(xml);
	if (rc) {
		fprintf(stderr, "titulos: %s: cannot write: %s\n", path,
			rc == FIRMANTE_E_NOMEM ? "out of memory" : strerror(errno));
		o->reported = 1;
		return rc;
	}
	o->staged++;
	if (o->written)
		json_array_append_new(o->written, json_string(path));
	return 0;
}

static int cmd_build(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "csv", required_argument, NULL, 'i' },
		{ "out", required_argument, NULL, 'o' },
		{ "skip-invalid", no_argument, NULL, 'k' },
		{ "registrados", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *conf_path = NULL, *csv_path = NULL, *out_dir = NULL, *reg_path = NULL;
	int c, skip = 0, json = 0;
	while ((c = getopt_long(argc, argv, "c:i:o:kr:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': conf_path = optarg; break;
		case 'i': csv_path = optarg; break;
		case 'o': out_dir = optarg; break;
		case 'k': skip = 1; break;
		case 'r': reg_path = optarg; break;
		case 'j': json = 1; break;
		case 'h': usage_build(stdout); return EXIT_OK;
		default: usage_build(stderr); return EXIT_USAGE;
		}
	}
	if (!conf_path || !csv_path || !out_dir || optind != argc) {
		usage_build(stderr);
		return EXIT_USAGE;
	}

	int status;
	titulo_catalogos *cat = NULL;
	struct titulo_config *conf = NULL;
	struct titulo_build *tb = NULL;
	struct titulo_findings f = { 0 };
	struct registrados reg = { 0 };
	struct titulo_build_options bo = { .flags = skip ? TITULO_BUILD_SKIP_INVALID : 0 };
	json_t *written = NULL;
	if (reg_path) {
		int lr = load_registrados(reg_path, &reg);
		if (lr) {
			fprintf(stderr, "titulos: %s: cannot read the list of recorded folios: %s\n",
				reg_path, firmante_err_title(lr));
			status = EXIT_FAILURE_IO;
			goto out;
		}
		bo.folio_registered = registrado;
		bo.ctx = &reg;
	}
	status = load_setup(conf_path, &cat, &conf);
	if (status)
		goto out;
	int rc = titulo_build_check(conf, cat, csv_path, &bo, &tb, &f);
	size_t nskipped = 0;
	const unsigned long *skipped_rows = tb ? titulo_build_skipped(tb, &nskipped) : NULL;
	if (json) {
		char *js = NULL;
		if (titulo_findings_json(&f, &js) != 0) {
			status = EXIT_FAILURE_IO;
			goto out;
		}
		json_t *skipped = json_array();
		written = json_array();
		for (size_t i = 0; skipped && i < nskipped; i++)
			json_array_append_new(skipped, json_integer((json_int_t)skipped_rows[i]));
		json_t *o = json_pack("{s:s, s:I, s:I, s:o, s:o?, s:O?}", "file", csv_path,
				      "errors", (json_int_t)f.errors, "warnings",
				      (json_int_t)f.warnings, "findings", json_loads(js, 0, NULL),
				      "skipped", skipped, "written",
				      rc == 0 ? written : NULL);
		free(js);
		if (rc == 0 && o) {
			/* the file list is filled in below; printed at the end */
			json_object_set_new(o, "out", json_string(out_dir));
		}
		if (rc != 0 && o) {
			char *d = json_dumps(o, JSON_COMPACT);
			if (d)
				printf("%s\n", d);
			free(d);
		}
		json_decref(written);
		written = rc == 0 ? o : NULL;
		if (rc != 0)
			json_decref(o);
	} else if (isatty(STDERR_FILENO)) {
		print_table(&f, stderr);
	} else {
		print_findings(&f, NULL);
	}
	if (rc) {
		if (rc == FIRMANTE_E_INVALID) {
			fprintf(stderr, "titulos: %s: %zu error(s); nothing written\n", csv_path,
				f.errors);
			status = EXIT_FINDINGS;
		} else if (rc == FIRMANTE_E_IO) {
			fprintf(stderr, "titulos: %s: the file cannot be read; nothing written\n",
				csv_path);
			status = EXIT_FAILURE_IO;
		} else {
			fprintf(stderr, "titulos: %s: %s\n", csv_path, firmante_err_title(rc));
			status = EXIT_FAILURE_IO;
		}
		goto out;
	}
	if (ensure_dir(out_dir) != 0) {
		fprintf(stderr, "titulos: %s: cannot create the directory: %s\n", out_dir,
			strerror(errno));
		status = EXIT_FAILURE_IO;
		goto out;
	}
	if (stale_titles(out_dir, tb) != 0) {
		status = EXIT_FINDINGS;
		goto out;
	}
	/* every title to a temporary in the directory, one sync for all of
	 * them, then the renames: a failure leaves no title of this batch
	 * behind, a crash no partial title (fm_batch_open in util.h) */
	struct build_out bout = { .dir = out_dir,
				  .written = written ? json_object_get(written, "written") : NULL };
	if (fm_batch_open(out_dir, 0644, &bout.batch) != 0) {
		fprintf(stderr, "titulos: %s: cannot write: %s\n", out_dir, strerror(errno));
		status = EXIT_FAILURE_IO;
		goto out;
	}
	rc = titulo_build_each(tb, write_title, &bout);
	if (rc) {
		fm_batch_free(bout.batch); /* removes this batch's temporaries */
		if (!bout.reported)
			fprintf(stderr, "titulos: %s: %s since it was checked; build again once it "
				"is saved\n", csv_path,
				rc == FIRMANTE_E_NOMEM ? "out of memory"
						       : "the file cannot be read again or changed");
		fprintf(stderr, "titulos: %s: nothing written\n", out_dir);
		status = EXIT_FAILURE_IO;
		goto out;
	}
	size_t renamed = 0;
	rc = fm_batch_commit(bout.batch, &renamed);
	int commit_errno = errno;
	fm_batch_free(bout.batch);
	if (rc) {
		fprintf(stderr, "titulos: %s: cannot write: %s; %zu of %zu title(s) are in place, "
			"the others were not written\n", out_dir, strerror(commit_errno), renamed,
			titulo_build_count(tb));
		status = EXIT_FAILURE_IO;
		goto out;
	}
	status = nskipped ? EXIT_FINDINGS : EXIT_OK;
	if (written) {
		char *d = json_dumps(written, JSON_COMPACT);
		if (d)
			printf("%s\n", d);
		free(d);
	} else {
		printf("%zu title(s) written to %s (unsigned)\n", titulo_build_count(tb), out_dir);
		if (nskipped) {
			printf("%zu row(s) left out for errors (--skip-invalid):", nskipped);
			for (size_t i = 0; i < nskipped; i++)
				printf(" %lu", skipped_rows[i]);
			printf("\n");
		}
	}
out:
	json_decref(written);
	free_registrados(&reg);
	titulo_findings_clear(&f);
	titulo_build_free(tb);
	titulo_config_free(conf);
	titulo_catalogos_free(cat);
	return status;
}

/* ---- sign ------------------------------------------------------------ */

static void usage_sign(FILE *o)
{
	fprintf(o,
		"Usage: titulos sign --config FILE --in DIR --out DIR [--socket PATH] [--force]\n"
		"                    [--one-by-one]\n"
		"Ask the firmanted agent for the sello of every FirmaResponsable of every\n"
		"DIR/*.xml, verify the signed document, and write it to the output directory.\n"
		"Every title is checked first; then each signer signs all of its titles in one\n"
		"batch (POST /v1/sign-batch): one approval over a manifest, one PIN, a\n"
		"progress bar on a terminal. Each title is verified and written (atomically,\n"
		"never partial) as soon as its last sello arrives.\n"
		"Resuming: if a run stops (agent stopped, token removed, Ctrl-C), run the same\n"
		"command again. A title whose output file already holds exactly that title,\n"
		"signed, with sellos that verify is kept and not sent again; the others are\n"
		"signed. An output made from a different input is signed again and replaced.\n"
		"A batch paused by the agent (token removed) is shown, and so is its resume.\n"
		"--one-by-one: one request per sello instead (POST /v1/sign); stops at the\n"
		"first agent error, titles already signed stay written; it does not skip.\n\n"
		"  -c, --config FILE   institution configuration (signers and their keys)\n"
		"  -i, --in DIR        unsigned titles (from titulos build)\n"
		"  -o, --out DIR       signed titles (created if missing)\n"
		"  -f, --force         sign every title again, even those already signed in\n"
		"                      the output directory\n"
		"  -s, --socket PATH   agent socket (default $FIRMANTE_SOCKET or\n"
		"                      $XDG_RUNTIME_DIR/firmante/agent.sock)\n"
		"  -h, --help          this help\n");
}

/* ---- the signers' keys as the agent lists them (GET /v1/keys) ---------- */

/* What `titulos sign` checks of one configured signer's key before any
 * title is sent to the agent. */
struct signer_key {
	char curp[19];
	char kind[8];          /* "fiel", "csd" or "" */
	char not_before[11];   /* YYYY-MM-DD or "" */
	char not_after[11];
	char no_certificado[21];
	int found;
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode @in (RFC 3986) into @out; 0 or -1. */
static int pct_decode(const char *in, size_t n, char *out, size_t size, size_t *out_len)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (o + 1 >= size)
			return -1;
		if (in[i] == '%') {
			if (i + 2 >= n)
				return -1;
			int h = hexval(in[i + 1]), l = hexval(in[i + 2]);
			if (h < 0 || l < 0)
				return -1;
			out[o++] = (char)(h * 16 + l);
			i += 2;
		} else {
			out[o++] = in[i];
		}
	}
	out[o] = '\0';
	*out_len = o;
	return 0;
}

/* Does the key entry @k match every path attribute the configured URI
 * gives among token, serial, id and object (RFC 7512)? */
static int uri_matches(const char *uri, json_t *k)
{
	if (strncmp(uri, "pkcs11:", 7) != 0)
		return 0;
	const char *p = uri + 7;
	const char *end = strchr(p, '?');
	if (!end)
		end = p + strlen(p);
	const char *kuri = json_string_value(json_object_get(k, "uri"));
	if (kuri && strcmp(kuri, uri) == 0)
		return 1;
	json_t *tok = json_object_get(k, "token");
	while (p < end) {
		const char *semi = memchr(p, ';', (size_t)(end - p));
		const char *ae = semi ? semi : end;
		const char *eq = memchr(p, '=', (size_t)(ae - p));
		if (eq) {
			char name[32], val[512];
			size_t nl = (size_t)(eq - p), vl = 0;
			if (nl >= sizeof(name))
				return 0;
			memcpy(name, p, nl);
			name[nl] = '\0';
			if (pct_decode(eq + 1, (size_t)(ae - eq - 1), val, sizeof(val), &vl) != 0)
				return 0;
			const char *have = NULL, *want = val;
			char hex[2 * sizeof(val) + 1];
			if (strcmp(name, "token") == 0) {
				have = json_string_value(json_object_get(tok, "label"));
			} else if (strcmp(name, "serial") == 0) {
				have = json_string_value(json_object_get(tok, "serial"));
			} else if (strcmp(name, "object") == 0) {
				have = json_string_value(json_object_get(k, "label"));
			} else if (strcmp(name, "id") == 0) {
				for (size_t i = 0; i < vl; i++)
					snprintf(hex + 2 * i, 3, "%02x", (unsigned char)val[i]);
				hex[2 * vl] = '\0';
				want = hex;
				have = json_string_value(json_object_get(k, "id"));
			} else {
				have = val; /* type, manufacturer, model...: not compared */
			}
			if (!have || strcmp(have, want) != 0)
				return 0;
		}
		p = semi ? semi + 1 : end;
	}
	return 1;
}

/* For titulos alta (cmd_alta.c): the same matching of a configured URI. */
int titulos_uri_matches(const char *uri, json_t *k);
int titulos_uri_matches(const char *uri, json_t *k)
{
	return uri_matches(uri, k);
}

/* Ask the agent for its keys once and fill @keys[i] for conf->firmantes[i].
 * Returns 0 or an error (printed). */
static int load_signer_keys(firmante_client *cl, const struct titulo_config *conf,
			    struct signer_key *keys)
{
	char *reply = NULL;
	struct firmante_problem p = { 0 };
	int rc = firmante_client_request(cl, "GET", "/v1/keys", NULL, &reply, &p);
	if (rc) {
		fprintf(stderr, "titulos: agent: %s: %s\n", p.code[0] ? p.code : firmante_err_code(rc),
			p.detail[0] ? p.detail : (p.title[0] ? p.title : firmante_err_title(rc)));
		return rc;
	}
	json_t *root = json_loads(reply, 0, NULL);
	free(reply);
	json_t *arr = root ? json_object_get(root, "keys") : NULL;
	if (!json_is_array(arr)) {
		fprintf(stderr, "titulos: agent: the answer to GET /v1/keys has no key list\n");
		json_decref(root);
		return FIRMANTE_E_PROTOCOL;
	}
	for (size_t i = 0; i < conf->nfirmantes; i++) {
		size_t j;
		json_t *k;
		memset(&keys[i], 0, sizeof(keys[i]));
		json_array_foreach(arr, j, k)
		{
			if (!conf->firmantes[i].key || !uri_matches(conf->firmantes[i].key, k))
				continue;
			const char *v;
			keys[i].found = 1;
			if ((v = json_string_value(json_object_get(k, "curp"))))
				snprintf(keys[i].curp, sizeof(keys[i].curp), "%s", v);
			if ((v = json_string_value(json_object_get(k, "kind"))))
				snprintf(keys[i].kind, sizeof(keys[i].kind), "%s", v);
			if ((v = json_string_value(json_object_get(k, "not_before"))))
				snprintf(keys[i].not_before, sizeof(keys[i].not_before), "%.10s", v);
			if ((v = json_string_value(json_object_get(k, "not_after"))))
				snprintf(keys[i].not_after, sizeof(keys[i].not_after), "%.10s", v);
			if ((v = json_string_value(json_object_get(k, "no_certificado"))))
				snprintf(keys[i].no_certificado, sizeof(keys[i].no_certificado), "%s", v);
			break;
		}
	}
	json_decref(root);
	return 0;
}

/* The rules of a signer's key (§6, §7) on @date (YYYY-MM-DD); each
 * problem printed as a finding. Returns the number of problems. */
static int check_signer_key(const struct titulo_conf_firmante *cf, const struct signer_key *k,
			    const char *date, const char *what, const char *in_path)
{
	int expedition = strcmp(what, "today") != 0;
	struct titulo_findings f = { 0 };
	char field[320];
	snprintf(field, sizeof(field), "[firmante %s]", cf->seccion);
	if (!k->found) {
		titulo_finding_add(&f, "signer-key-missing", -1, cf->curp, in_path, 0, 0, field,
				   "the agent lists no key for %s; is the token plugged in?", cf->key);
	} else {
		if (!k->curp[0] || !cf->curp || strcmp(k->curp, cf->curp) != 0)
			titulo_finding_add(&f, "signer-curp-mismatch", -1, cf->curp, in_path, 0, 0, field,
					   "the configured CURP %s is not the CURP %s in the "
					   "certificate %s of key %s; the DGP refuses such a title "
					   "(\"La Curp del ... no es igual a\", §7)",
					   cf->curp ? cf->curp : "(none)",
					   k->curp[0] ? k->curp : "(none)", k->no_certificado, cf->key);
		if (strcmp(k->kind, "fiel") != 0)
			titulo_finding_add(&f, "signer-cert-not-fiel", -1, cf->curp, in_path, 0, 0,
					   field,
					   "the certificate %s of key %s is not an e.firma (FIEL) but "
					   "a %s; titles are signed with the holder's e.firma (§6)",
					   k->no_certificado, cf->key,
					   strcmp(k->kind, "csd") == 0 ? "CSD (sello digital)"
								     : "certificate of unknown kind");
		/* Calendar dates against the certificate's days: a title dated the
		 * day the certificate starts or ends is within it. */
		if (date && k->not_before[0] && k->not_after[0] &&
		    (strncmp(date, k->not_before, 10) < 0 || strncmp(date, k->not_after, 10) > 0))
			titulo_finding_add(&f, expedition ? "signer-cert-expedition" : "signer-cert-validity",
					   -1, cf->curp, in_path, 0, 0, field,
					   "the certificate %s is valid from %s to %s, not on %s (%s)",
					   k->no_certificado, k->not_before, k->not_after, date, what);
	}
	int n = (int)f.errors;
	print_findings(&f, "titulos");
	titulo_findings_clear(&f);
	return n;
}

static int xml_filter(const struct dirent *d)
{
	size_t n = strlen(d->d_name);
	return n > 4 && d->d_name[0] != '.' && strcmp(d->d_name + n - 4, ".xml") == 0;
}

static int sign_one(firmante_client *cl, titulo_verifier *v, const struct titulo_config *conf,
		    const struct signer_key *keys, const char *in_path, const char *out_path)
{
	int status;
	char *xml = NULL, *out = NULL;
	size_t len = 0, out_len = 0;
	titulo *t = NULL;
	struct titulo_error err = { 0 };
	struct titulo_findings f = { 0 };
	struct firmante_sello s = { 0 };

	int rc = fm_read_file(in_path, FIRMANTE_MAX_DOCUMENT, &xml, &len);
	if (rc) {
		fprintf(stderr, "titulos: %s: cannot read: %s\n", in_path,
			rc == FIRMANTE_E_TOO_LARGE ? "file too large" : strerror(errno));
		status = rc == FIRMANTE_E_TOO_LARGE ? EXIT_FINDINGS : EXIT_FAILURE_IO;
		goto out;
	}
	rc = titulo_parse(xml, len, &t, &err);
	if (rc) {
		fprintf(stderr, "titulos: %s:%d: %s%s%s\n", in_path, err.line, err.field,
			err.field[0] ? ": " : "", err.message);
		status = EXIT_FINDINGS;
		goto out;
	}
	const char *folio = titulo_attr(t, "TituloElectronico", "folioControl");
	const char *fexp = titulo_attr(t, "Expedicion", "fechaExpedicion");
	/* every signer's key checked before the agent is asked for anything */
	int problems = 0;
	for (size_t i = 0; i < titulo_firmantes_count(t); i++) {
		const char *curp = titulo_firmante_attr(t, i, "curp");
		const struct titulo_conf_firmante *cf = titulo_config_firmante_by_curp(conf, curp);
		if (cf)
			problems += check_signer_key(cf, &keys[cf - conf->firmantes], fexp,
						     "the title's fechaExpedicion", in_path);
	}
	if (problems) {
		fprintf(stderr, "titulos: %s: not sent to the agent\n", in_path);
		status = EXIT_FINDINGS;
		goto out;
	}
	for (size_t i = 0; i < titulo_firmantes_count(t); i++) {
		const char *curp = titulo_firmante_attr(t, i, "curp");
		const struct titulo_conf_firmante *cf = titulo_config_firmante_by_curp(conf, curp);
		if (!cf) {
			fprintf(stderr,
				"titulos: %s: FirmaResponsable[%zu] (%s): no [firmante] section with "
				"this curp in %s\n",
				in_path, i + 1, curp ? curp : "no curp", conf->path);
			status = EXIT_FINDINGS;
			goto out;
		}
		char request_id[FIRMANTE_MAX_REQUEST_ID];
		snprintf(request_id, sizeof(request_id), "titulo-%.60s-%.40s", folio ? folio : "",
			 cf->seccion);
		for (char *q = request_id; *q; q++)
			if (*q <= ' ' || *q > '~')
				*q = '_'; /* the agent takes printable ids only */
		struct firmante_problem p = { 0 };
		rc = firmante_client_sign_titulo(cl, xml, len, cf->key, request_id, &s, &p);
		if (rc) {
			fprintf(stderr,
				"titulos: %s: FirmaResponsable[%zu] (%s): agent: %s: %s\n", in_path, i + 1,
				curp, p.code[0] ? p.code : firmante_err_code(rc),
				p.detail[0] ? p.detail : (p.title[0] ? p.title : firmante_err_title(rc)));
			status = EXIT_FAILURE_IO;
			goto out;
		}
		if (s.firmante_index != (int)i || !curp || strcmp(s.curp, curp) != 0) {
			fprintf(stderr,
				"titulos: %s: FirmaResponsable[%zu] (%s): the agent signed for "
				"FirmaResponsable[%d] (%s); key %s belongs to another signer\n",
				in_path, i + 1, curp ? curp : "", s.firmante_index + 1, s.curp, cf->key);
			status = EXIT_FAILURE_IO;
			goto out;
		}
		rc = titulo_set_firma(t, i, s.sello, s.certificado, s.no_certificado);
		if (rc) {
			fprintf(stderr,
				"titulos: %s: FirmaResponsable[%zu] (%s): the agent's answer is "
				"malformed (sello, certificate or noCertificado)\n",
				in_path, i + 1, curp);
			status = EXIT_FAILURE_IO;
			goto out;
		}
		firmante_sello_clear(&s);
	}
	rc = titulo_serialize(t, &out, &out_len);
	if (rc) {
		fprintf(stderr, "titulos: %s: cannot serialize: %s\n", in_path, firmante_err_title(rc));
		status = EXIT_FAILURE_IO;
		goto out;
	}
	/* Verify what will be written: re-parsed from the serialized text (§6). */
	rc = titulo_verify(v, out, out_len, 0, &f);
	if (rc) {
		print_findings(&f, in_path);
		fprintf(stderr, "titulos: %s: signed document does not verify; not written\n",
			in_path);
		status = rc == FIRMANTE_E_INVALID ? EXIT_FINDINGS : EXIT_FAILURE_IO;
		goto out;
	}
	print_findings(&f, in_path);
	if (fm_write_file_atomic(out_path, out, out_len, 0644) != 0) {
		fprintf(stderr, "titulos: %s: cannot write: %s\n", out_path, strerror(errno));
		status = EXIT_FAILURE_IO;
		goto out;
	}
	printf("%s: signed (%zu sello(s)) -> %s\n", in_path, titulo_firmantes_count(t), out_path);
	status = EXIT_OK;
out:
	firmante_sello_clear(&s);
	titulo_findings_clear(&f);
	titulo_free(t);
	free(out);
	free(xml);
	return status;
}

/* The per-title key checks of sign_one(), for titulos_sign_batch(). */
struct sign_keys_ctx {
	const struct titulo_config *conf;
	const struct signer_key *keys;
};

static int check_title_keys(void *ctx, titulo *t, const char *in_path)
{
	const struct sign_keys_ctx *kc = ctx;
	const char *fexp = titulo_attr(t, "Expedicion", "fechaExpedicion");
	int problems = 0;
	for (size_t i = 0; i < titulo_firmantes_count(t); i++) {
		const struct titulo_conf_firmante *cf =
			titulo_config_firmante_by_curp(kc->conf, titulo_firmante_attr(t, i, "curp"));
		if (cf)
			problems += check_signer_key(cf, &kc->keys[cf - kc->conf->firmantes], fexp,
						     "the title's fechaExpedicion", in_path);
	}
	return problems;
}

static int sign_dir_batch(firmante_client *cl, titulo_verifier *v,
			  const struct titulo_config *conf, struct sign_keys_ctx *kc,
			  const char *in_dir, const char *out_dir, struct dirent **names, int n,
			  int force, struct titulos_sign_counts *counts)
{
	char **in = calloc((size_t)n, sizeof(*in)), **out = calloc((size_t)n, sizeof(*out));
	int status = EXIT_OK;
	for (int i = 0; in && out && i < n && status == EXIT_OK; i++) {
		in[i] = malloc(MAX_PATH);
		out[i] = malloc(MAX_PATH);
		if (!in[i] || !out[i] || join_path(in[i], MAX_PATH, in_dir, names[i]->d_name) ||
		    join_path(out[i], MAX_PATH, out_dir, names[i]->d_name)) {
			fprintf(stderr, "titulos: path too long\n");
			status = EXIT_FAILURE_IO;
		}
	}
	if (!in || !out)
		status = EXIT_FAILURE_IO;
	if (status == EXIT_OK)
		status = titulos_sign_batch(cl, v, conf, (const char *const *)in,
					    (const char *const *)out, (size_t)n, check_title_keys, kc,
					    force, counts);
	for (int i = 0; i < n; i++) {
		if (in)
			free(in[i]);
		if (out)
			free(out[i]);
	}
	free(in);
	free(out);
	return status;
}

static int cmd_sign(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "in", required_argument, NULL, 'i' },
		{ "out", required_argument, NULL, 'o' },
		{ "socket", required_argument, NULL, 's' },
		{ "one-by-one", no_argument, NULL, '1' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *conf_path = NULL, *in_dir = NULL, *out_dir = NULL, *sock = NULL;
	int c, one_by_one = 0, force = 0;
	while ((c = getopt_long(argc, argv, "c:i:o:s:fh", opts, NULL)) != -1) {
		switch (c) {
		case '1': one_by_one = 1; break;
		case 'f': force = 1; break;
		case 'c': conf_path = optarg; break;
		case 'i': in_dir = optarg; break;
		case 'o': out_dir = optarg; break;
		case 's': sock = optarg; break;
		case 'h': usage_sign(stdout); return EXIT_OK;
		default: usage_sign(stderr); return EXIT_USAGE;
		}
	}
	if (!conf_path || !in_dir || !out_dir || optind != argc) {
		usage_sign(stderr);
		return EXIT_USAGE;
	}
	int status;
	titulo_catalogos *cat = NULL;
	struct titulo_config *conf = NULL;
	titulo_verifier *v = NULL;
	firmante_client *cl = NULL;
	struct dirent **names = NULL;
	int n = 0;
	size_t signed_count = 0;
	struct titulo_error err = { 0 };
	struct signer_key *keys = NULL;

	status = load_setup(conf_path, &cat, &conf);
	if (status)
		goto out;
	if (titulo_verifier_new(NULL, &v, &err) != 0) {
		fprintf(stderr, "titulos: %s\n", err.message);
		status = EXIT_FAILURE_IO;
		goto out;
	}
	n = scandir(in_dir, &names, xml_filter, alphasort);
	if (n < 0) {
		fprintf(stderr, "titulos: %s: cannot read the directory: %s\n", in_dir,
			strerror(errno));
		status = EXIT_FAILURE_IO;
		goto out;
	}
	if (n == 0) {
		fprintf(stderr, "titulos: %s: no .xml files\n", in_dir);
		status = EXIT_FINDINGS;
		goto out;
	}
	if (ensure_dir(out_dir) != 0) {
		fprintf(stderr, "titulos: %s: cannot create the directory: %s\n", out_dir,
			strerror(errno));
		status = EXIT_FAILURE_IO;
		goto out;
	}
	int rc = firmante_client_new(sock, &cl);
	if (rc == FIRMANTE_E_CONFIG) {
		fprintf(stderr, "titulos: the agent socket path%s%s is too long (a Unix socket path "
			"has at most 107 bytes)\n", sock ? " " : " from $FIRMANTE_SOCKET or "
			"$XDG_RUNTIME_DIR", sock ? sock : "");
		status = EXIT_USAGE;
		goto out;
	} else if (rc) {
		fprintf(stderr, "titulos: agent client: %s\n", firmante_err_title(rc));
		status = EXIT_FAILURE_IO;
		goto out;
	}
	/* the signers' certificates as the agent sees them: CURP, e.firma,
	 * validity today (§6, §7); checked before anything is signed */
	keys = calloc(conf->nfirmantes, sizeof(*keys));
	if (!keys) {
		status = EXIT_FAILURE_IO;
		goto out;
	}
	rc = load_signer_keys(cl, conf, keys);
	if (rc) {
		status = EXIT_FAILURE_IO;
		goto out;
	}
	char today[16];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(today, sizeof(today), "%Y-%m-%d", &tm);
	int problems = 0;
	for (size_t i = 0; i < conf->nfirmantes; i++)
		problems += check_signer_key(&conf->firmantes[i], &keys[i], today, "today", conf->path);
	if (problems) {
		fprintf(stderr, "titulos: %d problem(s) with the signers' keys; nothing was sent to "
			"the agent\n", problems);
		status = EXIT_FINDINGS;
		goto out;
	}
	if (!one_by_one) {
		/* POST /v1/sign-batch: one approval and one PIN per signer (sign_batch.c) */
		struct sign_keys_ctx kc = { conf, keys };
		struct titulos_sign_counts counts = { 0 };
		status = sign_dir_batch(cl, v, conf, &kc, in_dir, out_dir, names, n, force, &counts);
		if (counts.kept)
			printf("%zu of %d title(s) signed into %s (%zu signed now, %zu kept from an "
			       "earlier run)\n", counts.written + counts.kept, n, out_dir,
			       counts.written, counts.kept);
		else
			printf("%zu of %d title(s) signed into %s\n", counts.written, n, out_dir);
		goto out;
	}
	status = EXIT_OK;
	for (int i = 0; i < n; i++) {
		char in_path[MAX_PATH], out_path[MAX_PATH];
		if (join_path(in_path, sizeof(in_path), in_dir, names[i]->d_name) ||
		    join_path(out_path, sizeof(out_path), out_dir, names[i]->d_name)) {
			fprintf(stderr, "titulos: path too long\n");
			status = EXIT_FAILURE_IO;
			break;
		}
		status = sign_one(cl, v, conf, keys, in_path, out_path);
		if (status)
			break;
		signed_count++;
	}
	printf("%zu of %d title(s) signed into %s\n", signed_count, n, out_dir);
out:
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(keys);
	firmante_client_free(cl);
	titulo_verifier_free(v);
	titulo_config_free(conf);
	titulo_catalogos_free(cat);
	return status;
}

/* ---- verify ---------------------------------------------------------- */

static void usage_verify(FILE *o)
{
	fprintf(o,
		"Usage: titulos verify [--autoridad-cer FILE] [--json] FILE|DIR...\n"
		"Check titles, ours or another system's, as the DGP would: encoding,\n"
		"namespace and element names, XSD, empty attributes and non-canonical values,\n"
		"and for every FirmaResponsable the sello over its cadena original, the\n"
		"certificate (e.firma), noCertificadoResponsable and curp. An Autenticacion\n"
		"node: selloTitulo against the responsables' sellos and, with the authority's\n"
		"certificate, selloAutenticacion.\n"
		"A directory stands for its *.xml files. A title that is not signed yet is\n"
		"said so once (titulo-unsigned); a file over 1 MiB is not a title (exit 1).\n"
		"Prints OK or each finding per file; exit 0 only when all pass.\n\n"
		"  -a, --autoridad-cer FILE  the authority's certificate (.cer, DER) for\n"
		"                            Autenticacion/@selloAutenticacion\n"
		"  -j, --json                one JSON object per file on standard output\n"
		"  -h, --help                this help\n");
}

/* Verify one file and print its result; *@status gets the worse exit
 * status. */
static void verify_path(titulo_verifier *v, const char *path, int json, int *status)
{
	char *xml = NULL;
	size_t len = 0;
	struct titulo_findings f = { 0 };
	int rc = fm_read_file(path, FIRMANTE_MAX_DOCUMENT, &xml, &len);
	if (rc == FIRMANTE_E_TOO_LARGE) {
		printf("%s: larger than %u MiB, the most a title may be: not a title\n", path,
		       FIRMANTE_MAX_DOCUMENT >> 20);
		if (*status == EXIT_OK)
			*status = EXIT_FINDINGS;
		return;
	}
	if (rc) {
		printf("%s: cannot read: %s\n", path,
		       rc == FIRMANTE_E_NOMEM ? "out of memory"
		       : errno == EINVAL      ? "not a regular file"
					      : strerror(errno));
		*status = EXIT_FAILURE_IO;
		return;
	}
	rc = titulo_verify(v, xml, len, 0, &f);
	char line[1400];
	if (rc != 0 && rc != FIRMANTE_E_INVALID) {
		printf("%s: cannot verify: %s\n", path, firmante_err_title(rc));
		*status = EXIT_FAILURE_IO;
	} else if (json) {
		char *js = NULL;
		if (titulo_findings_json(&f, &js) == 0) {
			json_t *o = json_pack("{s:s, s:b, s:I, s:I, s:o?}", "file", path, "ok",
					      rc == 0, "errors", (json_int_t)f.errors, "warnings",
					      (json_int_t)f.warnings, "findings", json_loads(js, 0, NULL));
			char *d = o ? json_dumps(o, JSON_COMPACT) : NULL;
			if (d)
				printf("%s\n", d);
			free(d);
			json_decref(o);
			free(js);
		}
	} else {
		if (rc == 0)
			printf("%s: OK\n", path);
		for (size_t k = 0; k < f.count; k++)
			printf("%s: %s\n", path, titulo_finding_format(&f.items[k], line, sizeof(line)));
		if (rc)
			printf("%s: FAILED (%zu error(s))\n", path, f.errors);
	}
	if (rc == FIRMANTE_E_INVALID && *status == EXIT_OK)
		*status = EXIT_FINDINGS;
	titulo_findings_clear(&f);
	free(xml);
}

static int cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "autoridad-cer", required_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c, json = 0;
	const char *aut = NULL;
	while ((c = getopt_long(argc, argv, "a:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'a': aut = optarg; break;
		case 'j': json = 1; break;
		case 'h': usage_verify(stdout); return EXIT_OK;
		default: usage_verify(stderr); return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage_verify(stderr);
		return EXIT_USAGE;
	}
	titulo_verifier *v = NULL;
	struct titulo_error err = { 0 };
	if (titulo_verifier_new(NULL, &v, &err) != 0) {
		fprintf(stderr, "titulos: %s\n", err.message);
		return EXIT_FAILURE_IO;
	}
	if (aut) {
		char *der = NULL;
		size_t dl = 0;
		int rc = fm_read_file(aut, 1u << 20, &der, &dl);
		if (rc == 0)
			rc = titulo_verifier_set_autoridad(v, (const uint8_t *)der, dl, &err);
		else
			snprintf(err.message, sizeof(err.message), "cannot read the file");
		free(der);
		if (rc) {
			fprintf(stderr, "titulos: %s: %s\n", aut, err.message);
			titulo_verifier_free(v);
			return rc == FIRMANTE_E_CERT_INVALID ? EXIT_USAGE : EXIT_FAILURE_IO;
		}
	}
	int status = EXIT_OK;
	for (int i = optind; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
			/* a directory: its *.xml files, as titulos sign takes them */
			struct dirent **names = NULL;
			int n = scandir(argv[i], &names, xml_filter, alphasort);
			if (n < 0) {
				printf("%s: cannot read the directory: %s\n", argv[i], strerror(errno));
				status = EXIT_FAILURE_IO;
				continue;
			}
			if (n == 0) {
				printf("%s: no .xml files in the directory\n", argv[i]);
				if (status == EXIT_OK)
					status = EXIT_FINDINGS;
			}
			for (int k = 0; k < n; k++) {
				char path[MAX_PATH];
				if (join_path(path, sizeof(path), argv[i], names[k]->d_name) != 0) {
					printf("%s/%s: path too long\n", argv[i], names[k]->d_name);
					status = EXIT_FAILURE_IO;
				} else {
					verify_path(v, path, json, &status);
				}
				free(names[k]);
			}
			free(names);
			continue;
		}
		verify_path(v, argv[i], json, &status);
	}
	titulo_verifier_free(v);
	return status;
}

/* ---- show ------------------------------------------------------------ */

static void usage_show(FILE *o)
{
	fprintf(o,
		"Usage: titulos show [--json] FILE\n"
		"Show a title for a person: folioControl, signers, institution, career,\n"
		"graduate, expedition, antecedent and Autenticacion. A document that cannot\n"
		"be read is diagnosed as by titulos verify (exit 1).\n\n"
		"  -j, --json   the title as one JSON object\n"
		"  -h, --help   this help\n");
}

static int cmd_show(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c, json = 0;
	while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = 1; break;
		case 'h': usage_show(stdout); return EXIT_OK;
		default: usage_show(stderr); return EXIT_USAGE;
		}
	}
	if (optind + 1 != argc) {
		usage_show(stderr);
		return EXIT_USAGE;
	}
	const char *path = argv[optind];
	char *xml = NULL, *text = NULL;
	size_t len = 0;
	titulo *t = NULL;
	struct titulo_error err = { 0 };
	struct titulo_findings f = { 0 };
	int status;
	int rc = fm_read_file(path, FIRMANTE_MAX_DOCUMENT, &xml, &len);
	if (rc) {
		fprintf(stderr, "titulos: %s: cannot read: %s\n", path,
			rc == FIRMANTE_E_TOO_LARGE ? "file larger than a title may be" : strerror(errno));
		status = EXIT_FAILURE_IO;
		goto out;
	}
	rc = titulo_parse(xml, len, &t, &err);
	if (rc) {
		/* say precisely why, as verify does */
		char line[1400];
		titulo_verify(NULL, xml, len, TITULO_VERIFY_UNSIGNED, &f);
		for (size_t k = 0; k < f.count; k++)
			fprintf(stderr, "%s: %s\n", path,
				titulo_finding_format(&f.items[k], line, sizeof(line)));
		if (f.count == 0)
			fprintf(stderr, "%s: %s\n", path, err.message);
		status = EXIT_FINDINGS;
		goto out;
	}
	rc = json ? titulo_show_json(t, &text) : titulo_show_text(t, &text);
	if (rc) {
		fprintf(stderr, "titulos: %s: %s\n", path, firmante_err_title(rc));
		status = EXIT_FAILURE_IO;
		goto out;
	}
	fputs(text, stdout);
	if (json)
		fputc('\n', stdout);
	status = EXIT_OK;
out:
	titulo_findings_clear(&f);
	free(text);
	titulo_free(t);
	free(xml);
	return status;
}

/* ---- codes ----------------------------------------------------------- */

static int cmd_codes(int argc, char **argv)
{
	int markdown = argc == 2 && strcmp(argv[1], "--markdown") == 0;
	if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		printf("Usage: titulos codes [--markdown]\n"
		       "List every rule titulos checks: its stable code, severity, where it is\n"
		       "checked, the rule and its source in the standard. --markdown prints the\n"
		       "table docs/titulos.md carries.\n");
		return EXIT_OK;
	}
	if (argc > 2 || (argc == 2 && !markdown)) {
		fprintf(stderr, "Usage: titulos codes [--markdown]\n");
		return EXIT_USAGE;
	}
	if (markdown) {
		char *md = NULL;
		if (titulo_rules_markdown(&md, NULL) != 0)
			return EXIT_FAILURE_IO;
		fputs(md, stdout);
		free(md);
		return EXIT_OK;
	}
	size_t n;
	const struct titulo_rule *r = titulo_rules(&n);
	for (size_t i = 0; i < n; i++)
		printf("%-30s %-8s %-14s %s (%s)\n", r[i].code,
		       r[i].severity == TITULO_ERROR ? "error" : r[i].severity == TITULO_WARNING ? "warning" : "note",
		       r[i].where, r[i].text, r[i].source);
	return EXIT_OK;
}

/* ---- main ------------------------------------------------------------- */

static void usage(FILE *o)
{
	fprintf(o,
		"Usage: titulos COMMAND [OPTIONS]\n"
		"Título Electrónico (SEP/DGP v1.0): build, sign and verify titles.\n\n"
		"Commands:\n"
		"  build    CSV of graduates + institution configuration -> unsigned XML\n"
		"  sign     add every signer's sello through the firmanted agent\n"
		"  verify   check signed XML files\n"
		"  submit   upload verified titles to the DGP (MET) in ZIP lots\n"
		"  status   follow uploaded lots to their result (--wait)\n"
		"  results  per-title outcome (--csv, --json)\n"
		"  cancel   cancel a registered title (--folio, --motivo)\n"
		"  report   counts by status and career\n"
		"  alta     registration kit for the DGP: workbook, signers' .cer, checklist\n"
		"  qa-check test lot to the QA service and a readiness report\n"
		"  perfil   mark a MET profile ready (production only after QA)\n"
		"  dgair    import titles authenticated by DGAIR or a state authority\n\n"
		"Run 'titulos COMMAND --help' for a command's options.\n"
		"Exit status: 0 ok, 1 findings or invalid input, 2 usage, 3 agent or I/O failure;\n"
		"the commands that use the state database also: 4 state database locked by\n"
		"another program, 5 state database damaged (see 'titulos submit --help').\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	if (strcmp(cmd, "build") == 0)
		return cmd_build(argc - 1, argv + 1);
	if (strcmp(cmd, "sign") == 0)
		return cmd_sign(argc - 1, argv + 1);
	if (strcmp(cmd, "verify") == 0)
		return cmd_verify(argc - 1, argv + 1);
	if (strcmp(cmd, "show") == 0)
		return cmd_show(argc - 1, argv + 1);
	if (strcmp(cmd, "codes") == 0)
		return cmd_codes(argc - 1, argv + 1);
	int met_status = titulos_cmd_met(cmd, argc - 1, argv + 1);
	if (met_status >= 0)
		return met_status;
	int onb_status = titulos_cmd_onboarding(cmd, argc - 1, argv + 1);
	if (onb_status >= 0)
		return onb_status;
	fprintf(stderr, "titulos: unknown command '%s'\n", cmd);
	usage(stderr);
	return EXIT_USAGE;
}
