/*
 * titulos qa-check and titulos perfil: the path from the DGP's QA service
 * to production (met-web-service.md §10.4-5, §11.5), and the onboarding
 * lines of titulos report. See docs/onboarding.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <pwd.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "firmante/titulo.h"
#include "firmante/util.h"
#include "met.h"
#include "onboarding.h"
#include "state.h"

extern char **environ;

enum { EXIT_OK = 0, EXIT_FINDINGS = 1, EXIT_USAGE = 2, EXIT_FAILURE_IO = 3 };

#define QA_PATH 4096
#define QA_MAX_CARRERAS 50   /* careers checked in one QA lot */
#define QA_MAX_FIRMANTES 20  /* signers checked in one QA lot */

int onboarding_load_setup(const char *conf_path, titulo_catalogos **cat,
			  struct titulo_config **conf);
int onboarding_default_state(char *buf, size_t size);
void onboarding_today(char out[11]);
int onboarding_cmd_alta(int argc, char **argv);
int onboarding_cmd_dgair(int argc, char **argv);

static void who(char *out, size_t size)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	if (getpwuid_r(getuid(), &pw, buf, sizeof(buf), &res) == 0 && res)
		snprintf(out, size, "%s", res->pw_name);
	else
		snprintf(out, size, "uid %lu", (unsigned long)getuid());
}

/* ---- production guard and report lines --------------------------------- */

int onboarding_production_check(met_state *st, const char *perfil)
{
	struct met_perfil p;
	struct met_error e = { 0 };
	if (!perfil || strcmp(perfil, "produccion") != 0)
		return EXIT_OK;
	int rc = met_state_perfil_get(st, perfil, &p, &e);
	if (rc == 0 && p.listo)
		return EXIT_OK;
	if (rc != 0 && rc != FIRMANTE_E_NOT_FOUND) {
		fprintf(stderr, "titulos: %s\n", e.message);
		return EXIT_FAILURE_IO;
	}
	fprintf(stderr,
		"titulos: the MET profile is produccion, but production is not marked ready in "
		"this state database%s%s%s; nothing was sent. Pass the QA phase first (titulos "
		"qa-check with the QA profile), then record it with 'titulos perfil listo "
		"produccion' (docs/onboarding.md).\n",
		rc == 0 ? " (withdrawn on " : "", rc == 0 ? p.fecha : "", rc == 0 ? ")" : "");
	return EXIT_FINDINGS;
}

struct report_ctx {
	char today[11];
	int shown;
};

static int report_cert(const struct met_certificado *c, void *arg)
{
	struct report_ctx *r = arg;
	long left = 0;
	if (alta_days_between(r->today, c->not_after, &left) != 0)
		return 0;
	if (left < 0)
		printf("warning: the e.firma certificate %s of signer %s (CURP %s) expired on %s: "
		       "renew it at SAT, then run titulos alta --solo-firmantes and register the new "
		       "one with the DGP\n", c->no_certificado, c->firmante, c->curp, c->not_after);
	else if (left <= ALTA_WARN_DAYS)
		printf("warning: the e.firma certificate %s of signer %s (CURP %s) expires on %s, "
		       "in %ld day%s: renew it at SAT, then run titulos alta --solo-firmantes and "
		       "register the new one with the DGP before signing with it\n",
		       c->no_certificado, c->firmante, c->curp, c->not_after, left,
		       left == 1 ? "" : "s");
	else
		return 0;
	r->shown++;
	return 0;
}

void onboarding_report(met_state *st)
{
	struct met_error e = { 0 };
	struct report_ctx r = { .shown = 0 };
	long n = 0;
	onboarding_today(r.today);
	if (met_state_autenticados_count(st, &n, &e) == 0 && n > 0)
		printf("authenticated by DGAIR or a state authority (titulos dgair import): %ld\n", n);
	met_state_certificados_each(st, report_cert, &r, &e);
	struct met_perfil p;
	if (met_state_perfil_get(st, "produccion", &p, &e) == 0)
		printf("production profile: %s since %s (%s)\n", p.listo ? "ready" : "withdrawn",
		       p.fecha, p.usuario);
}

/* ---- titulos perfil ------------------------------------------------------ */

static void usage_perfil(FILE *o)
{
	fprintf(o,
		"Usage: titulos perfil listo PERFIL [--nota TEXT] [--state FILE]\n"
		"       titulos perfil retirar PERFIL [--nota TEXT] [--state FILE]\n"
		"       titulos perfil ver [--state FILE]\n"
		"Record that a MET profile is ready, with the date and the user (listo), or no\n"
		"longer ready (retirar). titulos submit refuses the produccion profile until it\n"
		"is marked ready, so no test title reaches production by mistake. Marking\n"
		"produccion ready needs a titulos qa-check that reported READY in this state\n"
		"database (met-web-service.md §10.4-5). 'ver' shows the records and the last\n"
		"QA check.\n\n"
		"  -n, --nota TEXT     a note kept with the record (e.g. the DGP's letter)\n"
		"  --state FILE        state database (default $XDG_DATA_HOME/firmante/titulos.db)\n"
		"  -h, --help          this help\n");
}

static int cmd_perfil(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "nota", required_argument, NULL, 'n' },
		{ "state", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char state_path[QA_PATH] = "", user[128];
	const char *nota = "";
	int o;
	while ((o = getopt_long(argc, argv, "n:h", opts, NULL)) != -1) {
		switch (o) {
		case 'n': nota = optarg; break;
		case 'S': snprintf(state_path, sizeof(state_path), "%s", optarg); break;
		case 'h': usage_perfil(stdout); return EXIT_OK;
		default: usage_perfil(stderr); return EXIT_USAGE;
		}
	}
	int nargs = argc - optind;
	const char *action = nargs >= 1 ? argv[optind] : NULL;
	const char *perfil = nargs >= 2 ? argv[optind + 1] : NULL;
	int listo = action && strcmp(action, "listo") == 0;
	int retirar = action && strcmp(action, "retirar") == 0;
	int ver = action && strcmp(action, "ver") == 0;
	if (!(((listo || retirar) && nargs == 2) || (ver && nargs == 1)) ||
	    (!state_path[0] && onboarding_default_state(state_path, sizeof(state_path)))) {
		usage_perfil(stderr);
		return EXIT_USAGE;
	}
	if (perfil && strcmp(perfil, "produccion") != 0 && strcmp(perfil, "qa") != 0 &&
	    strcmp(perfil, "sandbox") != 0) {
		fprintf(stderr, "titulos: '%s' is not a MET profile: use produccion, qa or sandbox\n",
			perfil);
		return EXIT_USAGE;
	}
	met_state *st = NULL;
	struct met_error e = { 0 };
	struct met_qa_check q;
	struct met_perfil p;
	int status = EXIT_OK;
	if (met_state_open(state_path, &st, &e) != 0) {
		fprintf(stderr, "titulos: %s\n", e.message);
		return EXIT_FAILURE_IO;
	}
	if (ver) {
		static const char *const names[] = { "produccion", "qa", "sandbox" };
		for (int i = 0; i < 3; i++) {
			if (met_state_perfil_get(st, names[i], &p, &e) == 0)
				printf("%-11s %s since %s by %s%s%s\n", names[i],
				       p.listo ? "ready" : "withdrawn", p.fecha, p.usuario,
				       p.nota[0] ? ": " : "", p.nota);
			else
				printf("%-11s never marked ready\n", names[i]);
		}
		if (met_state_qa_last(st, &q, &e) == 0)
			printf("last QA check: %s, %s, against %s\n%s", q.fecha,
			       q.listo ? "READY" : "NOT READY", q.url, q.resumen);
		else
			printf("no QA check recorded (titulos qa-check)\n");
		goto out;
	}
	if (listo && perfil && strcmp(perfil, "produccion") == 0) {
		int rc = met_state_qa_last(st, &q, &e);
		if (rc == FIRMANTE_E_NOT_FOUND || (rc == 0 && !q.listo)) {
			fprintf(stderr, "titulos: production cannot be marked ready: %s. Run titulos "
					"qa-check with the QA profile until it reports READY.\n",
				rc == 0 ? "the last QA check reported NOT READY" : "no QA check was recorded in this state database");
			status = EXIT_FINDINGS;
			goto out;
		}
		if (rc) {
			fprintf(stderr, "titulos: %s\n", e.message);
			status = EXIT_FAILURE_IO;
			goto out;
		}
	}
	who(user, sizeof(user));
	if (met_state_perfil_set(st, perfil, listo, user, nota, &e) != 0) {
		fprintf(stderr, "titulos: %s\n", e.message);
		status = EXIT_FAILURE_IO;
		goto out;
	}
	if (met_state_perfil_get(st, perfil, &p, &e) == 0)
		printf("profile %s marked %s on %s by %s\n", perfil, listo ? "ready" : "not ready",
		       p.fecha, p.usuario);
out:
	met_state_close(st);
	return status;
}

/* ---- titulos qa-check ---------------------------------------------------- */

static void usage_qa(FILE *o)
{
	fprintf(o,
		"Usage: titulos qa-check --config FILE --met FILE [--socket PATH] [--state FILE]\n"
		"                        [--work DIR]\n"
		"Readiness check against the DGP's QA service (met-web-service.md §10.4-5):\n"
		"builds a small lot of test titles (one per career with every signer, and one\n"
		"per signer alone), has them signed through the agent, submits them with the\n"
		"MET profile --met (never produccion), follows the lot to its result, and\n"
		"prints a report per signer and career: what passed, what the service said,\n"
		"what to fix. The outcome is recorded in the state database; 'titulos perfil\n"
		"listo produccion' needs a READY one. Exit status 0 READY, 1 NOT READY.\n\n"
		"  -c, --config FILE   institution configuration (careers, signers, keys)\n"
		"  -m, --met FILE      MET configuration with the QA (or sandbox) profile\n"
		"  -s, --socket PATH   agent socket (default $FIRMANTE_SOCKET or\n"
		"                      $XDG_RUNTIME_DIR/firmante/agent.sock)\n"
		"  --state FILE        state database where the outcome is recorded (default\n"
		"                      $XDG_DATA_HOME/firmante/titulos.db); the test lot keeps\n"
		"                      its own database in the work directory\n"
		"  -w, --work DIR      where the test titles, lot and log go (default\n"
		"                      qa-check/<date-time> beside the state database)\n"
		"  -h, --help          this help\n");
}

/* A fictitious graduate with a CURP of valid form (§9), for test titles. */
static const struct {
	const char *curp, *nombre, *primer, *segundo;
} GRADUATES[] = {
	{ "GAHM980312MDFRRR06", "MARÍA FERNANDA", "GARCÍA", "HERNÁNDEZ" },
	{ "NUPL990706HMCXXS09", "LUIS", "NÚÑEZ", "PEÑA" },
	{ "CAVE950817HNLSGD09", "EDUARDO", "CASTILLO", "VEGA" },
	{ "OIQJ900619HJCRNN02", "JUAN PABLO", "ORTIZ", "QUINTERO" },
	{ "DIFA880227MDFZLN09", "ANDREA", "DÍAZ", "FLORES" },
};

/* One CSV row of a test title for career @k, in the columns of
 * examples/egresados.csv. Dates keep the DGP's order rules (start <= end <=
 * exam <= expedition <= today) and the level's antecedent and servicio
 * social. Returns 0 or -1 (write error). */
static int qa_row(FILE *f, const char *folio, const struct titulo_conf_carrera *k, int year,
		  const char *today, const char *entidad, size_t n)
{
	const char *nivel = alta_nivel(k->nombreCarrera);
	int posgrado = nivel && (strcmp(nivel, "MAESTRÍA") == 0 || strcmp(nivel, "DOCTORADO") == 0 ||
				 strcmp(nivel, "ESPECIALIDAD") == 0);
	const char *antecedente = !posgrado ? "4" : strcmp(nivel, "DOCTORADO") == 0 ? "1" : "2";
	const char *procedencia = !posgrado ? "ESCUELA PREPARATORIA DE PRUEBA"
					    : "UNIVERSIDAD DE PRUEBA";
	size_t g = n % (sizeof(GRADUATES) / sizeof(GRADUATES[0]));
	int r = fprintf(f,
			"%s,%s,%s,%s,%s,qa%zu@example.org,%s,%d-08-15,%d-06-30,1,%s,,%s,%s,%s,,"
			"%s,%s,%s,%d-08-15,%d-06-30,%s\n",
			folio, GRADUATES[g].curp, GRADUATES[g].nombre, GRADUATES[g].primer,
			GRADUATES[g].segundo, n, k->cveCarrera, year - 5, year - 1, today, today,
			posgrado ? "0" : "1", posgrado ? "5" : "1", procedencia, antecedente, entidad,
			posgrado ? year - 10 : year - 8, posgrado ? year - 6 : year - 5,
			posgrado ? "1234567" : "");
	return r < 0 ? -1 : 0;
}

static const char CSV_HEADER[] =
	"folioControl,curp,nombre,primerApellido,segundoApellido,correoElectronico,cveCarrera,"
	"fechaInicio,fechaTerminacion,idModalidadTitulacion,fechaExamenProfesional,"
	"fechaExencionExamenProfesional,fechaExpedicion,cumplioServicioSocial,"
	"idFundamentoLegalServicioSocial,idEntidadFederativa,institucionProcedencia,"
	"idTipoEstudioAntecedente,idEntidadFederativaAntecedente,fechaInicioAntecedente,"
	"fechaTerminacionAntecedente,noCedula\n";

/* Build @csv with @conf and write each title to @dir. Returns an exit status. */
static int qa_build(const struct titulo_config *conf, const titulo_catalogos *cat,
		    const char *csv, const char *dir)
{
	struct titulo_lote *lote = NULL;
	struct titulo_findings f = { 0 };
	char line[1400];
	int status = EXIT_OK;
	int rc = titulo_build_csv_opts(conf, cat, csv, NULL, &lote, &f);
	for (size_t i = 0; i < f.count; i++)
		if (f.items[i].severity == TITULO_ERROR)
			fprintf(stderr, "titulos: qa-check: %s\n",
				titulo_finding_format(&f.items[i], line, sizeof(line)));
	titulo_findings_clear(&f);
	if (rc) {
		fprintf(stderr, "titulos: qa-check: the test titles cannot be built (%s); fix the "
				"configuration first\n", firmante_err_title(rc));
		return rc == FIRMANTE_E_INVALID ? EXIT_FINDINGS : EXIT_FAILURE_IO;
	}
	for (size_t i = 0; i < lote->count && status == EXIT_OK; i++) {
		char path[QA_PATH + 200], *xml = NULL;
		size_t len = 0;
		snprintf(path, sizeof(path), "%s/%s.xml", dir, lote->folios[i]);
		if (titulo_serialize(lote->titulos[i], &xml, &len) != 0 ||
		    fm_write_file_atomic(path, xml, len, 0644) != 0) {
			fprintf(stderr, "titulos: qa-check: %s: cannot write\n", path);
			status = EXIT_FAILURE_IO;
		}
		free(xml);
	}
	titulo_lote_free(lote);
	return status;
}

/* Run this titulos again with @args (NULL-terminated, args[0] = the command);
 * its standard output is appended to @log. Returns its exit status, or
 * EXIT_FAILURE_IO when it could not run. */
static int run_self(char *const *args, const char *log)
{
	posix_spawn_file_actions_t fa;
	pid_t pid;
	char *argv[24];
	size_t n = 0;
	argv[n++] = "titulos";
	for (; args[n - 1] && n < 23; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	if (posix_spawn_file_actions_init(&fa) != 0)
		return EXIT_FAILURE_IO;
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log, O_WRONLY | O_CREAT | O_APPEND,
					 0600);
	fflush(stdout);
	fflush(stderr);
	int rc = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0) {
		fprintf(stderr, "titulos: qa-check: cannot run titulos %s: %s\n", args[0],
			strerror(rc));
		return EXIT_FAILURE_IO;
	}
	int ws;
	while (waitpid(pid, &ws, 0) < 0)
		if (errno != EINTR)
			return EXIT_FAILURE_IO;
	return WIFEXITED(ws) ? WEXITSTATUS(ws) : EXIT_FAILURE_IO;
}

struct qa_title {
	char folio[128];
	char status[24];
	char message[1024];
};

struct qa_results {
	struct qa_title t[QA_MAX_CARRERAS + QA_MAX_FIRMANTES];
	size_t n;
};

static int collect(const struct met_title *t, void *arg)
{
	struct qa_results *r = arg;
	if (r->n < sizeof(r->t) / sizeof(r->t[0])) {
		snprintf(r->t[r->n].folio, sizeof(r->t[0].folio), "%s", t->folio);
		snprintf(r->t[r->n].status, sizeof(r->t[0].status), "%s", t->status);
		snprintf(r->t[r->n].message, sizeof(r->t[0].message), "%s", t->message);
		r->n++;
	}
	return 0;
}

static const struct qa_title *find(const struct qa_results *r, const char *folio)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->t[i].folio, folio) == 0)
			return &r->t[i];
	return NULL;
}

/* What to do about the service's message, in a sentence. */
static const char *fix_for(const char *m, int signer)
{
	if (strstr(m, "certificado de Emisor"))
		return signer ? "register this signer's e.firma certificate (<CURP>.cer from titulos "
				"alta) with the DGP; after a renewal, run titulos alta --solo-firmantes "
				"and hand in the update"
			      : "fix the signers above first";
	if (strstr(m, "La Curp del"))
		return "the CURP configured for the signer is not the one in the certificate: "
		       "correct the [firmante] section";
	if (strstr(m, "No existe información para los datos"))
		return "the DGP does not know this certificate number: register the certificate";
	if (strstr(m, "Secuencia no ha sido autenticada"))
		return "the sello does not verify at the DGP: run titulos verify on the signed "
		       "title and check the token's key and certificate belong together";
	if (strstr(m, "carrera") || strstr(m, "Carrera"))
		return "the DGP has another key or name for this career: write cveCarrera and "
		       "nombreCarrera exactly as the DGP registered them";
	if (strstr(m, "no pertenece a la Institución"))
		return "the QA account belongs to another institution: check cve-institucion and "
		       "the credentials of the profile";
	if (strstr(m, "Usuario o contraseña"))
		return "the QA credentials were refused: check usuario and password";
	if (strstr(m, "previamente registrado"))
		return "a test folio was already registered; run qa-check again (new folios)";
	return "read the service's message and correct the configuration";
}

static int cmd_qa_check(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "met", required_argument, NULL, 'm' },
		{ "socket", required_argument, NULL, 's' },
		{ "state", required_argument, NULL, 'S' },
		{ "work", required_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *conf_path = NULL, *met_path = NULL, *sock = NULL;
	char state_path[QA_PATH] = "", work[QA_PATH] = "";
	int o;
	while ((o = getopt_long(argc, argv, "c:m:s:w:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': conf_path = optarg; break;
		case 'm': met_path = optarg; break;
		case 's': sock = optarg; break;
		case 'S': snprintf(state_path, sizeof(state_path), "%s", optarg); break;
		case 'w': snprintf(work, sizeof(work), "%s", optarg); break;
		case 'h': usage_qa(stdout); return EXIT_OK;
		default: usage_qa(stderr); return EXIT_USAGE;
		}
	}
	if (!conf_path || !met_path || optind != argc ||
	    (!state_path[0] && onboarding_default_state(state_path, sizeof(state_path)))) {
		usage_qa(stderr);
		return EXIT_USAGE;
	}
	titulo_catalogos *cat = NULL;
	struct titulo_config *conf = NULL;
	struct met_profile prof;
	struct met_error e = { 0 };
	struct qa_results *res = NULL;
	struct met_qa_check *qa = NULL;
	met_state *st = NULL;
	FILE *csv = NULL;
	int status;
	memset(&prof, 0, sizeof(prof));
	if (met_profile_load(met_path, &prof, &e) != 0) {
		fprintf(stderr, "titulos: %s\n", e.message);
		return EXIT_FINDINGS;
	}
	if (strcmp(prof.name, "produccion") == 0) {
		fprintf(stderr, "titulos: qa-check sends test titles and never uses the produccion "
				"profile; give it the MET configuration of the QA profile\n");
		status = EXIT_USAGE;
		goto out;
	}
	if ((status = onboarding_load_setup(conf_path, &cat, &conf)))
		goto out;
	res = calloc(1, sizeof(*res));
	qa = calloc(1, sizeof(*qa));
	if (!res || !qa) {
		fprintf(stderr, "titulos: out of memory\n");
		status = EXIT_FAILURE_IO;
		goto out;
	}

	/* The work directory and the test folios: QA<date-time>-C<n> (careers),
	 * QA<date-time>-F<n> (signers alone). */
	char stamp[32], today[11];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm);
	onboarding_today(today);
	int year = tm.tm_year + 1900;
	if (!work[0]) {
		char buf[QA_PATH];
		snprintf(buf, sizeof(buf), "%s", state_path);
		if (snprintf(work, sizeof(work), "%s/qa-check/%s", dirname(buf), stamp) >=
		    (int)sizeof(work)) {
			fprintf(stderr, "titulos: qa-check: path too long\n");
			status = EXIT_USAGE;
			goto out;
		}
	}
	char unsigned_dir[QA_PATH + 16], signed_dir[QA_PATH + 16], log[QA_PATH + 16],
		qa_db[QA_PATH + 16], csv_path[QA_PATH + 32], parent[QA_PATH];
	snprintf(parent, sizeof(parent), "%s", work);
	mkdir(dirname(parent), 0700);
	snprintf(unsigned_dir, sizeof(unsigned_dir), "%s/unsigned", work);
	snprintf(signed_dir, sizeof(signed_dir), "%s/signed", work);
	snprintf(log, sizeof(log), "%s/qa-check.log", work);
	snprintf(qa_db, sizeof(qa_db), "%s/qa.db", work);
	if ((mkdir(work, 0700) != 0 && errno != EEXIST) ||
	    (mkdir(unsigned_dir, 0700) != 0 && errno != EEXIST) ||
	    (mkdir(signed_dir, 0700) != 0 && errno != EEXIST)) {
		fprintf(stderr, "titulos: qa-check: %s: cannot create the work directory: %s\n",
			work, strerror(errno));
		status = EXIT_FAILURE_IO;
		goto out;
	}
	const char *entidad = conf->idEntidadFederativa ? conf->idEntidadFederativa : "09";
	size_t ncar = conf->ncarreras < QA_MAX_CARRERAS ? conf->ncarreras : QA_MAX_CARRERAS;
	size_t nfir = conf->nfirmantes < QA_MAX_FIRMANTES ? conf->nfirmantes : QA_MAX_FIRMANTES;
	char folio[64];

	/* 1. careers, every signer */
	snprintf(csv_path, sizeof(csv_path), "%s/carreras.csv", work);
	csv = fopen(csv_path, "w");
	int werr = !csv || fputs(CSV_HEADER, csv) < 0;
	for (size_t k = 0; !werr && k < ncar; k++) {
		snprintf(folio, sizeof(folio), "QA%s-C%zu", stamp, k + 1);
		werr = qa_row(csv, folio, &conf->carreras[k], year, today, entidad, k) != 0;
	}
	if (csv && fclose(csv) != 0)
		werr = 1;
	csv = NULL;
	if (werr) {
		fprintf(stderr, "titulos: qa-check: %s: cannot write\n", csv_path);
		status = EXIT_FAILURE_IO;
		goto out;
	}
	if ((status = qa_build(conf, cat, csv_path, unsigned_dir)))
		goto out;
	/* 2. each signer alone, on the first career */
	for (size_t i = 0; i < nfir; i++) {
		struct titulo_config one = *conf;
		one.firmantes = &conf->firmantes[i];
		one.nfirmantes = 1;
		snprintf(csv_path, sizeof(csv_path), "%s/firmante-%zu.csv", work, i + 1);
		snprintf(folio, sizeof(folio), "QA%s-F%zu", stamp, i + 1);
		csv = fopen(csv_path, "w");
		werr = !csv || fputs(CSV_HEADER, csv) < 0 ||
		       qa_row(csv, folio, &conf->carreras[0], year, today, entidad, i + 1) != 0;
		if (csv && fclose(csv) != 0)
			werr = 1;
		csv = NULL;
		if (werr) {
			fprintf(stderr, "titulos: qa-check: %s: cannot write\n", csv_path);
			status = EXIT_FAILURE_IO;
			goto out;
		}
		if ((status = qa_build(&one, cat, csv_path, unsigned_dir)))
			goto out;
	}
	printf("QA check: %zu test title(s) in %s; signing through the agent...\n", ncar + nfir,
	       work);
	fflush(stdout);

	/* 3. sign, submit, follow */
	char *sign_args[] = { "sign", "--config", (char *)conf_path, "--in", unsigned_dir,
			      "--out", signed_dir, sock ? "--socket" : NULL, (char *)sock, NULL };
	int rc = run_self(sign_args, log);
	if (rc != EXIT_OK) {
		fprintf(stderr, "titulos: qa-check: signing the test titles failed (see above and "
				"%s); nothing was sent\n", log);
		status = rc == EXIT_FINDINGS ? EXIT_FINDINGS : EXIT_FAILURE_IO;
		goto out;
	}
	printf("QA check: submitting to %s (profile %s)...\n", prof.url, prof.name);
	fflush(stdout);
	char *submit_args[] = { "submit", "--in", signed_dir, "--state", qa_db, "--met",
				(char *)met_path, NULL };
	int submit_rc = run_self(submit_args, log);
	char *status_args[] = { "status", "--wait", "--state", qa_db, "--met", (char *)met_path,
				NULL };
	int status_rc = submit_rc == EXIT_OK ? run_self(status_args, log) : submit_rc;

	/* 4. the report */
	met_state *qst = NULL;
	if (met_state_open(qa_db, &qst, &e) != 0 ||
	    met_state_titles_each(qst, NULL, collect, res, &e) != 0) {
		fprintf(stderr, "titulos: qa-check: %s\n", e.message);
		met_state_close(qst);
		status = EXIT_FAILURE_IO;
		goto out;
	}
	met_state_close(qst);
	struct text {
		char *p;
		size_t len, cap;
	} sum = { qa->resumen, 0, sizeof(qa->resumen) };
#define SUM(...)                                                                            \
	do {                                                                                \
		int n_ = snprintf(sum.p + sum.len, sum.cap - sum.len, __VA_ARGS__);         \
		if (n_ > 0)                                                                 \
			sum.len = sum.len + (size_t)n_ < sum.cap ? sum.len + (size_t)n_     \
								 : sum.cap - 1;     \
	} while (0)
	size_t bad_signers = 0, bad_careers = 0;
	printf("\nQA readiness report: %s (%s), institution %s, %s\n", prof.url, prof.name,
	       conf->cveInstitucion, today);
	for (size_t i = 0; i < nfir; i++) {
		const struct titulo_conf_firmante *f = &conf->firmantes[i];
		snprintf(folio, sizeof(folio), "QA%s-F%zu", stamp, i + 1);
		const struct qa_title *t = find(res, folio);
		int ok = t && strcmp(t->status, MET_ST_REGISTERED) == 0;
		bad_signers += !ok;
		printf("signer %s (%s %s, CURP %s): %s\n  title %s: %s: %s\n", f->seccion,
		       f->nombre, f->primerApellido, f->curp, ok ? "ready" : "NOT READY", folio,
		       t ? t->status : "not sent", t ? t->message : "");
		if (!ok)
			printf("  fix: %s\n", t ? fix_for(t->message, 1) : "see the errors above");
		SUM("signer %s %s: %s: %s\n", f->seccion, f->curp, ok ? "ready" : "NOT READY",
		    t ? t->message : "not sent");
	}
	for (size_t k = 0; k < ncar; k++) {
		const struct titulo_conf_carrera *c = &conf->carreras[k];
		snprintf(folio, sizeof(folio), "QA%s-C%zu", stamp, k + 1);
		const struct qa_title *t = find(res, folio);
		int ok = t && strcmp(t->status, MET_ST_REGISTERED) == 0;
		bad_careers += !ok;
		printf("career %s %s: %s\n  title %s: %s: %s\n", c->cveCarrera, c->nombreCarrera,
		       ok ? "ready" : "NOT READY", folio, t ? t->status : "not sent",
		       t ? t->message : "");
		if (!ok)
			printf("  fix: %s\n", t ? fix_for(t->message, 0) : "see the errors above");
		SUM("career %s: %s: %s\n", c->cveCarrera, ok ? "ready" : "NOT READY",
		    t ? t->message : "not sent");
	}
#undef SUM
	qa->listo = bad_signers == 0 && bad_careers == 0 && submit_rc == EXIT_OK &&
		    status_rc == EXIT_OK;
	if (qa->listo)
		printf("result: READY: every signer and career passed the QA service. Ask the DGP "
		       "for production credentials, then run 'titulos perfil listo produccion'.\n");
	else
		printf("result: NOT READY: %zu signer(s) and %zu career(s) to fix%s (details in "
		       "%s)\n", bad_signers, bad_careers,
		       submit_rc || status_rc ? "; the lot did not reach its result" : "", log);
	snprintf(qa->url, sizeof(qa->url), "%s", prof.url);
	snprintf(qa->cve_institucion, sizeof(qa->cve_institucion), "%s", conf->cveInstitucion);
	if (met_state_open(state_path, &st, &e) != 0 || met_state_qa_record(st, qa, &e) != 0) {
		fprintf(stderr, "titulos: qa-check: the outcome could not be recorded: %s\n",
			e.message);
		status = EXIT_FAILURE_IO;
		goto out;
	}
	status = qa->listo ? EXIT_OK : EXIT_FINDINGS;
out:
	if (csv)
		fclose(csv);
	met_state_close(st);
	met_profile_clear(&prof);
	free(res);
	free(qa);
	titulo_config_free(conf);
	titulo_catalogos_free(cat);
	return status;
}

int titulos_cmd_onboarding(const char *cmd, int argc, char **argv)
{
	if (strcmp(cmd, "alta") == 0)
		return onboarding_cmd_alta(argc, argv);
	if (strcmp(cmd, "qa-check") == 0)
		return cmd_qa_check(argc, argv);
	if (strcmp(cmd, "perfil") == 0)
		return cmd_perfil(argc, argv);
	if (strcmp(cmd, "dgair") == 0)
		return onboarding_cmd_dgair(argc, argv);
	return -1;
}
