/*
 * titulos: build, sign and verify Título Electrónico documents.
 *
 *   titulos build  --config institucion.conf --csv egresados.csv --out DIR
 *   titulos sign   --config institucion.conf --in DIR --out DIR [--socket PATH]
 *   titulos verify FILE...
 *
 * Exit status: 0 ok, 1 findings or invalid input, 2 usage, 3 agent or I/O
 * failure. See docs/titulos.md.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "firmante/client.h"
#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "firmante/titulo.h"
#include "firmante/util.h"

enum { EXIT_OK = 0, EXIT_FINDINGS = 1, EXIT_USAGE = 2, EXIT_FAILURE_IO = 3 };

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
		if (rc != FIRMANTE_E_NOMEM)
			fprintf(stderr, "titulos: %s: configuration not usable\n", conf_path);
		else
			fprintf(stderr, "titulos: out of memory\n");
		titulo_catalogos_free(*cat);
		*cat = NULL;
		return rc == FIRMANTE_E_NOMEM ? EXIT_FAILURE_IO : EXIT_FINDINGS;
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
		"Usage: titulos build --config FILE --csv FILE --out DIR\n"
		"Build one unsigned Título Electrónico per CSV row as DIR/<folioControl>.xml.\n"
		"Nothing is written when any row has an error.\n\n"
		"  -c, --config FILE   institution configuration (INI)\n"
		"  -i, --csv FILE      graduates, one title per row (UTF-8, header row)\n"
		"  -o, --out DIR       output directory (created if missing)\n"
		"  -h, --help          this help\n");
}

static int cmd_build(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "csv", required_argument, NULL, 'i' },
		{ "out", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *conf_path = NULL, *csv_path = NULL, *out_dir = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "c:i:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': conf_path = optarg; break;
		case 'i': csv_path = optarg; break;
		case 'o': out_dir = optarg; break;
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
	struct titulo_lote *lote = NULL;
	struct titulo_findings f = { 0 };
	status = load_setup(conf_path, &cat, &conf);
	if (status)
		goto out;
	int rc = titulo_build_csv(conf, cat, csv_path, &lote, &f);
	print_findings(&f, NULL);
	if (rc) {
		if (rc == FIRMANTE_E_INVALID) {
			fprintf(stderr, "titulos: %s: %zu error(s); nothing written\n", csv_path,
				f.errors);
			status = EXIT_FINDINGS;
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
	for (size_t i = 0; i < lote->count; i++) {
		char *xml = NULL, name[256], path[MAX_PATH];
		size_t len;
		snprintf(name, sizeof(name), "%s.xml", lote->folios[i]);
		if (join_path(path, sizeof(path), out_dir, name) != 0) {
			fprintf(stderr, "titulos: %s: path too long\n", out_dir);
			status = EXIT_FAILURE_IO;
			goto out;
		}
		rc = titulo_serialize(lote->titulos[i], &xml, &len);
		if (rc) {
			fprintf(stderr, "titulos: %s: cannot serialize: %s\n", lote->folios[i],
				firmante_err_title(rc));
			status = EXIT_FAILURE_IO;
			goto out;
		}
		rc = fm_write_file_atomic(path, xml, len, 0644);
		free(xml);
		if (rc) {
			fprintf(stderr, "titulos: %s: cannot write: %s\n", path, strerror(errno));
			status = EXIT_FAILURE_IO;
			goto out;
		}
	}
	printf("%zu title(s) written to %s (unsigned)\n", lote->count, out_dir);
	status = EXIT_OK;
out:
	titulo_findings_clear(&f);
	titulo_lote_free(lote);
	titulo_config_free(conf);
	titulo_catalogos_free(cat);
	return status;
}

/* ---- sign ------------------------------------------------------------ */

static void usage_sign(FILE *o)
{
	fprintf(o,
		"Usage: titulos sign --config FILE --in DIR --out DIR [--socket PATH]\n"
		"Ask the firmanted agent for the sello of every FirmaResponsable of every\n"
		"DIR/*.xml, verify the signed document, and write it to the output directory.\n"
		"Stops at the first agent error; titles already signed stay written.\n\n"
		"  -c, --config FILE   institution configuration (signers and their keys)\n"
		"  -i, --in DIR        unsigned titles (from titulos build)\n"
		"  -o, --out DIR       signed titles (created if missing)\n"
		"  -s, --socket PATH   agent socket (default $FIRMANTE_SOCKET or\n"
		"                      $XDG_RUNTIME_DIR/firmante/agent.sock)\n"
		"  -h, --help          this help\n");
}

static int xml_filter(const struct dirent *d)
{
	size_t n = strlen(d->d_name);
	return n > 4 && d->d_name[0] != '.' && strcmp(d->d_name + n - 4, ".xml") == 0;
}

static int sign_one(firmante_client *cl, titulo_verifier *v, const struct titulo_config *conf,
		    const char *in_path, const char *out_path)
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
	for (size_t i = 0; i < titulo_firmantes_count(t); i++) {
		const char *curp = titulo_firmante_attr(t, i, "curp");
		const struct titulo_conf_firmante *cf = titulo_config_firmante_by_curp(conf, curp);
		if (!cf) {
			fprintf(stderr,
				"titulos: %s: FirmaResponsable[%zu] (%s): no [firmante] section with "
				"this curp in %s\n",
				in_path, i, curp ? curp : "no curp", conf->path);
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
				"titulos: %s: FirmaResponsable[%zu] (%s): agent: %s: %s\n", in_path, i,
				curp, p.code[0] ? p.code : firmante_err_code(rc),
				p.detail[0] ? p.detail : (p.title[0] ? p.title : firmante_err_title(rc)));
			status = EXIT_FAILURE_IO;
			goto out;
		}
		if (s.firmante_index != (int)i || !curp || strcmp(s.curp, curp) != 0) {
			fprintf(stderr,
				"titulos: %s: FirmaResponsable[%zu] (%s): the agent signed for "
				"FirmaResponsable[%d] (%s); key %s belongs to another signer\n",
				in_path, i, curp ? curp : "", s.firmante_index, s.curp, cf->key);
			status = EXIT_FAILURE_IO;
			goto out;
		}
		rc = titulo_set_firma(t, i, s.sello, s.certificado, s.no_certificado);
		if (rc) {
			fprintf(stderr,
				"titulos: %s: FirmaResponsable[%zu] (%s): the agent's answer is "
				"malformed (sello, certificate or noCertificado)\n",
				in_path, i, curp);
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

static int cmd_sign(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "in", required_argument, NULL, 'i' },
		{ "out", required_argument, NULL, 'o' },
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *conf_path = NULL, *in_dir = NULL, *out_dir = NULL, *sock = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "c:i:o:s:h", opts, NULL)) != -1) {
		switch (c) {
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
	if (rc) {
		fprintf(stderr, "titulos: agent client: %s\n", firmante_err_title(rc));
		status = EXIT_FAILURE_IO;
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
		status = sign_one(cl, v, conf, in_path, out_path);
		if (status)
			break;
		signed_count++;
	}
	printf("%zu of %d title(s) signed into %s\n", signed_count, n, out_dir);
out:
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
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
		"Usage: titulos verify FILE...\n"
		"Check signed titles: XSD, and for every FirmaResponsable the sello over its\n"
		"cadena original, the certificate (e.firma), noCertificadoResponsable and curp.\n"
		"Prints OK or each finding per file; exit 0 only when all pass.\n\n"
		"  -h, --help          this help\n");
}

static int cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
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
	int status = EXIT_OK;
	for (int i = optind; i < argc; i++) {
		char *xml = NULL;
		size_t len = 0;
		struct titulo_findings f = { 0 };
		int rc = fm_read_file(argv[i], FIRMANTE_MAX_DOCUMENT, &xml, &len);
		if (rc) {
			printf("%s: cannot read: %s\n", argv[i],
			       rc == FIRMANTE_E_TOO_LARGE ? "file larger than a title may be"
							  : strerror(errno));
			status = EXIT_FAILURE_IO;
			continue;
		}
		rc = titulo_verify(v, xml, len, 0, &f);
		char line[1400];
		if (rc == 0) {
			printf("%s: OK\n", argv[i]);
			for (size_t k = 0; k < f.count; k++)
				printf("%s: %s\n", argv[i],
				       titulo_finding_format(&f.items[k], line, sizeof(line)));
		} else if (rc == FIRMANTE_E_INVALID) {
			for (size_t k = 0; k < f.count; k++)
				printf("%s: %s\n", argv[i],
				       titulo_finding_format(&f.items[k], line, sizeof(line)));
			printf("%s: FAILED (%zu error(s))\n", argv[i], f.errors);
			if (status == EXIT_OK)
				status = EXIT_FINDINGS;
		} else {
			printf("%s: cannot verify: %s\n", argv[i], firmante_err_title(rc));
			status = EXIT_FAILURE_IO;
		}
		titulo_findings_clear(&f);
		free(xml);
	}
	titulo_verifier_free(v);
	return status;
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
		"  verify   check signed XML files\n\n"
		"Run 'titulos COMMAND --help' for a command's options.\n"
		"Exit status: 0 ok, 1 findings or invalid input, 2 usage, 3 agent or I/O failure.\n");
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
	fprintf(stderr, "titulos: unknown command '%s'\n", cmd);
	usage(stderr);
	return EXIT_USAGE;
}
