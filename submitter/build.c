/*
 * Builder: graduates' CSV + institution configuration + catalogs → one
 * unsigned Título Electrónico per row (§3, §4, §8, §9, §10, §12).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "firmante/titulo.h"
#include "te-csv.h"
#include "titulo-internal.h"

enum col {
	C_FOLIO, C_CURP, C_NOMBRE, C_PAP, C_SAP, C_CORREO, C_CVECARRERA, C_FINI, C_FTERM,
	C_IDMOD, C_FEXAM, C_FEXEN, C_FEXP, C_CUMPLIO, C_IDFUND, C_IDENT, C_INSTPROC,
	C_IDTIPOANT, C_IDENTANT, C_FINIANT, C_FTERMANT, C_NOCED, C_N
};

static const struct {
	const char *name;
	int required; /* column and value required */
} cols[C_N] = {
	[C_FOLIO] = { "folioControl", 1 },
	[C_CURP] = { "curp", 1 },
	[C_NOMBRE] = { "nombre", 1 },
	[C_PAP] = { "primerApellido", 1 },
	[C_SAP] = { "segundoApellido", 0 },
	[C_CORREO] = { "correoElectronico", 1 },
	[C_CVECARRERA] = { "cveCarrera", 1 },
	[C_FINI] = { "fechaInicio", 0 },
	[C_FTERM] = { "fechaTerminacion", 1 },
	[C_IDMOD] = { "idModalidadTitulacion", 1 },
	[C_FEXAM] = { "fechaExamenProfesional", 0 },
	[C_FEXEN] = { "fechaExencionExamenProfesional", 0 },
	[C_FEXP] = { "fechaExpedicion", 1 },
	[C_CUMPLIO] = { "cumplioServicioSocial", 1 },
	[C_IDFUND] = { "idFundamentoLegalServicioSocial", 1 },
	[C_IDENT] = { "idEntidadFederativa", 0 },
	[C_INSTPROC] = { "institucionProcedencia", 1 },
	[C_IDTIPOANT] = { "idTipoEstudioAntecedente", 1 },
	[C_IDENTANT] = { "idEntidadFederativaAntecedente", 1 },
	[C_FINIANT] = { "fechaInicioAntecedente", 0 },
	[C_FTERMANT] = { "fechaTerminacionAntecedente", 1 },
	[C_NOCED] = { "noCedula", 0 },
};

struct bctx {
	const char *file;
	struct titulo_findings *findings;
	int colpos[C_N];
	unsigned long row;
	int row_errors;
	int nomem;
};

static void finding(struct bctx *b, int sev, int c, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void finding(struct bctx *b, int sev, int c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (sev == TITULO_ERROR)
		b->row_errors++;
	unsigned long column = (c >= 0 && b->colpos[c] >= 0) ? (unsigned long)b->colpos[c] + 1 : 0;
	if (te_finding_add(b->findings, sev, sev == TITULO_ERROR ? FIRMANTE_E_INVALID : 0, -1, NULL,
			   b->file, b->row, column, c >= 0 ? cols[c].name : "", "%s", msg))
		b->nomem = 1;
}

static int all_digits(const char *s, size_t n)
{
	if (!s || strlen(s) != n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

static int email_ok(const char *s)
{
	const char *at = strchr(s, '@');
	if (!at || at == s || strchr(at + 1, '@') || strchr(s, ' '))
		return 0;
	const char *dot = strrchr(at + 1, '.');
	return dot && dot > at + 1 && dot[1] != '\0';
}

static int folio_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 40)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return 0;
	return 1;
}

static void check_date(struct bctx *b, char **v, int c)
{
	if (v[c] && titulo_date_check(v[c]) != 0)
		finding(b, TITULO_ERROR, c, "'%s' is not a date YYYY-MM-DD (§8)", v[c]);
}

/* @a <= @b for two valid dates (or either absent). */
static void check_order(struct bctx *b, char **v, int ca, int cb, int sev, const char *rule)
{
	if (!v[ca] || !v[cb] || titulo_date_check(v[ca]) || titulo_date_check(v[cb]))
		return;
	if (strcmp(v[ca], v[cb]) > 0)
		finding(b, sev, cb, "%s %s is before %s %s: %s", cols[cb].name, v[cb], cols[ca].name,
			v[ca], rule);
}

static const char *catalog(struct bctx *b, const titulo_catalogos *cat, const char *catalogo,
			   char **v, int c)
{
	if (!v[c])
		return NULL;
	const char *d = titulo_catalogo_descripcion(cat, catalogo, v[c]);
	if (!d)
		finding(b, TITULO_ERROR, c, "'%s' is not an id of the catalog %s", v[c], catalogo);
	return d;
}

static const char *entidad(struct bctx *b, const titulo_catalogos *cat, char **v, int c)
{
	if (!v[c])
		return NULL;
	if (!all_digits(v[c], 2)) {
		finding(b, TITULO_ERROR, c, "'%s' is not a two-digit entity id 01..33 (§3)", v[c]);
		return NULL;
	}
	return catalog(b, cat, "entidadFederativa", v, c);
}

#define SET(elem, name, val)                                          \
	do {                                                          \
		rc = titulo_set_attr(t, (elem), (name), (val));       \
		if (rc)                                               \
			goto out;                                     \
	} while (0)

/* One checked row → a model. */
static int make_titulo(const struct titulo_config *conf, const titulo_catalogos *cat, char **v,
		       const struct titulo_conf_carrera *k, const char *ident, titulo **out)
{
	int rc;
	titulo *t = NULL;
	rc = titulo_new(&t);
	if (rc)
		goto out;
	SET("TituloElectronico", "folioControl", v[C_FOLIO]);
	for (size_t i = 0; i < conf->nfirmantes; i++) {
		const struct titulo_conf_firmante *f = &conf->firmantes[i];
		size_t idx;
		rc = titulo_firmante_add(t, &idx);
		if (rc)
			goto out;
		const char *vals[][2] = {
			{ "nombre", f->nombre },
			{ "primerApellido", f->primerApellido },
			{ "segundoApellido", f->segundoApellido },
			{ "curp", f->curp },
			{ "idCargo", f->idCargo },
			{ "cargo", titulo_catalogo_descripcion(cat, "cargo", f->idCargo) },
			{ "abrTitulo", f->abrTitulo },
		};
		for (size_t j = 0; j < sizeof(vals) / sizeof(vals[0]); j++) {
			rc = titulo_firmante_set_attr(t, idx, vals[j][0], vals[j][1]);
			if (rc)
				goto out;
		}
	}
	SET("Institucion", "cveInstitucion", conf->cveInstitucion);
	SET("Institucion", "nombreInstitucion", conf->nombreInstitucion);
	SET("Carrera", "cveCarrera", k->cveCarrera);
	SET("Carrera", "nombreCarrera", k->nombreCarrera);
	SET("Carrera", "fechaInicio", v[C_FINI]);
	SET("Carrera", "fechaTerminacion", v[C_FTERM]);
	SET("Carrera", "idAutorizacionReconocimiento", k->idAutorizacionReconocimiento);
	SET("Carrera", "autorizacionReconocimiento",
	    titulo_catalogo_descripcion(cat, "autorizacionReconocimiento",
					k->idAutorizacionReconocimiento));
	SET("Carrera", "numeroRvoe", k->numeroRvoe);
	SET("Profesionista", "curp", v[C_CURP]);
	SET("Profesionista", "nombre", v[C_NOMBRE]);
	SET("Profesionista", "primerApellido", v[C_PAP]);
	SET("Profesionista", "segundoApellido", v[C_SAP]);
	SET("Profesionista", "correoElectronico", v[C_CORREO]);
	SET("Expedicion", "fechaExpedicion", v[C_FEXP]);
	SET("Expedicion", "idModalidadTitulacion", v[C_IDMOD]);
	SET("Expedicion", "modalidadTitulacion",
	    titulo_catalogo_descripcion(cat, "modalidadTitulacion", v[C_IDMOD]));
	SET("Expedicion", "fechaExamenProfesional", v[C_FEXAM]);
	SET("Expedicion", "fechaExencionExamenProfesional", v[C_FEXEN]);
	SET("Expedicion", "cumplioServicioSocial", v[C_CUMPLIO]);
	SET("Expedicion", "idFundamentoLegalServicioSocial", v[C_IDFUND]);
	SET("Expedicion", "fundamentoLegalServicioSocial",
	    titulo_catalogo_descripcion(cat, "fundamentoLegalServicioSocial", v[C_IDFUND]));
	SET("Expedicion", "idEntidadFederativa", ident);
	SET("Expedicion", "entidadFederativa",
	    titulo_catalogo_descripcion(cat, "entidadFederativa", ident));
	SET("Antecedente", "institucionProcedencia", v[C_INSTPROC]);
	SET("Antecedente", "idTipoEstudioAntecedente", v[C_IDTIPOANT]);
	SET("Antecedente", "tipoEstudioAntecedente",
	    titulo_catalogo_descripcion(cat, "tipoEstudioAntecedente", v[C_IDTIPOANT]));
	SET("Antecedente", "idEntidadFederativa", v[C_IDENTANT]);
	SET("Antecedente", "entidadFederativa",
	    titulo_catalogo_descripcion(cat, "entidadFederativa", v[C_IDENTANT]));
	SET("Antecedente", "fechaInicio", v[C_FINIANT]);
	SET("Antecedente", "fechaTerminacion", v[C_FTERMANT]);
	SET("Antecedente", "noCedula", v[C_NOCED]);
	*out = t;
	t = NULL;
	rc = 0;
out:
	titulo_free(t);
	return rc;
}

/* All rules on one row; @v holds the normalized values (NULL = empty). */
static void check_row(struct bctx *b, const struct titulo_config *conf,
		      const titulo_catalogos *cat, char **v, const char *today,
		      const struct titulo_conf_carrera **carrera, const char **ident)
{
	char why[200];
	for (int c = 0; c < C_N; c++)
		if (cols[c].required && !v[c])
			finding(b, TITULO_ERROR, c, "required value is empty");
	if (v[C_FOLIO] && !folio_ok(v[C_FOLIO]))
		finding(b, TITULO_ERROR, C_FOLIO,
			"'%s': folioControl is 1 to 40 characters from A-Z, 0-9 and '-' (§3)",
			v[C_FOLIO]);
	if (v[C_CURP] && titulo_curp_check(v[C_CURP], why, sizeof(why)) != 0)
		finding(b, TITULO_ERROR, C_CURP, "'%s': %s (§9)", v[C_CURP], why);
	if (v[C_CORREO] && !email_ok(v[C_CORREO]))
		finding(b, TITULO_ERROR, C_CORREO, "'%s' is not an e-mail address", v[C_CORREO]);

	*carrera = NULL;
	for (size_t i = 0; v[C_CVECARRERA] && i < conf->ncarreras; i++)
		if (strcmp(conf->carreras[i].cveCarrera, v[C_CVECARRERA]) == 0)
			*carrera = &conf->carreras[i];
	if (v[C_CVECARRERA] && !*carrera)
		finding(b, TITULO_ERROR, C_CVECARRERA,
			"career '%s' has no [carrera %s] section in %s", v[C_CVECARRERA],
			v[C_CVECARRERA], conf->path);

	int dates[] = { C_FINI, C_FTERM, C_FEXAM, C_FEXEN, C_FEXP, C_FINIANT, C_FTERMANT };
	for (size_t i = 0; i < sizeof(dates) / sizeof(dates[0]); i++)
		check_date(b, v, dates[i]);

	/* modalidad → which date (§10) */
	if (catalog(b, cat, "modalidadTitulacion", v, C_IDMOD)) {
		const char *tipo = titulo_catalogo_detalle(cat, "modalidadTitulacion", v[C_IDMOD]);
		if (tipo && strcmp(tipo, "ACTA DE EXAMEN") == 0) {
			if (!v[C_FEXAM])
				finding(b, TITULO_ERROR, C_FEXAM,
					"modalidad %s (ACTA DE EXAMEN) needs fechaExamenProfesional "
					"(§10)",
					v[C_IDMOD]);
			if (v[C_FEXEN])
				finding(b, TITULO_ERROR, C_FEXEN,
					"modalidad %s (ACTA DE EXAMEN) takes no "
					"fechaExencionExamenProfesional; leave it empty (§10)",
					v[C_IDMOD]);
		} else {
			if (!v[C_FEXEN])
				finding(b, TITULO_ERROR, C_FEXEN,
					"modalidad %s (CONSTANCIA DE EXENCIÓN) needs "
					"fechaExencionExamenProfesional (§10)",
					v[C_IDMOD]);
			if (v[C_FEXAM])
				finding(b, TITULO_ERROR, C_FEXAM,
					"modalidad %s (CONSTANCIA DE EXENCIÓN) takes no "
					"fechaExamenProfesional; leave it empty (§10)",
					v[C_IDMOD]);
		}
	}
	/* date order (§8) */
	const char *rule = "dates go inicio ≤ terminación ≤ examen/exención ≤ expedición (§8)";
	check_order(b, v, C_FINI, C_FTERM, TITULO_ERROR, rule);
	check_order(b, v, C_FTERM, C_FEXAM, TITULO_ERROR, rule);
	check_order(b, v, C_FTERM, C_FEXEN, TITULO_ERROR, rule);
	check_order(b, v, C_FEXAM, C_FEXP, TITULO_ERROR, rule);
	check_order(b, v, C_FEXEN, C_FEXP, TITULO_ERROR, rule);
	check_order(b, v, C_FTERM, C_FEXP, TITULO_ERROR, rule);
	check_order(b, v, C_FINIANT, C_FTERMANT, TITULO_ERROR,
		    "antecedent studies start before they end (§8)");
	check_order(b, v, C_FTERMANT, C_FINI, TITULO_WARNING,
		    "antecedent studies usually end before the career starts (§8)");
	if (v[C_FEXP] && titulo_date_check(v[C_FEXP]) == 0 && strcmp(v[C_FEXP], today) > 0)
		finding(b, TITULO_ERROR, C_FEXP, "fechaExpedicion %s is in the future (§8)",
			v[C_FEXP]);

	/* servicio social (§10) */
	if (v[C_CUMPLIO] && strcmp(v[C_CUMPLIO], "0") != 0 && strcmp(v[C_CUMPLIO], "1") != 0)
		finding(b, TITULO_ERROR, C_CUMPLIO, "cumplioServicioSocial is 1 or 0, not '%s'",
			v[C_CUMPLIO]);
	catalog(b, cat, "fundamentoLegalServicioSocial", v, C_IDFUND);
	int posgrado = 0;
	if (catalog(b, cat, "tipoEstudioAntecedente", v, C_IDTIPOANT))
		posgrado = strcmp(v[C_IDTIPOANT], "1") == 0 || strcmp(v[C_IDTIPOANT], "2") == 0;
	if (v[C_CUMPLIO] && v[C_IDFUND] && v[C_IDTIPOANT]) {
		int ok;
		if (posgrado)
			ok = strcmp(v[C_CUMPLIO], "0") == 0 && strcmp(v[C_IDFUND], "5") == 0;
		else
			ok = strcmp(v[C_CUMPLIO], "1") == 0 && strlen(v[C_IDFUND]) == 1 &&
			     v[C_IDFUND][0] >= '1' && v[C_IDFUND][0] <= '4';
		if (!ok)
			finding(b, TITULO_WARNING, C_CUMPLIO,
				"cumplioServicioSocial %s with fundamento %s is unusual for %s; "
				"accepted: postgraduate 0 with 5, licenciatura/TSU 1 with 1-4 (§10)",
				v[C_CUMPLIO], v[C_IDFUND],
				posgrado ? "a postgraduate title" : "this level");
	}
	if (v[C_NOCED] && !all_digits(v[C_NOCED], strlen(v[C_NOCED])))
		finding(b, TITULO_ERROR, C_NOCED, "noCedula is digits only, not '%s'", v[C_NOCED]);
	if (v[C_NOCED] && !posgrado && v[C_IDTIPOANT])
		finding(b, TITULO_WARNING, C_NOCED,
			"noCedula is for postgraduate titles (antecedente MAESTRÍA or "
			"LICENCIATURA) (§10)");
	if (!v[C_NOCED] && posgrado)
		finding(b, TITULO_WARNING, C_NOCED,
			"a postgraduate title usually gives the noCedula of the antecedent degree "
			"(§10)");

	/* entities (§3) */
	*ident = v[C_IDENT] ? v[C_IDENT] : conf->idEntidadFederativa;
	if (v[C_IDENT])
		entidad(b, cat, v, C_IDENT);
	entidad(b, cat, v, C_IDENTANT);
}

void titulo_lote_free(struct titulo_lote *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->count; i++) {
		titulo_free(l->titulos[i]);
		free(l->folios[i]);
	}
	free(l->titulos);
	free(l->folios);
	free(l);
}

int titulo_build_csv(const struct titulo_config *conf, const titulo_catalogos *cat,
		     const char *csv_path, struct titulo_lote **out,
		     struct titulo_findings *findings)
{
	int rc;
	struct te_csv csv = { 0 };
	struct titulo_lote *lote = NULL;
	char why[256];
	char *v[C_N] = { 0 };
	struct bctx b = { .file = csv_path, .findings = findings };
	size_t errors = 0;
	char today[16];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(today, sizeof(today), "%Y-%m-%d", &tm);

	for (int c = 0; c < C_N; c++)
		b.colpos[c] = -1;
	rc = te_csv_read(csv_path, TITULO_MAX_CSV_BYTES, TITULO_MAX_CSV_ROWS + 1, &csv, why,
			 sizeof(why));
	if (rc) {
		if (rc == FIRMANTE_E_NOMEM)
			goto out;
		b.row = 0;
		finding(&b, TITULO_ERROR, -1, "%s", why);
		if (rc != FIRMANTE_E_IO && rc != FIRMANTE_E_TOO_LARGE)
			rc = FIRMANTE_E_INVALID;
		goto out;
	}
	if (csv.nrows == 0) {
		finding(&b, TITULO_ERROR, -1, "the file is empty; it needs a header row");
		rc = FIRMANTE_E_INVALID;
		goto out;
	}
	/* header */
	b.row = 1;
	const struct te_csv_row *h = &csv.rows[0];
	for (size_t j = 0; j < h->n; j++) {
		int found = -1;
		for (int c = 0; c < C_N; c++)
			if (strcmp(h->f[j], cols[c].name) == 0)
				found = c;
		if (found < 0) {
			te_finding_add(findings, TITULO_ERROR, FIRMANTE_E_INVALID, -1, NULL, csv_path, 1,
				       j + 1, h->f[j], "unknown column");
			b.row_errors++;
		} else if (b.colpos[found] >= 0) {
			te_finding_add(findings, TITULO_ERROR, FIRMANTE_E_INVALID, -1, NULL, csv_path, 1,
				       j + 1, h->f[j], "column appears twice");
			b.row_errors++;
		} else {
			b.colpos[found] = (int)j;
		}
	}
	for (int c = 0; c < C_N; c++)
		if (cols[c].required && b.colpos[c] < 0)
			finding(&b, TITULO_ERROR, c, "required column is missing from the header");
	if (b.row_errors) {
		rc = FIRMANTE_E_INVALID;
		goto out;
	}

	lote = calloc(1, sizeof(*lote));
	if (!lote || !(lote->titulos = calloc(csv.nrows, sizeof(*lote->titulos))) ||
	    !(lote->folios = calloc(csv.nrows, sizeof(*lote->folios)))) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	for (size_t r = 1; r < csv.nrows; r++) {
		const struct te_csv_row *row = &csv.rows[r];
		b.row = r + 1;
		b.row_errors = 0;
		if (row->n != h->n) {
			finding(&b, TITULO_ERROR, -1, "row has %zu fields; the header has %zu", row->n,
				h->n);
			errors++;
			continue;
		}
		for (int c = 0; c < C_N; c++) {
			free(v[c]);
			v[c] = NULL;
			if (b.colpos[c] < 0)
				continue;
			const char *raw = row->f[b.colpos[c]];
			char *norm = NULL;
			int changed = 0;
			int nr = titulo_normalize(raw, &norm, &changed);
			if (nr == FIRMANTE_E_NOMEM) {
				rc = nr;
				goto out;
			}
			if (nr) {
				finding(&b, TITULO_ERROR, c,
					"not valid UTF-8 text, or holds a control character or '|'");
				continue;
			}
			if (changed)
				finding(&b, TITULO_WARNING, c,
					"normalized to \"%.400s\" (NFC, trimmed, single spaces; §12)",
					norm);
			if (!norm[0]) {
				free(norm);
				continue;
			}
			v[c] = norm;
		}
		const struct titulo_conf_carrera *carrera = NULL;
		const char *ident = NULL;
		check_row(&b, conf, cat, v, today, &carrera, &ident);
		if (b.nomem) {
			rc = FIRMANTE_E_NOMEM;
			goto out;
		}
		if (v[C_FOLIO]) {
			for (size_t i = 0; i < lote->count; i++)
				if (strcmp(lote->folios[i], v[C_FOLIO]) == 0)
					finding(&b, TITULO_ERROR, C_FOLIO,
						"folioControl '%s' is repeated in this batch",
						v[C_FOLIO]);
		}
		if (b.row_errors) {
			errors++;
			continue;
		}
		titulo *t = NULL;
		rc = make_titulo(conf, cat, v, carrera, ident, &t);
		if (rc)
			goto out;
		lote->titulos[lote->count] = t;
		lote->folios[lote->count] = v[C_FOLIO];
		v[C_FOLIO] = NULL;
		lote->count++;
	}
	if (b.nomem) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	if (errors) {
		rc = FIRMANTE_E_INVALID;
		goto out;
	}
	*out = lote;
	lote = NULL;
	rc = 0;
out:
	for (int c = 0; c < C_N; c++)
		free(v[c]);
	titulo_lote_free(lote);
	te_csv_free(&csv);
	return rc;
}
