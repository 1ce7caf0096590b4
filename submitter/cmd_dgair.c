/*
 * titulos dgair import: titles returned by DGAIR (or a state education
 * authority) with their Autenticacion node (met-web-service.md §9;
 * titulo-electronico.md §11). Each file is checked against what we signed
 * and recorded as authenticated, or the differences are named.
 * See docs/onboarding.md.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "firmante/titulo.h"
#include "firmante/util.h"
#include "onboarding.h"
#include "state.h"

enum { EXIT_OK = 0, EXIT_FINDINGS = 1, EXIT_USAGE = 2, EXIT_FAILURE_IO = 3 };

#define DGAIR_PATH 4096
#define DGAIR_MAX_FILES 10000u      /* files in one import */
#define DGAIR_MAX_DIFFS 20          /* differences named per title */
#define DGAIR_MAX_CERT (64u * 1024u)

int onboarding_default_state(char *buf, size_t size);
int onboarding_cmd_dgair(int argc, char **argv);

static void usage_dgair(FILE *o)
{
	fprintf(o,
		"Usage: titulos dgair import --autoridad-cer FILE [--firmados DIR] [--state FILE]\n"
		"                            FILE.xml...\n"
		"Import titles authenticated by DGAIR (or a state education authority): each\n"
		"file must carry the Autenticacion node, whose selloAutenticacion verifies with\n"
		"the authority's certificate over ||version|folioDigital|fechaAutenticacion|\n"
		"selloTitulo|noCertificadoAutoridad||, whose selloTitulo is our responsables'\n"
		"sellos joined in document order, and whose folioDigital is a UUID; and the rest\n"
		"of the title must be exactly the title we signed (every attribute, sellos and\n"
		"certificates included). The title we signed is the one recorded by titulos\n"
		"submit in the state database, or DIR/<folioControl>.xml with --firmados.\n"
		"The published XSD declares no attributes for Autenticacion: the title is\n"
		"validated against the XSD without that node, and the node on its own rules.\n"
		"Accepted titles are recorded as authenticated; for the others every\n"
		"difference is named. Exit status 0 when every file was accepted.\n\n"
		"  -a, --autoridad-cer FILE  the authority's certificate (.cer, DER or PEM)\n"
		"  -f, --firmados DIR        signed titles to compare with, when they are not in\n"
		"                            the state database\n"
		"  --state FILE              state database (default\n"
		"                            $XDG_DATA_HOME/firmante/titulos.db)\n"
		"  -h, --help                this help\n");
}

struct diffs {
	size_t n, more;
	char line[DGAIR_MAX_DIFFS][600];
};

__attribute__((format(printf, 2, 3)))
static void diff_add(struct diffs *d, const char *fmt, ...)
{
	if (d->n >= DGAIR_MAX_DIFFS) {
		d->more++;
		return;
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->line[d->n++], sizeof(d->line[0]), fmt, ap);
	va_end(ap);
}

/* A value for a message: Base64 sellos and certificates are long, so show
 * only their length and first characters. */
static void shown(const char *v, char *out, size_t size)
{
	if (!v)
		snprintf(out, size, "(absent)");
	else if (strlen(v) > 80)
		snprintf(out, size, "'%.24s...' (%zu characters)", v, strlen(v));
	else
		snprintf(out, size, "'%s'", v);
}

static void compare_attrs(const char *where, json_t *ours, json_t *theirs, struct diffs *d)
{
	const char *k;
	json_t *v;
	json_object_foreach(ours, k, v)
	{
		json_t *w = json_object_get(theirs, k);
		if (json_is_string(v) && (!json_is_string(w) ||
					  strcmp(json_string_value(v), json_string_value(w)) != 0)) {
			char a[160], b[160];
			shown(json_string_value(v), a, sizeof(a));
			shown(json_string_value(w), b, sizeof(b));
			diff_add(d, "%s/@%s: we signed %s, the returned title has %s", where, k, a, b);
		}
	}
	json_object_foreach(theirs, k, v)
	{
		if (!json_object_get(ours, k) && json_is_string(v)) {
			char b[160];
			shown(json_string_value(v), b, sizeof(b));
			diff_add(d, "%s/@%s: not in the title we signed, the returned title has %s",
				 where, k, b);
		}
	}
}

/* Every element and attribute except Autenticacion, compared. */
static void compare_titles(json_t *ours, json_t *theirs, struct diffs *d)
{
	/* the root's own attributes */
	json_t *ra = json_object(), *rb = json_object();
	const char *k;
	json_t *v;
	json_object_foreach(ours, k, v) if (json_is_string(v)) json_object_set(ra, k, v);
	json_object_foreach(theirs, k, v) if (json_is_string(v)) json_object_set(rb, k, v);
	compare_attrs("TituloElectronico", ra, rb, d);
	json_decref(ra);
	json_decref(rb);
	json_t *fa = json_object_get(ours, "FirmaResponsables");
	json_t *fb = json_object_get(theirs, "FirmaResponsables");
	size_t na = json_array_size(fa), nb = json_array_size(fb);
	if (na != nb)
		diff_add(d, "FirmaResponsables: we signed %zu FirmaResponsable, the returned title has "
			    "%zu", na, nb);
	for (size_t i = 0; i < na && i < nb; i++) {
		char where[64];
		snprintf(where, sizeof(where), "FirmaResponsable[%zu]", i + 1);
		compare_attrs(where, json_array_get(fa, i), json_array_get(fb, i), d);
	}
	json_object_foreach(ours, k, v)
	{
		if (!json_is_object(v) || strcmp(k, "Autenticacion") == 0)
			continue;
		json_t *w = json_object_get(theirs, k);
		if (!json_is_object(w))
			diff_add(d, "%s: the returned title has no such element", k);
		else
			compare_attrs(k, v, w, d);
	}
	json_object_foreach(theirs, k, v)
		if (json_is_object(v) && strcmp(k, "Autenticacion") != 0 && !json_object_get(ours, k))
			diff_add(d, "%s: an element the title we signed does not have", k);
}

static int show_json(const titulo *t, json_t **out)
{
	char *s = NULL;
	int rc = titulo_show_json(t, &s);
	if (rc)
		return rc;
	*out = json_loads(s, 0, NULL);
	free(s);
	return *out ? 0 : FIRMANTE_E_NOMEM;
}

/* The title we signed under @folio: from the state, else @firmados. */
static int load_ours(met_state *st, const char *firmados, const char *folio, char **xml,
		     size_t *len, char *path, size_t psize, char *why, size_t wsize)
{
	struct met_title mt;
	struct met_error e = { 0 };
	int rc = met_state_title_get(st, folio, &mt, &e);
	if (rc == 0) {
		char sha[65] = "";
		snprintf(path, psize, "%s", mt.path);
		if (fm_read_file(mt.path, FIRMANTE_MAX_DOCUMENT, xml, len) != 0) {
			snprintf(why, wsize, "the title we signed, %.700s, cannot be read: %s", mt.path,
				 strerror(errno));
			return FIRMANTE_E_IO;
		}
		fm_sha256_hex(*xml, *len, sha);
		if (strcmp(sha, mt.sha256) != 0) {
			free(*xml);
			*xml = NULL;
			snprintf(why, wsize, "the title we signed, %.700s, changed since it was recorded",
				 mt.path);
			return FIRMANTE_E_INVALID;
		}
		return 0;
	}
	if (rc != FIRMANTE_E_NOT_FOUND) {
		snprintf(why, wsize, "%s", e.message);
		return rc;
	}
	if (!firmados) {
		snprintf(why, wsize, "folioControl %s is not in the state database; give the signed "
				     "titles with --firmados DIR", folio);
		return FIRMANTE_E_NOT_FOUND;
	}
	if (snprintf(path, psize, "%s/%s.xml", firmados, folio) >= (int)psize ||
	    fm_read_file(path, FIRMANTE_MAX_DOCUMENT, xml, len) != 0) {
		snprintf(why, wsize, "the title we signed for folioControl %s is neither in the state "
				     "database nor in %s", folio, path);
		return FIRMANTE_E_NOT_FOUND;
	}
	return 0;
}

/* One file: 0 accepted and recorded, EXIT_FINDINGS refused, EXIT_FAILURE_IO. */
static int import_one(met_state *st, titulo_verifier *v, const char *firmados, const char *file)
{
	char *xml = NULL, *ours_xml = NULL, ours_path[DGAIR_PATH + 200] = "", why[900] = "";
	size_t len = 0, ours_len = 0;
	titulo *t = NULL, *ours = NULL;
	json_t *ja = NULL, *jb = NULL;
	struct titulo_error terr = { 0 };
	struct titulo_findings f = { 0 };
	struct diffs *d = calloc(1, sizeof(*d));
	int status = EXIT_FINDINGS;
	if (!d) {
		fprintf(stderr, "titulos: out of memory\n");
		return EXIT_FAILURE_IO;
	}
	if (fm_read_file(file, FIRMANTE_MAX_DOCUMENT, &xml, &len) != 0) {
		fprintf(stderr, "titulos: %s: cannot read: %s\n", file, strerror(errno));
		status = EXIT_FAILURE_IO;
		goto out;
	}
	if (titulo_parse(xml, len, &t, &terr) != 0) {
		fprintf(stderr, "titulos: %s: refused: not a readable Título Electrónico: line %d: "
				"%s%s%s\n", file, terr.line, terr.field, terr.field[0] ? ": " : "",
			terr.message);
		t = NULL;
		goto out;
	}
	const char *folio = titulo_attr(t, "TituloElectronico", "folioControl");
	const char *fd = titulo_attr(t, "Autenticacion", "folioDigital");
	const char *fa = titulo_attr(t, "Autenticacion", "fechaAutenticacion");
	const char *ver = titulo_attr(t, "Autenticacion", "version");
	const char *nca = titulo_attr(t, "Autenticacion", "noCertificadoAutoridad");
	const char *st_sello = titulo_attr(t, "Autenticacion", "selloTitulo");
	if (!titulo_element_present(t, "Autenticacion") || !st_sello) {
		fprintf(stderr, "titulos: %s: refused: the title has no Autenticacion node with the "
				"authority's attributes; it is not an authenticated title\n", file);
		goto out;
	}
	/* 1. the node's own rules and the whole title as the DGP checks it */
	int rc = titulo_verify(v, xml, len, 0, &f);
	if (rc == FIRMANTE_E_NOMEM || rc == FIRMANTE_E_INTERNAL) {
		fprintf(stderr, "titulos: %s: the check could not run: %s\n", file,
			firmante_err_title(rc));
		status = EXIT_FAILURE_IO;
		goto out;
	}
	int sello_ok = 0;
	for (size_t i = 0; i < f.count; i++) {
		char line[1400];
		if (strcmp(f.items[i].rule, "autenticacion-sello-ok") == 0)
			sello_ok = 1;
		if (f.items[i].severity != TITULO_NOTE)
			diff_add(d, "%s", titulo_finding_format(&f.items[i], line, sizeof(line)));
	}
	if (!sello_ok && rc == 0)
		diff_add(d, "Autenticacion/@selloAutenticacion: not verified with the authority's "
			    "certificate");
	if (!ver || strcmp(ver, "1.0") != 0)
		diff_add(d, "Autenticacion/@version: '%s', must be 1.0 (§11)", ver ? ver : "");
	if (!alta_is_uuid(fd))
		diff_add(d, "Autenticacion/@folioDigital: '%s' is not a UUID (RFC 4122, "
			    "8-4-4-4-12 hexadecimal digits; §11)", fd ? fd : "");
	if (!fa || !*fa)
		diff_add(d, "Autenticacion/@fechaAutenticacion: missing (§11)");
	/* 2. the same title we signed, byte for byte in every attribute */
	if (!folio) {
		diff_add(d, "TituloElectronico/@folioControl: missing");
	} else if (load_ours(st, firmados, folio, &ours_xml, &ours_len, ours_path,
			     sizeof(ours_path), why, sizeof(why)) != 0) {
		diff_add(d, "%s", why);
	} else if (titulo_parse(ours_xml, ours_len, &ours, &terr) != 0) {
		ours = NULL;
		diff_add(d, "the title we signed, %s, cannot be read: %s", ours_path, terr.message);
	} else {
		/* selloTitulo against the sellos WE made, in our document order */
		size_t total = 0;
		for (size_t i = 0; i < titulo_firmantes_count(ours); i++) {
			const char *s = titulo_firmante_attr(ours, i, "sello");
			total += s ? strlen(s) : 0;
		}
		char *joined = calloc(1, total + 1);
		if (!joined) {
			status = EXIT_FAILURE_IO;
			goto out;
		}
		for (size_t i = 0, at = 0; i < titulo_firmantes_count(ours); i++) {
			const char *s = titulo_firmante_attr(ours, i, "sello");
			size_t n = s ? strlen(s) : 0;
			memcpy(joined + at, s ? s : "", n);
			at += n;
		}
		if (strcmp(joined, st_sello) != 0)
			diff_add(d, "Autenticacion/@selloTitulo: not the sellos we signed joined in "
				    "document order (%zu FirmaResponsable sellos, %zu characters; the "
				    "node has %zu characters)", titulo_firmantes_count(ours), total,
				 strlen(st_sello));
		free(joined);
		if (show_json(ours, &ja) != 0 || show_json(t, &jb) != 0) {
			status = EXIT_FAILURE_IO;
			goto out;
		}
		compare_titles(ja, jb, d);
	}
	if (d->n) {
		fprintf(stderr, "titulos: %s: refused (folioControl %s):\n", file,
			folio ? folio : "(none)");
		for (size_t i = 0; i < d->n; i++)
			fprintf(stderr, "  %s\n", d->line[i]);
		if (d->more)
			fprintf(stderr, "  (%zu more differences not shown)\n", d->more);
		goto out;
	}
	/* 3. record */
	struct met_autenticado a;
	struct met_error e = { 0 };
	memset(&a, 0, sizeof(a));
	snprintf(a.folio, sizeof(a.folio), "%s", folio);
	snprintf(a.folio_digital, sizeof(a.folio_digital), "%s", fd);
	snprintf(a.fecha_autenticacion, sizeof(a.fecha_autenticacion), "%s", fa);
	snprintf(a.no_certificado_autoridad, sizeof(a.no_certificado_autoridad), "%s",
		 nca ? nca : "");
	char *abs = realpath(file, NULL);
	snprintf(a.path, sizeof(a.path), "%s", abs ? abs : file);
	free(abs);
	fm_sha256_hex(xml, len, a.sha256);
	if (met_state_autenticado_record(st, &a, &e) != 0) {
		fprintf(stderr, "titulos: %s: %s\n", file, e.message);
		status = EXIT_FAILURE_IO;
		goto out;
	}
	printf("%s: authenticated: folioControl %s, folioDigital %s, fechaAutenticacion %s, "
	       "noCertificadoAutoridad %s\n", file, a.folio, a.folio_digital,
	       a.fecha_autenticacion, a.no_certificado_autoridad);
	status = EXIT_OK;
out:
	json_decref(ja);
	json_decref(jb);
	titulo_free(t);
	titulo_free(ours);
	titulo_findings_clear(&f);
	free(xml);
	free(ours_xml);
	free(d);
	return status;
}

static int cmd_import(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "autoridad-cer", required_argument, NULL, 'a' },
		{ "firmados", required_argument, NULL, 'f' },
		{ "state", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cer = NULL, *firmados = NULL;
	char state_path[DGAIR_PATH] = "";
	int o;
	while ((o = getopt_long(argc, argv, "a:f:h", opts, NULL)) != -1) {
		switch (o) {
		case 'a': cer = optarg; break;
		case 'f': firmados = optarg; break;
		case 'S': snprintf(state_path, sizeof(state_path), "%s", optarg); break;
		case 'h': usage_dgair(stdout); return EXIT_OK;
		default: usage_dgair(stderr); return EXIT_USAGE;
		}
	}
	size_t nfiles = optind < argc ? (size_t)(argc - optind) : 0;
	if (!cer || nfiles == 0 ||
	    (!state_path[0] && onboarding_default_state(state_path, sizeof(state_path)))) {
		if (!cer && nfiles)
			fprintf(stderr, "titulos: --autoridad-cer is required: the authority's sello "
					"can only be checked with its certificate\n");
		usage_dgair(stderr);
		return EXIT_USAGE;
	}
	if (nfiles > DGAIR_MAX_FILES) {
		fprintf(stderr, "titulos: at most %u files in one import\n", DGAIR_MAX_FILES);
		return EXIT_USAGE;
	}
	titulo_verifier *v = NULL;
	met_state *st = NULL;
	struct titulo_error terr = { 0 };
	struct met_error e = { 0 };
	char *der = NULL;
	size_t der_len = 0;
	int status = EXIT_OK;
	if (fm_read_file(cer, DGAIR_MAX_CERT, &der, &der_len) != 0) {
		fprintf(stderr, "titulos: %s: cannot read the authority's certificate: %s\n", cer,
			strerror(errno));
		return EXIT_FAILURE_IO;
	}
	if (titulo_verifier_new(NULL, &v, &terr) != 0 ||
	    titulo_verifier_set_autoridad(v, (const uint8_t *)der, der_len, &terr) != 0) {
		fprintf(stderr, "titulos: %s: %s\n", cer, terr.message);
		status = EXIT_FINDINGS;
		goto out;
	}
	if (met_state_open(state_path, &st, &e) != 0) {
		fprintf(stderr, "titulos: %s\n", e.message);
		status = EXIT_FAILURE_IO;
		goto out;
	}
	size_t ok = 0;
	for (int i = optind; i < argc; i++) {
		int rc = import_one(st, v, firmados, argv[i]);
		if (rc == EXIT_OK)
			ok++;
		else if (status != EXIT_FAILURE_IO)
			status = rc;
	}
	printf("%zu of %zu title(s) recorded as authenticated\n", ok, nfiles);
out:
	met_state_close(st);
	titulo_verifier_free(v);
	free(der);
	return status;
}

int onboarding_cmd_dgair(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "import") == 0)
		return cmd_import(argc - 1, argv + 1);
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage_dgair(stdout);
		return EXIT_OK;
	}
	usage_dgair(stderr);
	return EXIT_USAGE;
}
