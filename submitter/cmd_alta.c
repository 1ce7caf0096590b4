/*
 * titulos alta: the registration kit for the DGP (met-web-service.md §10):
 * a workbook of the institution's careers and responsible signers, each
 * signer's e.firma certificate exported from the token as <CURP>.cer, and a
 * checklist in Spanish. --solo-firmantes: the update when a certificate is
 * renewed or a signer changes. See docs/onboarding.md.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <xlsxwriter.h>

#include "firmante/client.h"
#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "firmante/titulo.h"
#include "firmante/util.h"
#include "onboarding.h"
#include "state.h"

enum { EXIT_OK = 0, EXIT_FINDINGS = 1, EXIT_USAGE = 2, EXIT_FAILURE_IO = 3 };

#define ALTA_PATH 4096
#define ALTA_MAX_CERT (64u * 1024u) /* a .cer is a few KiB; cap what we accept */

/* titulos.c: does the agent's key entry match the configured RFC 7512 URI? */
int titulos_uri_matches(const char *uri, json_t *k);

/* Shared with cmd_qa.c. */
int onboarding_load_setup(const char *conf_path, titulo_catalogos **cat,
			  struct titulo_config **conf);
int onboarding_default_state(char *buf, size_t size);
void onboarding_today(char out[11]);

struct signer {
	struct alta_cert cert;
	uint8_t *der;
	size_t der_len;
};

int onboarding_load_setup(const char *conf_path, titulo_catalogos **cat,
			  struct titulo_config **conf)
{
	struct titulo_error err = { 0 };
	struct titulo_findings f = { 0 };
	char line[1400];
	int rc = titulo_catalogos_load(NULL, cat, &err);
	if (rc) {
		fprintf(stderr, "titulos: catalogs: %s\n", err.message);
		return EXIT_FAILURE_IO;
	}
	rc = titulo_config_load(conf_path, *cat, conf, &f);
	for (size_t i = 0; i < f.count; i++)
		fprintf(stderr, "%s\n", titulo_finding_format(&f.items[i], line, sizeof(line)));
	titulo_findings_clear(&f);
	if (rc) {
		fprintf(stderr, "titulos: %s: configuration not usable\n", conf_path);
		titulo_catalogos_free(*cat);
		*cat = NULL;
		return rc == FIRMANTE_E_NOMEM ? EXIT_FAILURE_IO : EXIT_FINDINGS;
	}
	return EXIT_OK;
}

int onboarding_default_state(char *buf, size_t size)
{
	const char *d = getenv("XDG_DATA_HOME"), *h = getenv("HOME");
	int n;
	if (d && *d)
		n = snprintf(buf, size, "%s/firmante/titulos.db", d);
	else if (h && *h)
		n = snprintf(buf, size, "%s/.local/share/firmante/titulos.db", h);
	else
		return -1;
	return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

void onboarding_today(char out[11])
{
	time_t t = time(NULL);
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(out, 11, "%Y-%m-%d", &tm);
}

static void copy_str(char *dst, size_t size, json_t *o, const char *key, size_t max)
{
	const char *v = json_string_value(json_object_get(o, key));
	snprintf(dst, size, "%.*s", (int)max, v ? v : "");
}

/* GET /v1/keys?cert=1 once; fill @s[i] for conf->firmantes[i]. Returns an
 * exit status (problems printed). */
static int fetch_signers(const char *sock, const struct titulo_config *conf, struct signer *s)
{
	firmante_client *cl = NULL;
	struct firmante_problem p = { 0 };
	char *reply = NULL;
	json_t *root = NULL;
	int status = EXIT_OK;
	if (firmante_client_new(sock, &cl) != 0) {
		fprintf(stderr, "titulos: cannot prepare the agent client (socket path too long?)\n");
		return EXIT_FAILURE_IO;
	}
	firmante_client_set_timeout(cl, 60);
	int rc = firmante_client_request(cl, "GET", "/v1/keys?cert=1", NULL, &reply, &p);
	if (rc) {
		fprintf(stderr, "titulos: agent: %s: %s\n", p.code[0] ? p.code : firmante_err_code(rc),
			p.detail[0] ? p.detail : (p.title[0] ? p.title : firmante_err_title(rc)));
		status = EXIT_FAILURE_IO;
		goto out;
	}
	root = json_loads(reply, 0, NULL);
	json_t *arr = root ? json_object_get(root, "keys") : NULL;
	if (!json_is_array(arr)) {
		fprintf(stderr, "titulos: agent: the answer to GET /v1/keys has no key list\n");
		status = EXIT_FAILURE_IO;
		goto out;
	}
	for (size_t i = 0; i < conf->nfirmantes; i++) {
		size_t j;
		json_t *k;
		json_array_foreach(arr, j, k)
		{
			if (!conf->firmantes[i].key || !titulos_uri_matches(conf->firmantes[i].key, k))
				continue;
			struct alta_cert *c = &s[i].cert;
			c->found = 1;
			copy_str(c->curp, sizeof(c->curp), k, "curp", 18);
			copy_str(c->kind, sizeof(c->kind), k, "kind", 7);
			copy_str(c->not_before, sizeof(c->not_before), k, "not_before", 10);
			copy_str(c->not_after, sizeof(c->not_after), k, "not_after", 10);
			copy_str(c->no_certificado, sizeof(c->no_certificado), k, "no_certificado", 20);
			const char *b64 = json_string_value(json_object_get(k, "certificate"));
			if (b64 && strlen(b64) < ALTA_MAX_CERT * 2 &&
			    fm_base64_decode(b64, strlen(b64), &s[i].der, &s[i].der_len) != 0) {
				s[i].der = NULL;
				s[i].der_len = 0;
			}
			break;
		}
	}
out:
	json_decref(root);
	free(reply);
	firmante_client_free(cl);
	return status;
}

static const char *nz(const char *s)
{
	return s ? s : "";
}

static const char *cargo_of(const titulo_catalogos *cat, const struct titulo_conf_firmante *f)
{
	const char *c = titulo_catalogo_descripcion(cat, "cargo", f->idCargo);
	return c ? c : nz(f->cargo);
}

/* The workbook: Institución, Carreras (unless @solo_firmantes), Firmantes. */
static int write_workbook(const char *path, const struct titulo_config *conf,
			  const titulo_catalogos *cat, const struct signer *s, int solo_firmantes)
{
	lxw_workbook_options opt = { .constant_memory = LXW_FALSE, .tmpdir = NULL };
	lxw_workbook *wb = workbook_new_opt(path, &opt);
	if (!wb)
		return -1;
	lxw_format *bold = workbook_add_format(wb);
	format_set_bold(bold);
	lxw_format *text = workbook_add_format(wb);
	format_set_num_format(text, "@"); /* keys keep their leading zeros */
	lxw_doc_properties props = { .title = "Registro ante la DGP",
				     .subject = "Carreras y firmantes autorizados",
				     .author = "titulos alta" };
	workbook_set_properties(wb, &props);

	lxw_worksheet *ws = workbook_add_worksheet(wb, "Institución");
	worksheet_write_string(ws, 0, 0, "cveInstitucion", bold);
	worksheet_write_string(ws, 0, 1, "nombreInstitucion", bold);
	worksheet_write_string(ws, 1, 0, nz(conf->cveInstitucion), text);
	worksheet_write_string(ws, 1, 1, nz(conf->nombreInstitucion), NULL);
	worksheet_set_column(ws, 0, 0, 16, NULL);
	worksheet_set_column(ws, 1, 1, 60, NULL);

	if (!solo_firmantes) {
		static const char *const head[] = { "cveCarrera", "nombreCarrera",
						    "idAutorizacionReconocimiento",
						    "autorizacionReconocimiento", "numeroRvoe", "nivel" };
		ws = workbook_add_worksheet(wb, "Carreras");
		for (lxw_col_t c = 0; c < 6; c++)
			worksheet_write_string(ws, 0, c, head[c], bold);
		for (size_t i = 0; i < conf->ncarreras; i++) {
			const struct titulo_conf_carrera *k = &conf->carreras[i];
			lxw_row_t r = (lxw_row_t)(i + 1);
			const char *aut = titulo_catalogo_descripcion(cat, "autorizacionReconocimiento",
								      k->idAutorizacionReconocimiento);
			const char *nivel = alta_nivel(k->nombreCarrera);
			worksheet_write_string(ws, r, 0, nz(k->cveCarrera), text);
			worksheet_write_string(ws, r, 1, nz(k->nombreCarrera), NULL);
			worksheet_write_string(ws, r, 2, nz(k->idAutorizacionReconocimiento), text);
			worksheet_write_string(ws, r, 3, nz(aut), NULL);
			worksheet_write_string(ws, r, 4, nz(k->numeroRvoe), text);
			worksheet_write_string(ws, r, 5, nivel ? nivel : "POR DEFINIR", NULL);
		}
		worksheet_set_column(ws, 0, 0, 12, NULL);
		worksheet_set_column(ws, 1, 1, 50, NULL);
		worksheet_set_column(ws, 2, 5, 24, NULL);
	}

	static const char *const fhead[] = { "nombre", "primerApellido", "segundoApellido", "curp",
					     "idCargo", "cargo", "abrTitulo", "noCertificado",
					     "vigenteDesde", "vigenteHasta", "archivoCer" };
	ws = workbook_add_worksheet(wb, "Firmantes");
	for (lxw_col_t c = 0; c < 11; c++)
		worksheet_write_string(ws, 0, c, fhead[c], bold);
	for (size_t i = 0; i < conf->nfirmantes; i++) {
		const struct titulo_conf_firmante *f = &conf->firmantes[i];
		lxw_row_t r = (lxw_row_t)(i + 1);
		char cer[64];
		snprintf(cer, sizeof(cer), "%s.cer", nz(f->curp));
		worksheet_write_string(ws, r, 0, nz(f->nombre), NULL);
		worksheet_write_string(ws, r, 1, nz(f->primerApellido), NULL);
		worksheet_write_string(ws, r, 2, nz(f->segundoApellido), NULL);
		worksheet_write_string(ws, r, 3, nz(f->curp), text);
		worksheet_write_string(ws, r, 4, nz(f->idCargo), text);
		worksheet_write_string(ws, r, 5, cargo_of(cat, f), NULL);
		worksheet_write_string(ws, r, 6, nz(f->abrTitulo), NULL);
		worksheet_write_string(ws, r, 7, s[i].cert.no_certificado, text);
		worksheet_write_string(ws, r, 8, s[i].cert.not_before, text);
		worksheet_write_string(ws, r, 9, s[i].cert.not_after, text);
		worksheet_write_string(ws, r, 10, cer, NULL);
	}
	worksheet_set_column(ws, 0, 2, 20, NULL);
	worksheet_set_column(ws, 3, 3, 22, NULL);
	worksheet_set_column(ws, 4, 4, 8, NULL);
	worksheet_set_column(ws, 5, 5, 28, NULL);
	worksheet_set_column(ws, 6, 10, 16, NULL);
	return workbook_close(wb) == LXW_NO_ERROR ? 0 : -1;
}

/* A growing text; every append is bounded by ALTA_MAX_TEXT. */
#define ALTA_MAX_TEXT (256u * 1024u)
struct text {
	char *p;
	size_t len, cap;
	int err;
};

__attribute__((format(printf, 2, 3)))
static void addf(struct text *t, const char *fmt, ...)
{
	va_list ap;
	if (t->err)
		return;
	for (;;) {
		size_t room = t->cap - t->len;
		va_start(ap, fmt);
		int n = t->p ? vsnprintf(t->p + t->len, room, fmt, ap) : -2;
		va_end(ap);
		if (n >= 0 && (size_t)n < room) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = t->cap ? t->cap * 2 : 4096;
		if (n == -1 || cap > ALTA_MAX_TEXT) {
			t->err = 1;
			return;
		}
		char *q = realloc(t->p, cap);
		if (!q) {
			t->err = 1;
			return;
		}
		t->p = q;
		t->cap = cap;
	}
}

static int write_checklist(const char *path, const char *xlsx_name,
			   const struct titulo_config *conf, const titulo_catalogos *cat,
			   const struct signer *s, int solo_firmantes, const char *today)
{
	struct text t = { 0 };
	int rvoe_federal = 0;
	for (size_t i = 0; i < conf->ncarreras; i++)
		rvoe_federal |= conf->carreras[i].idAutorizacionReconocimiento &&
				strcmp(conf->carreras[i].idAutorizacionReconocimiento, "1") == 0;
	addf(&t, "%s ante la DGP\n%s (clave de institución %s)\nGenerado el %s con titulos alta.\n\n",
	     solo_firmantes ? "Actualización de firmantes autorizados" : "Paquete de registro",
	     nz(conf->nombreInstitucion), nz(conf->cveInstitucion), today);
	addf(&t, "ENTREGUE a la Dirección General de Profesiones (DGP):\n\n");
	if (solo_firmantes)
		addf(&t, "[ ] %s: hoja \"Firmantes\" con los %zu firmantes autorizados vigentes.\n",
		     xlsx_name, conf->nfirmantes);
	else
		addf(&t, "[ ] %s: hoja \"Carreras\" (%zu programas académicos) y hoja \"Firmantes\" "
			 "(%zu firmantes autorizados).\n", xlsx_name, conf->ncarreras, conf->nfirmantes);
	addf(&t, "[ ] El certificado de e.firma (.cer) de cada firmante, exportado de su token:\n");
	for (size_t i = 0; i < conf->nfirmantes; i++) {
		const struct titulo_conf_firmante *f = &conf->firmantes[i];
		addf(&t, "      %s.cer  %s %s%s%s, %s; certificado %s, vigente hasta el %s\n",
		     nz(f->curp), nz(f->nombre), nz(f->primerApellido), f->segundoApellido ? " " : "",
		     nz(f->segundoApellido), cargo_of(cat, f), s[i].cert.no_certificado,
		     s[i].cert.not_after);
	}
	if (!solo_firmantes)
		addf(&t, "[ ] El formato del título electrónico de la institución, en el registro "
			 "presencial de firmantes autorizados.\n");
	addf(&t, "\nSOLICITE a la DGP:\n\n");
	if (!solo_firmantes) {
		addf(&t, "[ ] La confirmación de la clave de institución (%s) y de las claves y nombres "
			 "exactos de cada carrera de la hoja \"Carreras\"; si alguno difiere, corrija la "
			 "configuración antes de emitir títulos.\n", nz(conf->cveInstitucion));
		addf(&t, "[ ] La clave de Institución Concentradora.\n");
		addf(&t, "[ ] Credenciales de prueba (QA) del servicio web de títulos electrónicos "
			 "(MET): usuario y contraseña.\n");
		addf(&t, "[ ] Con las credenciales de prueba, ejecute \"titulos qa-check\" hasta que "
			 "el informe diga LISTO; entonces solicite las credenciales de producción y "
			 "registre el cambio con \"titulos perfil listo produccion\".\n");
	} else {
		addf(&t, "[ ] La confirmación de que los certificados nuevos quedaron registrados. "
			 "No firme títulos con un certificado nuevo antes de esa confirmación: la DGP "
			 "los rechazaría (\"El certificado de Emisor no ha sido registrado o es "
			 "inválido\").\n");
	}
	if (rvoe_federal)
		addf(&t, "\nDGAIR (la institución tiene carreras con RVOE FEDERAL):\n\n"
			 "[ ] Registre ante la Subdirección de Control Escolar de la DGAIR los nombres, "
			 "cargos y certificados (.cer) de los firmantes, con una solicitud firmada por el "
			 "representante legal.\n"
			 "[ ] Solicite las credenciales de acceso al módulo de autenticación de títulos.\n"
			 "[ ] Cuando la DGAIR devuelva los títulos autenticados, regístrelos con "
			 "\"titulos dgair import\".\n");
	addf(&t, "\nRecuerde: la e.firma vence cada cuatro años. Cuando un firmante renueve su "
		 "e.firma o cambie un firmante, ejecute \"titulos alta --solo-firmantes\" y entregue la "
		 "actualización a la DGP antes de firmar con el certificado nuevo.\n");
	int rc = t.err ? -1 : fm_write_file_atomic(path, t.p, t.len, 0644);
	free(t.p);
	return rc;
}

static void usage_alta(FILE *o)
{
	fprintf(o,
		"Usage: titulos alta --config FILE --out DIR [--solo-firmantes] [--socket PATH]\n"
		"                    [--state FILE]\n"
		"The registration kit for the DGP (docs/onboarding.md): in DIR, a workbook\n"
		"alta-<cveInstitucion>.xlsx (sheets Institución, Carreras, Firmantes, with the\n"
		"catalog texts), each signer's e.firma certificate read from the token through\n"
		"the agent as <CURP>.cer (DER, the token's certificate object byte for byte),\n"
		"and LISTA-DE-ENTREGA.txt, a checklist in Spanish of what to hand in and ask for.\n"
		"Refused, with the reason, and nothing written: a signer whose key the agent\n"
		"does not list, whose certificate is a CSD, has expired, expires within %d days,\n"
		"or carries another CURP than the configured one. The certificates are recorded\n"
		"in the state database: titulos report warns %d days before one expires.\n\n"
		"  -c, --config FILE    institution configuration (careers, signers, keys)\n"
		"  -o, --out DIR        where to write the kit (created if missing)\n"
		"  -f, --solo-firmantes only the signers: the update for the DGP after an\n"
		"                       e.firma is renewed or a signer changes\n"
		"                       (actualizacion-firmantes-<cveInstitucion>.xlsx)\n"
		"  -s, --socket PATH    agent socket (default $FIRMANTE_SOCKET or\n"
		"                       $XDG_RUNTIME_DIR/firmante/agent.sock)\n"
		"  --state FILE         state database (default $XDG_DATA_HOME/firmante/titulos.db)\n"
		"  -h, --help           this help\n",
		ALTA_MIN_DAYS, ALTA_WARN_DAYS);
}

static int cmd_alta(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "out", required_argument, NULL, 'o' },
		{ "solo-firmantes", no_argument, NULL, 'f' },
		{ "socket", required_argument, NULL, 's' },
		{ "state", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *conf_path = NULL, *out_dir = NULL, *sock = NULL;
	char state_path[ALTA_PATH] = "";
	int solo = 0, o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "c:o:fs:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': conf_path = optarg; break;
		case 'o': out_dir = optarg; break;
		case 'f': solo = 1; break;
		case 's': sock = optarg; break;
		case 'S': snprintf(state_path, sizeof(state_path), "%s", optarg); break;
		case 'h': usage_alta(stdout); return EXIT_OK;
		default: usage_alta(stderr); return EXIT_USAGE;
		}
	}
	if (!conf_path || !out_dir || optind != argc ||
	    (!state_path[0] && onboarding_default_state(state_path, sizeof(state_path)))) {
		usage_alta(stderr);
		return EXIT_USAGE;
	}
	titulo_catalogos *cat = NULL;
	struct titulo_config *conf = NULL;
	struct signer *s = NULL;
	met_state *st = NULL;
	int status = onboarding_load_setup(conf_path, &cat, &conf);
	if (status)
		return status;
	s = calloc(conf->nfirmantes, sizeof(*s));
	if (!s) {
		fprintf(stderr, "titulos: out of memory\n");
		status = EXIT_FAILURE_IO;
		goto out;
	}
	if ((status = fetch_signers(sock, conf, s)))
		goto out;

	char today[11];
	onboarding_today(today);
	size_t refused = 0;
	for (size_t i = 0; i < conf->nfirmantes; i++) {
		const struct titulo_conf_firmante *f = &conf->firmantes[i];
		char reason[700];
		if (alta_check_signer(f->curp, &s[i].cert, today, ALTA_MIN_DAYS, reason,
				      sizeof(reason)) != 0) {
			fprintf(stderr, "titulos: firmante %s (%s %s, CURP %s, key %s): rechazado: %s\n",
				f->seccion, nz(f->nombre), nz(f->primerApellido), nz(f->curp),
				nz(f->key), reason);
			refused++;
		} else if (!s[i].der) {
			fprintf(stderr, "titulos: firmante %s (CURP %s): the agent did not give the "
					"certificate's bytes (GET /v1/keys?cert=1): is the agent older "
					"than this titulos?\n", f->seccion, nz(f->curp));
			refused++;
		}
	}
	if (refused) {
		fprintf(stderr, "titulos: %zu of %zu signer(s) refused; nothing was written. Fix the "
				"signers above and run titulos alta again.\n", refused, conf->nfirmantes);
		status = EXIT_FINDINGS;
		goto out;
	}

	if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "titulos: %s: cannot create the directory: %s\n", out_dir,
			strerror(errno));
		status = EXIT_FAILURE_IO;
		goto out;
	}
	char path[ALTA_PATH + 128], tmp[ALTA_PATH + 160], xlsx_name[96];
	for (size_t i = 0; i < conf->nfirmantes; i++) {
		snprintf(path, sizeof(path), "%s/%s.cer", out_dir, conf->firmantes[i].curp);
		if (fm_write_file_atomic(path, s[i].der, s[i].der_len, 0644) != 0) {
			fprintf(stderr, "titulos: %s: cannot write: %s\n", path, strerror(errno));
			status = EXIT_FAILURE_IO;
			goto out;
		}
	}
	snprintf(xlsx_name, sizeof(xlsx_name), "%s-%s.xlsx",
		 solo ? "actualizacion-firmantes" : "alta", conf->cveInstitucion);
	snprintf(path, sizeof(path), "%s/%s", out_dir, xlsx_name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.%ld.tmp", out_dir, xlsx_name, (long)getpid());
	if (write_workbook(tmp, conf, cat, s, solo) != 0 || rename(tmp, path) != 0) {
		fprintf(stderr, "titulos: %s: cannot write the workbook\n", path);
		unlink(tmp);
		status = EXIT_FAILURE_IO;
		goto out;
	}
	snprintf(path, sizeof(path), "%s/LISTA-DE-ENTREGA.txt", out_dir);
	if (write_checklist(path, xlsx_name, conf, cat, s, solo, today) != 0) {
		fprintf(stderr, "titulos: %s: cannot write the checklist\n", path);
		status = EXIT_FAILURE_IO;
		goto out;
	}

	struct met_error e = { 0 };
	if (met_state_open(state_path, &st, &e) != 0) {
		fprintf(stderr, "titulos: %s (the kit is written; certificates not recorded for "
				"titulos report)\n", e.message);
		status = EXIT_FAILURE_IO;
		goto out;
	}
	for (size_t i = 0; i < conf->nfirmantes; i++) {
		struct met_certificado c;
		memset(&c, 0, sizeof(c));
		snprintf(c.curp, sizeof(c.curp), "%s", conf->firmantes[i].curp);
		snprintf(c.no_certificado, sizeof(c.no_certificado), "%s", s[i].cert.no_certificado);
		snprintf(c.not_after, sizeof(c.not_after), "%s", s[i].cert.not_after);
		snprintf(c.firmante, sizeof(c.firmante), "%s", conf->firmantes[i].seccion);
		if (met_state_certificado_record(st, &c, &e) != 0) {
			fprintf(stderr, "titulos: %s\n", e.message);
			status = EXIT_FAILURE_IO;
			goto out;
		}
	}
	printf("%s written in %s: %s, %zu certificate(s) <CURP>.cer, LISTA-DE-ENTREGA.txt\n",
	       solo ? "signer update" : "registration kit", out_dir, xlsx_name, conf->nfirmantes);
	for (size_t i = 0; i < conf->nfirmantes; i++)
		printf("  %s.cer  %s  certificado %s, valid until %s\n", conf->firmantes[i].curp,
		       conf->firmantes[i].seccion, s[i].cert.no_certificado, s[i].cert.not_after);
	status = EXIT_OK;
out:
	met_state_close(st);
	for (size_t i = 0; s && i < conf->nfirmantes; i++)
		free(s[i].der);
	free(s);
	titulo_config_free(conf);
	titulo_catalogos_free(cat);
	return status;
}

/* Entry from cmd_qa.c's dispatcher. */
int onboarding_cmd_alta(int argc, char **argv);
int onboarding_cmd_alta(int argc, char **argv)
{
	return cmd_alta(argc, argv);
}
