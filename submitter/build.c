/*
 * Builder: graduates' CSV + institution configuration + catalogs → one
 * unsigned Título Electrónico per row (§3, §4, §8, §9, §10, §12).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <utf8proc.h>

#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "firmante/titulo.h"
#include "te-csv.h"
#include "titulo-internal.h"

enum col {
	C_FOLIO, C_CURP, C_NOMBRE, C_PAP, C_SAP, C_CORREO, C_CVECARRERA, C_FINI, C_FTERM,
	C_IDMOD, C_FEXAM, C_FEXEN, C_FEXP, C_CUMPLIO, C_IDFUND, C_IDENT, C_INSTPROC,
	C_IDTIPOANT, C_IDENTANT, C_FINIANT, C_FTERMANT, C_NOCED,
	/* optional texts checked against the configuration or a catalog */
	C_NOMCARRERA, C_MOD, C_FUND, C_ENT, C_TIPOANT, C_ENTANT, C_N
};

static const struct {
	const char *name;
	int required; /* column and value required */
	int date;     /* a date: YYYY-MM-DD or DD/MM/YYYY */
} cols[C_N] = {
	[C_FOLIO] = { "folioControl", 1, 0 },
	[C_CURP] = { "curp", 1, 0 },
	[C_NOMBRE] = { "nombre", 1, 0 },
	[C_PAP] = { "primerApellido", 1, 0 },
	[C_SAP] = { "segundoApellido", 0, 0 },
	[C_CORREO] = { "correoElectronico", 1, 0 },
	[C_CVECARRERA] = { "cveCarrera", 1, 0 },
	[C_FINI] = { "fechaInicio", 0, 1 },
	[C_FTERM] = { "fechaTerminacion", 1, 1 },
	[C_IDMOD] = { "idModalidadTitulacion", 1, 0 },
	[C_FEXAM] = { "fechaExamenProfesional", 0, 1 },
	[C_FEXEN] = { "fechaExencionExamenProfesional", 0, 1 },
	[C_FEXP] = { "fechaExpedicion", 1, 1 },
	[C_CUMPLIO] = { "cumplioServicioSocial", 1, 0 },
	[C_IDFUND] = { "idFundamentoLegalServicioSocial", 1, 0 },
	[C_IDENT] = { "idEntidadFederativa", 0, 0 },
	[C_INSTPROC] = { "institucionProcedencia", 1, 0 },
	[C_IDTIPOANT] = { "idTipoEstudioAntecedente", 1, 0 },
	[C_IDENTANT] = { "idEntidadFederativaAntecedente", 1, 0 },
	[C_FINIANT] = { "fechaInicioAntecedente", 0, 1 },
	[C_FTERMANT] = { "fechaTerminacionAntecedente", 1, 1 },
	[C_NOCED] = { "noCedula", 0, 0 },
	[C_NOMCARRERA] = { "nombreCarrera", 0, 0 },
	[C_MOD] = { "modalidadTitulacion", 0, 0 },
	[C_FUND] = { "fundamentoLegalServicioSocial", 0, 0 },
	[C_ENT] = { "entidadFederativa", 0, 0 },
	[C_TIPOANT] = { "tipoEstudioAntecedente", 0, 0 },
	[C_ENTANT] = { "entidadFederativaAntecedente", 0, 0 },
};

struct bctx {
	const char *file;
	struct titulo_findings *findings;
	int colpos[C_N];
	unsigned long row;
	int row_errors;
	int nomem;
	unsigned long long invalid; /* bit c: column c's value was refused as text */
};

static void finding(struct bctx *b, const char *rule, int c, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void finding(struct bctx *b, const char *rule, int c, const char *fmt, ...)
{
	const struct titulo_rule *r = titulo_rule_find(rule);
	if (!r || r->severity == TITULO_ERROR)
		b->row_errors++;
	unsigned long column = (c >= 0 && b->colpos[c] >= 0) ? (unsigned long)b->colpos[c] + 1 : 0;
	va_list ap;
	va_start(ap, fmt);
	int rc = te_finding_rv(b->findings, rule, -1, NULL, b->file, b->row, column,
			       c >= 0 ? cols[c].name : "", fmt, ap);
	va_end(ap);
	if (rc == FIRMANTE_E_NOMEM)
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

/* @a <= @b for two valid dates (or either absent). */
static void check_order(struct bctx *b, char **v, int ca, int cb, const char *rule,
			const char *why)
{
	if (!v[ca] || !v[cb] || titulo_date_check(v[ca]) || titulo_date_check(v[cb]))
		return;
	if (strcmp(v[ca], v[cb]) > 0)
		finding(b, rule, cb, "%s %s is before %s %s: %s", cols[cb].name, v[cb],
			cols[ca].name, v[ca], why);
}

static const char *catalog(struct bctx *b, const titulo_catalogos *cat, const char *catalogo,
			   char **v, int c)
{
	if (!v[c])
		return NULL;
	const char *d = titulo_catalogo_descripcion(cat, catalogo, v[c]);
	if (!d)
		finding(b, "catalog-id-unknown", c, "'%s' is not an id of the catalog %s (§4)", v[c],
			catalogo);
	return d;
}

/* A catalog text given in column @ct next to its id: byte for byte (§4). */
static void catalog_text(struct bctx *b, char **raw, int ct, const char *expected,
			 const char *idname, const char *id)
{
	if (!raw[ct] || !raw[ct][0] || !expected)
		return;
	if (strcmp(raw[ct], expected) != 0)
		finding(b, "catalog-text-mismatch", ct,
			"the text \"%s\" is not the catalog's text for %s %s, which is \"%s\"; "
			"the DGP rejects any difference (accents, spaces, case) (§4)",
			raw[ct], idname, id, expected);
}

static const char *entidad(struct bctx *b, const titulo_catalogos *cat, char **v, int c)
{
	if (!v[c])
		return NULL;
	if (!all_digits(v[c], 2)) {
		if (all_digits(v[c], 1))
			finding(b, "entity-two-digits", c,
				"'%s' is not a two-digit entity id: write 0%s; the DGP rejects '%s' "
				"(§3, §13.2)",
				v[c], v[c], v[c]);
		else
			finding(b, "entity-two-digits", c,
				"'%s' is not a two-digit entity id 01..33 (§3)", v[c]);
		return NULL;
	}
	return catalog(b, cat, "entidadFederativa", v, c);
}

static int ws(utf8proc_int32_t c)
{
	return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
	       (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
	       c == 0x205F || c == 0x3000;
}

/* Why titulo_normalize() refused @s, naming the first culprit (§12). */
static void invalid_text_why(const char *s, char *buf, size_t size)
{
	const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
	utf8proc_ssize_t left = (utf8proc_ssize_t)strlen(s);
	for (size_t pos = 1; left > 0; pos++) {
		utf8proc_int32_t c;
		utf8proc_ssize_t k = utf8proc_iterate(p, left, &c);
		if (k <= 0) {
			snprintf(buf, size, "character %zu is not valid UTF-8 (byte 0x%02X)", pos,
				 (unsigned)*p);
			return;
		}
		if (c == '|') {
			snprintf(buf, size, "character %zu is '|', which the cadena original uses "
				 "between fields; the standard does not allow it in a value (§12)", pos);
			return;
		}
		if ((c < 0x20 && !ws(c)) || c == 0xFFFE || c == 0xFFFF) {
			snprintf(buf, size, "character %zu is the invisible control character U+%04X "
				 "(often pasted from another program); delete it", pos, (unsigned)c);
			return;
		}
		p += k;
		left -= k;
	}
	snprintf(buf, size, "not valid text");
}

/* @s with the characters a person cannot see (special spaces, accents
 * written as a separate mark, format characters) shown as <U+XXXX>, and
 * what normalization did to it, in @what. */
static void describe_normalized(const char *s, char *shown, size_t shown_size, char *what,
				size_t what_size)
{
	const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
	utf8proc_ssize_t left = (utf8proc_ssize_t)strlen(s);
	size_t o = 0;
	int special = 0, marks = 0, repeated = 0, edges = 0, prev_ws = 0, first = 1;
	shown[0] = '\0';
	while (left > 0) {
		utf8proc_int32_t c;
		utf8proc_ssize_t k = utf8proc_iterate(p, left, &c);
		if (k <= 0)
			break;
		utf8proc_category_t cat = utf8proc_category(c);
		int w = ws(c);
		if (w && (first || left == k))
			edges = 1;
		if (w && prev_ws)
			repeated = 1;
		prev_ws = w;
		first = 0;
		int hidden = (w && c != ' ') || cat == UTF8PROC_CATEGORY_MN ||
			     cat == UTF8PROC_CATEGORY_CF;
		special |= w && c != ' ';
		marks |= cat == UTF8PROC_CATEGORY_MN;
		if (hidden) {
			int n = snprintf(shown + o, shown_size - o, "<U+%04X>", (unsigned)c);
			if (n < 0 || (size_t)n >= shown_size - o)
				break;
			o += (size_t)n;
		} else {
			if ((size_t)k >= shown_size - o)
				break;
			memcpy(shown + o, p, (size_t)k);
			o += (size_t)k;
			shown[o] = '\0';
		}
		p += k;
		left -= k;
	}
	int wn = snprintf(what, what_size, "%s%s%s%s",
		 special ? "special spaces (<U+00A0> is a no-break space) became plain spaces; " : "",
		 marks ? "accents written as a separate mark were joined to their letter; " : "",
		 edges ? "spaces at the start or end were removed; " : "",
		 repeated ? "repeated spaces became one; " : "");
	if (wn < 0)
		what[0] = '\0'; /* a longer text is cut; the sentence stays readable */
	size_t wl = strlen(what);
	if (wl >= 2)
		what[wl - 2] = '\0';
}

static const char *const month_names[12] = {
	"January", "February", "March", "April", "May", "June", "July", "August",
	"September", "October", "November", "December",
};

/* The message for a date te_date_input() refused: a day the month does not
 * have is said so; anything else is a format problem. */
static void date_why(const char *v, char *buf, size_t size)
{
	unsigned y = 0, m = 0, d = 0;
	int ok = 0;
	size_t n = strlen(v);
	if (n == 10 && v[4] == '-' && v[7] == '-') {
		ok = 1;
		for (size_t i = 0; i < 10; i++)
			if (i != 4 && i != 7 && (v[i] < '0' || v[i] > '9'))
				ok = 0;
		if (ok) {
			y = (unsigned)((v[0] - '0') * 1000 + (v[1] - '0') * 100 + (v[2] - '0') * 10 + (v[3] - '0'));
			m = (unsigned)((v[5] - '0') * 10 + (v[6] - '0'));
			d = (unsigned)((v[8] - '0') * 10 + (v[9] - '0'));
		}
	} else {
		/* D/M/YYYY or DD/MM/YYYY */
		unsigned part[3] = { 0, 0, 0 };
		size_t digits[3] = { 0, 0, 0 }, k = 0;
		ok = 1;
		for (size_t i = 0; i < n && ok; i++) {
			if (v[i] == '/') {
				if (++k > 2)
					ok = 0;
			} else if (v[i] >= '0' && v[i] <= '9' && digits[k] < 4) {
				part[k] = part[k] * 10 + (unsigned)(v[i] - '0');
				digits[k]++;
			} else {
				ok = 0;
			}
		}
		ok = ok && k == 2 && digits[0] >= 1 && digits[0] <= 2 && digits[1] >= 1 &&
		     digits[1] <= 2 && digits[2] == 4;
		d = part[0];
		m = part[1];
		y = part[2];
	}
	if (ok && m >= 1 && m <= 12 && d >= 1) {
		static const unsigned mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
		unsigned last = mdays[m - 1];
		if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
			last = 29;
		if (d > last) {
			snprintf(buf, size, "'%s': %s %u has %u days; there is no day %u (§8)", v,
				 month_names[m - 1], y, last, d);
			return;
		}
	}
	if (ok && (m < 1 || m > 12)) {
		snprintf(buf, size, "'%s': there is no month %u; months are 01 to 12 (§8)", v, m);
		return;
	}
	snprintf(buf, size, "'%s' is not a calendar date written YYYY-MM-DD or DD/MM/YYYY (§8)", v);
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

static int is_blank(const char *s)
{
	for (; s && *s; s++)
		if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n')
			return 0;
	return 1;
}

/* All rules on one row; @v holds the normalized values (NULL = empty),
 * @raw the values as given. */
static void check_row(struct bctx *b, const struct titulo_config *conf,
		      const titulo_catalogos *cat, char **v, char **raw, const char *today,
		      const struct titulo_conf_carrera **carrera, const char **ident)
{
	char why[200];
	for (int c = 0; c < C_N; c++)
		if (cols[c].required && !v[c] && b->colpos[c] >= 0 && !(b->invalid & (1ull << c)) &&
		    is_blank(raw[c]))
			finding(b, "required-empty", c, "required value is empty");
	if (v[C_FOLIO] && !folio_ok(v[C_FOLIO]))
		finding(b, "folio-format", C_FOLIO,
			"'%s': folioControl is 1 to 40 characters from A-Z, 0-9 and '-' (§3)",
			v[C_FOLIO]);
	if (v[C_CURP]) {
		int k = te_curp_check(v[C_CURP], why, sizeof(why));
		if (k)
			finding(b, k == 1 ? "curp-length" : k == 2 ? "curp-pattern" : "curp-check-digit",
				C_CURP, "'%s': %s (§9)", v[C_CURP], why);
	}
	if (v[C_CORREO] && !email_ok(v[C_CORREO]))
		finding(b, "email-format", C_CORREO, "'%s' is not an e-mail address", v[C_CORREO]);

	*carrera = NULL;
	for (size_t i = 0; v[C_CVECARRERA] && i < conf->ncarreras; i++)
		if (strcmp(conf->carreras[i].cveCarrera, v[C_CVECARRERA]) == 0)
			*carrera = &conf->carreras[i];
	if (v[C_CVECARRERA] && !*carrera)
		finding(b, "career-unknown", C_CVECARRERA,
			"career '%s' has no [carrera %s] section in %s", v[C_CVECARRERA],
			v[C_CVECARRERA], conf->path);
	if (*carrera && raw[C_NOMCARRERA] && raw[C_NOMCARRERA][0] &&
	    strcmp(raw[C_NOMCARRERA], (*carrera)->nombreCarrera) != 0)
		finding(b, "career-name-mismatch", C_NOMCARRERA,
			"\"%s\" is not the name configured for career %s, \"%s\"; the DGP accepts "
			"only the registered name, byte for byte (§4)",
			raw[C_NOMCARRERA], (*carrera)->cveCarrera, (*carrera)->nombreCarrera);

	/* dates: YYYY-MM-DD or DD/MM/YYYY, written YYYY-MM-DD (§8) */
	for (int c = 0; c < C_N; c++) {
		char d[11];
		if (!cols[c].date || !v[c])
			continue;
		if (te_date_input(v[c], d) != 0) {
			date_why(v[c], why, sizeof(why));
			finding(b, "date-invalid", c, "%s", why);
		} else if (strcmp(d, v[c]) != 0) {
			char *n = malloc(sizeof(d));
			if (!n) {
				b->nomem = 1;
				return;
			}
			memcpy(n, d, sizeof(d));
			free(v[c]);
			v[c] = n;
		}
	}

	/* modalidad → which date (§10) */
	const char *mod = catalog(b, cat, "modalidadTitulacion", v, C_IDMOD);
	catalog_text(b, raw, C_MOD, mod, "idModalidadTitulacion", v[C_IDMOD]);
	if (mod) {
		const char *tipo = titulo_catalogo_detalle(cat, "modalidadTitulacion", v[C_IDMOD]);
		if (tipo && strcmp(tipo, "ACTA DE EXAMEN") == 0) {
			if (!v[C_FEXAM])
				finding(b, "exam-date-missing", C_FEXAM,
					"modalidad %s (%s, ACTA DE EXAMEN) needs fechaExamenProfesional "
					"(§10)",
					v[C_IDMOD], mod);
			if (v[C_FEXEN])
				finding(b, "exemption-date-not-allowed", C_FEXEN,
					"modalidad %s (%s, ACTA DE EXAMEN) takes no "
					"fechaExencionExamenProfesional; leave it empty (§10)",
					v[C_IDMOD], mod);
		} else {
			if (!v[C_FEXEN])
				finding(b, "exemption-date-missing", C_FEXEN,
					"modalidad %s (%s, CONSTANCIA DE EXENCIÓN) needs "
					"fechaExencionExamenProfesional (§10)",
					v[C_IDMOD], mod);
			if (v[C_FEXAM])
				finding(b, "exam-date-not-allowed", C_FEXAM,
					"modalidad %s (%s, CONSTANCIA DE EXENCIÓN) takes no "
					"fechaExamenProfesional; leave it empty (§10)",
					v[C_IDMOD], mod);
		}
	}
	/* date order (§8) */
	check_order(b, v, C_FINI, C_FTERM, "date-career-order",
		    "the career starts before it ends (§8)");
	check_order(b, v, C_FTERM, C_FEXAM, "date-exam-order",
		    "the exam comes after the end of the career (§8)");
	check_order(b, v, C_FTERM, C_FEXEN, "date-exam-order",
		    "the exemption comes after the end of the career (§8)");
	int before = b->row_errors;
	check_order(b, v, C_FEXAM, C_FEXP, "date-expedition-order",
		    "the title is issued after the exam (§8)");
	check_order(b, v, C_FEXEN, C_FEXP, "date-expedition-order",
		    "the title is issued after the exemption (§8)");
	if (b->row_errors == before)
		check_order(b, v, C_FTERM, C_FEXP, "date-expedition-order",
			    "the title is issued after the end of the career (§8)");
	check_order(b, v, C_FINIANT, C_FTERMANT, "date-antecedent-order",
		    "antecedent studies start before they end (§8)");
	check_order(b, v, C_FTERMANT, C_FINI, "date-antecedent-career",
		    "antecedent studies usually end before the career starts (§8)");
	if (v[C_FEXP] && titulo_date_check(v[C_FEXP]) == 0 && strcmp(v[C_FEXP], today) > 0)
		finding(b, "date-future", C_FEXP, "fechaExpedicion %s is after today, %s (§8)",
			v[C_FEXP], today);

	/* servicio social (§10) */
	int cumplio_ok = 1;
	if (v[C_CUMPLIO] && strcmp(v[C_CUMPLIO], "0") != 0 && strcmp(v[C_CUMPLIO], "1") != 0) {
		finding(b, "servicio-social-value", C_CUMPLIO,
			"cumplioServicioSocial is 1 or 0, not '%s'", v[C_CUMPLIO]);
		cumplio_ok = 0;
	}
	const char *fund = catalog(b, cat, "fundamentoLegalServicioSocial", v, C_IDFUND);
	catalog_text(b, raw, C_FUND, fund, "idFundamentoLegalServicioSocial", v[C_IDFUND]);
	int posgrado = 0;
	const char *tipoant = catalog(b, cat, "tipoEstudioAntecedente", v, C_IDTIPOANT);
	catalog_text(b, raw, C_TIPOANT, tipoant, "idTipoEstudioAntecedente", v[C_IDTIPOANT]);
	if (tipoant)
		posgrado = strcmp(v[C_IDTIPOANT], "1") == 0 || strcmp(v[C_IDTIPOANT], "2") == 0;
	if (v[C_CUMPLIO] && cumplio_ok && fund) {
		int no_aplica = strcmp(v[C_IDFUND], "5") == 0;
		int cumplio = strcmp(v[C_CUMPLIO], "1") == 0;
		if (no_aplica == cumplio) {
			finding(b, "servicio-social-fundamento", C_IDFUND,
				"cumplioServicioSocial %s does not agree with fundamento %s (%s): %s "
				"(§10)",
				v[C_CUMPLIO], v[C_IDFUND], fund,
				cumplio ? "a completed servicio social has a fundamento 1-4, not NO APLICA"
					: "NO APLICA (5) is the fundamento when servicio social is not "
					  "required (0)");
		} else if (tipoant && posgrado == cumplio) {
			finding(b, "servicio-social-level", C_CUMPLIO,
				"cumplioServicioSocial %s with fundamento %s is unusual for %s; "
				"accepted: postgraduate 0 with 5, licenciatura/TSU 1 with 1-4 (§10)",
				v[C_CUMPLIO], v[C_IDFUND],
				posgrado ? "a postgraduate title" : "this level");
		}
	}
	if (v[C_NOCED] && !all_digits(v[C_NOCED], strlen(v[C_NOCED])))
		finding(b, "cedula-digits", C_NOCED, "noCedula is digits only, not '%s'", v[C_NOCED]);
	else if (v[C_NOCED] && !posgrado && tipoant)
		finding(b, "cedula-unexpected", C_NOCED,
			"noCedula is for postgraduate titles (antecedente MAESTRÍA or "
			"LICENCIATURA) (§10)");
	if (!v[C_NOCED] && posgrado)
		finding(b, "cedula-missing", C_NOCED,
			"a postgraduate title usually gives the noCedula of the antecedent degree "
			"(§10)");

	/* entities (§3) */
	*ident = v[C_IDENT] ? v[C_IDENT] : conf->idEntidadFederativa;
	const char *ent = v[C_IDENT] ? entidad(b, cat, v, C_IDENT)
				      : titulo_catalogo_descripcion(cat, "entidadFederativa", *ident);
	catalog_text(b, raw, C_ENT, ent, "idEntidadFederativa", *ident);
	const char *entant = entidad(b, cat, v, C_IDENTANT);
	catalog_text(b, raw, C_ENTANT, entant, "idEntidadFederativaAntecedente", v[C_IDENTANT]);
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
	free(l->rows);
	free(l->skipped);
	free(l);
}

/* A header name folded for matching: NFKC-free case fold, accents (marks)
 * stripped, surrounding white space trimmed. NULL on failure. */
static char *fold_name(const char *s)
{
	utf8proc_uint8_t *f = NULL;
	utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)s, 0, &f,
					  UTF8PROC_NULLTERM | UTF8PROC_STABLE |
						  UTF8PROC_COMPOSE | UTF8PROC_CASEFOLD |
						  UTF8PROC_STRIPMARK);
	if (n < 0)
		return NULL;
	char *p = (char *)f;
	size_t a = 0, e = (size_t)n;
	while (a < e && (p[a] == ' ' || p[a] == '\t'))
		a++;
	while (e > a && (p[e - 1] == ' ' || p[e - 1] == '\t' || p[e - 1] == '\r'))
		e--;
	memmove(p, p + a, e - a);
	p[e - a] = '\0';
	return p;
}

/* FNV-1a */
static size_t folio_hash(const char *s)
{
	uint64_t h = 14695981039346656037ull;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return (size_t)h;
}

static int is_blank_row(const struct te_csv_row *row)
{
	for (size_t j = 0; j < row->n; j++)
		for (const char *q = row->f[j]; *q; q++)
			if (*q != ' ' && *q != '\t' && *q != '\r' && *q != '\n')
				return 0;
	return 1;
}

/* What the first reading keeps for the second: no row data, only the
 * columns, the folios (for cross-row rules) and the rows left out. */
struct titulo_build {
	const struct titulo_config *conf;
	const titulo_catalogos *cat;
	char *path;
	unsigned flags;
	char today[16];
	int colpos[C_N];
	size_t header_n;
	unsigned char digest[32];
	/* folioControl of every row seen (open addressing, at most half full) */
	char **seen;
	unsigned long *seen_row;
	unsigned char *seen_ok; /* 1: that row becomes a title */
	size_t nslots, nseen;
	unsigned long *skipped;
	size_t nskipped, skipped_cap;
	size_t count;     /* titles the second reading builds */
	size_t data_rows; /* non-blank rows */
};

void titulo_build_free(struct titulo_build *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->nslots; i++)
		free(b->seen[i]);
	free(b->seen);
	free(b->seen_row);
	free(b->seen_ok);
	free(b->skipped);
	free(b->path);
	free(b);
}

size_t titulo_build_count(const struct titulo_build *b)
{
	return b->count;
}

const unsigned long *titulo_build_skipped(const struct titulo_build *b, size_t *n)
{
	*n = b->nskipped;
	return b->skipped;
}

/* The slot of @folio, or of the free slot where it would go. */
static size_t folio_slot(const struct titulo_build *b, const char *folio)
{
	size_t slot = folio_hash(folio) % b->nslots;
	while (b->seen[slot] && strcmp(b->seen[slot], folio) != 0)
		slot = (slot + 1) % b->nslots;
	return slot;
}

int titulo_build_has_folio(const struct titulo_build *b, const char *folio)
{
	if (!b->nslots)
		return 0;
	size_t slot = folio_slot(b, folio);
	return b->seen[slot] && b->seen_ok[slot];
}

/* Double the folio table when it is half full. */
static int folio_grow(struct titulo_build *b)
{
	if (b->nslots && 2 * (b->nseen + 1) <= b->nslots)
		return 0;
	size_t n = b->nslots ? 2 * b->nslots : 1024;
	struct titulo_build nb = { .nslots = n };
	nb.seen = calloc(n, sizeof(*nb.seen));
	nb.seen_row = calloc(n, sizeof(*nb.seen_row));
	nb.seen_ok = calloc(n, 1);
	if (!nb.seen || !nb.seen_row || !nb.seen_ok) {
		free(nb.seen);
		free(nb.seen_row);
		free(nb.seen_ok);
		return FIRMANTE_E_NOMEM;
	}
	for (size_t i = 0; i < b->nslots; i++) {
		if (!b->seen[i])
			continue;
		size_t s = folio_slot(&nb, b->seen[i]);
		nb.seen[s] = b->seen[i];
		nb.seen_row[s] = b->seen_row[i];
		nb.seen_ok[s] = b->seen_ok[i];
	}
	free(b->seen);
	free(b->seen_row);
	free(b->seen_ok);
	b->seen = nb.seen;
	b->seen_row = nb.seen_row;
	b->seen_ok = nb.seen_ok;
	b->nslots = n;
	return 0;
}

static int skip_row(struct titulo_build *b, unsigned long row)
{
	if (b->nskipped == b->skipped_cap) {
		size_t n = b->skipped_cap ? 2 * b->skipped_cap : 64;
		unsigned long *s = realloc(b->skipped, n * sizeof(*s));
		if (!s)
			return FIRMANTE_E_NOMEM;
		b->skipped = s;
		b->skipped_cap = n;
	}
	b->skipped[b->nskipped++] = row;
	return 0;
}

/* One reading of the CSV (first: checks; second: titles). */
struct pass {
	struct titulo_build *b;
	const struct titulo_build_options *opts;
	struct bctx bc;
	const struct te_csv_info *info;
	int header_bad;
	int changed;           /* second reading: the file is not the one checked */
	size_t next_skip;      /* second reading: index into b->skipped */
	titulo_build_fn fn;
	void *ctx;
	char *v[C_N];
};

static void pass_values_free(struct pass *p)
{
	for (int c = 0; c < C_N; c++) {
		free(p->v[c]);
		p->v[c] = NULL;
	}
}

/* The header: names matched without regard to case or accents. */
static int read_header(struct pass *p, const struct te_csv_row *h)
{
	struct bctx *bc = &p->bc;
	const char *csv_path = p->b->path;
	char *folded[C_N] = { 0 };
	int rc = 0;
	bc->row = 1;
	for (int c = 0; c < C_N; c++) {
		folded[c] = fold_name(cols[c].name);
		if (!folded[c]) {
			rc = FIRMANTE_E_NOMEM;
			goto out;
		}
	}
	for (size_t j = 0; j < h->n; j++) {
		int found = -1;
		char *fh = fold_name(h->f[j]);
		for (int c = 0; fh && c < C_N; c++)
			if (strcmp(fh, folded[c]) == 0)
				found = c;
		free(fh);
		if (found < 0) {
			te_finding_r(bc->findings, "csv-unknown-column", -1, NULL, csv_path, 1, j + 1,
				     h->f[j], "unknown column; the columns are listed in docs/titulos.md");
			bc->row_errors++;
		} else if (bc->colpos[found] >= 0) {
			te_finding_r(bc->findings, "csv-duplicate-column", -1, NULL, csv_path, 1, j + 1,
				     h->f[j], "column appears twice (as column %d and %zu)",
				     bc->colpos[found] + 1, j + 1);
			bc->row_errors++;
		} else {
			bc->colpos[found] = (int)j;
		}
	}
	for (int c = 0; c < C_N; c++)
		if (cols[c].required && bc->colpos[c] < 0)
			finding(bc, "csv-missing-column", c,
				"required column is missing from the header");
	p->b->header_n = h->n;
	memcpy(p->b->colpos, bc->colpos, sizeof(bc->colpos));
out:
	for (int c = 0; c < C_N; c++)
		free(folded[c]);
	return rc;
}

/* Normalize the values of @row into p->v (NULL = empty) and @raw (as
 * given), then check every rule of one row. */
static int row_values(struct pass *p, const struct te_csv_row *row, char **raw,
		      const struct titulo_conf_carrera **carrera, const char **ident)
{
	struct bctx *b = &p->bc;
	char **v = p->v;
	for (int c = 0; c < C_N; c++) {
		free(v[c]);
		v[c] = NULL;
		raw[c] = NULL;
		if (b->colpos[c] < 0)
			continue;
		raw[c] = row->f[b->colpos[c]];
		if (row->nul_fields & (1ull << b->colpos[c])) {
			finding(b, "text-invalid", c,
				"holds a NUL byte (an invisible control character) after \"%.200s\"; "
				"the value would be cut there; delete it",
				raw[c]);
			raw[c] = NULL;
			b->invalid |= 1ull << c;
			continue;
		}
		char *norm = NULL;
		int changed = 0;
		int nr = titulo_normalize(raw[c], &norm, &changed);
		if (nr == FIRMANTE_E_NOMEM)
			return nr;
		if (nr) {
			char iw[200];
			invalid_text_why(raw[c], iw, sizeof(iw));
			finding(b, "text-invalid", c, "%s", iw);
			raw[c] = NULL;
			b->invalid |= 1ull << c;
			continue;
		}
		/* catalog texts are compared as given, not normalized */
		if (changed && c < C_NOMCARRERA) {
			char shown[200], what[240]; /* what: the four sentences fit */
			describe_normalized(raw[c], shown, sizeof(shown), what, sizeof(what));
			finding(b, "text-normalized", c,
				"normalized to \"%.150s\" from \"%s\"%s%s%s (§12)", norm, shown,
				what[0] ? ": " : "", what, what[0] ? "" : " (NFC, single spaces)");
		}
		if (!norm[0]) {
			free(norm);
			continue;
		}
		v[c] = norm;
	}
	check_row(b, p->b->conf, p->b->cat, v, raw, p->b->today, carrera, ident);
	return b->nomem ? FIRMANTE_E_NOMEM : 0;
}

/* First reading: every rule on every row; only the folios are kept. */
static int check_record(void *ctx, unsigned long record, struct te_csv_row *row)
{
	struct pass *p = ctx;
	struct titulo_build *b = p->b;
	struct bctx *bc = &p->bc;
	int rc;
	if (record == 1) {
		if (p->info->converted)
			finding(bc, "csv-windows-1252", -1,
				"the file is not UTF-8; it was read as Windows-1252 (an Excel \"CSV\" "
				"export) and converted; check accents and Ñ in the output");
		rc = read_header(p, row);
		if (rc)
			return rc;
		p->header_bad = bc->row_errors != 0;
		return 0;
	}
	if (p->header_bad)
		return 0; /* the rest is only parsed: a malformed file says so first */
	bc->row = record;
	bc->row_errors = 0;
	bc->invalid = 0;
	if (is_blank_row(row))
		return 0;
	b->data_rows++;
	if (row->n != b->header_n) {
		finding(bc, "csv-field-count", -1, "row has %zu fields; the header has %zu",
			row->n, b->header_n);
		return skip_row(b, record);
	}
	char *raw[C_N];
	const struct titulo_conf_carrera *carrera = NULL;
	const char *ident = NULL;
	rc = row_values(p, row, raw, &carrera, &ident);
	if (rc)
		return rc;
	char **v = p->v;
	size_t slot = 0;
	int have_slot = 0;
	if (v[C_FOLIO]) {
		rc = folio_grow(b);
		if (rc)
			return rc;
		slot = folio_slot(b, v[C_FOLIO]);
		if (b->seen[slot])
			finding(bc, "folio-duplicate", C_FOLIO,
				"folioControl '%s' is repeated in this batch (row %lu has it too)",
				v[C_FOLIO], b->seen_row[slot]);
		if (p->opts && p->opts->folio_registered &&
		    p->opts->folio_registered(p->opts->ctx, v[C_FOLIO]) == 1)
			finding(bc, "folio-registered", C_FOLIO,
				"folioControl '%s' belongs to a title already recorded; the DGP "
				"rejects a folio registered before",
				v[C_FOLIO]);
		if (!b->seen[slot]) {
			b->seen[slot] = v[C_FOLIO];
			v[C_FOLIO] = NULL;
			b->seen_row[slot] = record;
			b->nseen++;
			have_slot = 1;
		}
	}
	if (bc->nomem)
		return FIRMANTE_E_NOMEM;
	if (bc->row_errors)
		return skip_row(b, record);
	if (have_slot)
		b->seen_ok[slot] = 1;
	b->count++;
	return 0;
}

/* A finding of the file as a whole (te_csv_each() refused it). */
static int file_finding(struct pass *p, int rc, const struct te_csv_where *at, const char *why)
{
	const char *rule = rc == FIRMANTE_E_BAD_DOCUMENT ? "csv-encoding"
			   : rc == FIRMANTE_E_INVALID    ? "csv-malformed"
			   : at->column			 ? "csv-field-count"
							 : "csv-unreadable";
	p->bc.row_errors++;
	return te_finding_r(p->bc.findings, rule, -1, NULL, p->b->path, at->row, at->column, "",
			    "%s", why);
}

int titulo_build_check(const struct titulo_config *conf, const titulo_catalogos *cat,
		       const char *csv_path, const struct titulo_build_options *opts,
		       struct titulo_build **out, struct titulo_findings *findings)
{
	int rc;
	char why[256];
	struct titulo_build *b = calloc(1, sizeof(*b));
	struct te_csv_info info = { 0 };
	struct pass p = { .b = b, .opts = opts, .info = &info };
	/* the findings before this call, to drop the rows' own when the file
	 * turns out unusable (as when the whole file was read first) */
	struct titulo_findings before = *findings;
	if (!b || !(b->path = strdup(csv_path))) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	b->conf = conf;
	b->cat = cat;
	b->flags = opts ? opts->flags : 0;
	if (opts && opts->today && titulo_date_check(opts->today) == 0) {
		snprintf(b->today, sizeof(b->today), "%s", opts->today);
	} else {
		time_t now = time(NULL);
		struct tm tm;
		localtime_r(&now, &tm);
		strftime(b->today, sizeof(b->today), "%Y-%m-%d", &tm);
	}
	p.bc.file = csv_path;
	p.bc.findings = findings;
	for (int c = 0; c < C_N; c++)
		p.bc.colpos[c] = b->colpos[c] = -1;
	struct te_csv_where at = { 0, 0 };
	rc = te_csv_each(csv_path, TITULO_MAX_CSV_BYTES, TITULO_MAX_CSV_ROWS + 1, TE_CSV_DETECT,
			 check_record, &p, &info, why, sizeof(why), &at);
	if (rc == FIRMANTE_E_NOMEM || p.bc.nomem) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	if (rc) {
		findings->count = before.count;
		findings->errors = before.errors;
		findings->warnings = before.warnings;
		if (file_finding(&p, rc, &at, why) == FIRMANTE_E_NOMEM) {
			rc = FIRMANTE_E_NOMEM;
			goto out;
		}
		/* a file that cannot be read is an I/O failure; one over the
		 * limits or not CSV text is invalid input */
		if (rc != FIRMANTE_E_IO)
			rc = FIRMANTE_E_INVALID;
		goto out;
	}
	if (p.header_bad) {
		rc = FIRMANTE_E_INVALID;
		goto out;
	}
	memcpy(b->digest, info.digest, sizeof(b->digest));
	if (info.records == 0) {
		if (info.converted)
			finding(&p.bc, "csv-windows-1252", -1,
				"the file is not UTF-8; it was read as Windows-1252 (an Excel \"CSV\" "
				"export) and converted; check accents and Ñ in the output");
		finding(&p.bc, "csv-empty", -1, "the file is empty; it needs a header row");
		rc = FIRMANTE_E_INVALID;
		goto out;
	}
	if (b->data_rows == 0) {
		p.bc.row = 0;
		finding(&p.bc, "csv-no-rows", -1,
			"the file has a header but no graduate rows: there is nothing to build");
		rc = FIRMANTE_E_INVALID;
		goto out;
	}
	if (p.bc.nomem) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	if (b->nskipped && !(b->flags & TITULO_BUILD_SKIP_INVALID)) {
		rc = FIRMANTE_E_INVALID;
		goto out;
	}
	*out = b;
	b = NULL;
	rc = 0;
out:
	pass_values_free(&p);
	titulo_build_free(b);
	return rc;
}

/* Second reading: the rows the first found valid, built one at a time. */
static int build_record(void *ctx, unsigned long record, struct te_csv_row *row)
{
	struct pass *p = ctx;
	struct titulo_build *b = p->b;
	struct bctx *bc = &p->bc;
	if (record == 1) {
		if (memcmp(p->info->digest, b->digest, sizeof(b->digest)) != 0 ||
		    row->n != b->header_n) {
			p->changed = 1;
			return FIRMANTE_E_IO;
		}
		return 0;
	}
	if (is_blank_row(row))
		return 0;
	if (p->next_skip < b->nskipped && b->skipped[p->next_skip] == record) {
		p->next_skip++;
		return 0;
	}
	bc->row = record;
	bc->row_errors = 0;
	bc->invalid = 0;
	bc->findings->count = bc->findings->errors = bc->findings->warnings = 0;
	char *raw[C_N];
	const struct titulo_conf_carrera *carrera = NULL;
	const char *ident = NULL;
	if (row->n != b->header_n) {
		p->changed = 1;
		return FIRMANTE_E_IO;
	}
	int rc = row_values(p, row, raw, &carrera, &ident);
	if (rc)
		return rc;
	if (bc->row_errors || !carrera || !p->v[C_FOLIO]) {
		p->changed = 1;
		return FIRMANTE_E_IO;
	}
	titulo *t = NULL;
	rc = make_titulo(b->conf, b->cat, p->v, carrera, ident, &t);
	if (rc)
		return rc;
	rc = p->fn(p->ctx, p->v[C_FOLIO], record, &t);
	titulo_free(t);
	return rc;
}

int titulo_build_each(struct titulo_build *b, titulo_build_fn fn, void *ctx)
{
	char why[256];
	struct titulo_findings scratch = { 0 };
	struct te_csv_info info = { 0 };
	struct pass p = { .b = b, .info = &info, .fn = fn, .ctx = ctx };
	p.bc.file = b->path;
	p.bc.findings = &scratch;
	memcpy(p.bc.colpos, b->colpos, sizeof(b->colpos));
	int rc = te_csv_each(b->path, TITULO_MAX_CSV_BYTES, TITULO_MAX_CSV_ROWS + 1, TE_CSV_DETECT,
			     build_record, &p, &info, why, sizeof(why), NULL);
	if (rc == 0 && memcmp(info.digest, b->digest, sizeof(b->digest)) != 0)
		rc = FIRMANTE_E_IO;
	if (rc && (p.changed || rc == FIRMANTE_E_INVALID || rc == FIRMANTE_E_BAD_DOCUMENT ||
		   rc == FIRMANTE_E_TOO_LARGE))
		rc = FIRMANTE_E_IO; /* the file is not the one checked */
	pass_values_free(&p);
	titulo_findings_clear(&scratch);
	return rc;
}

/* titulo_build_csv_opts()'s callback: every title kept in the lote. */
struct keep {
	struct titulo_lote *l;
	size_t cap;
};

static int keep_titulo(void *ctx, const char *folio, unsigned long row, titulo **t)
{
	struct keep *k = ctx;
	struct titulo_lote *l = k->l;
	if (l->count == k->cap)
		return FIRMANTE_E_IO; /* more titles than checked: the file changed */
	char *f = strdup(folio);
	if (!f)
		return FIRMANTE_E_NOMEM;
	l->titulos[l->count] = *t;
	l->folios[l->count] = f;
	l->rows[l->count] = row;
	l->count++;
	*t = NULL;
	return 0;
}

int titulo_build_csv(const struct titulo_config *conf, const titulo_catalogos *cat,
		     const char *csv_path, struct titulo_lote **out,
		     struct titulo_findings *findings)
{
	return titulo_build_csv_opts(conf, cat, csv_path, NULL, out, findings);
}

int titulo_build_csv_opts(const struct titulo_config *conf, const titulo_catalogos *cat,
			  const char *csv_path, const struct titulo_build_options *opts,
			  struct titulo_lote **out, struct titulo_findings *findings)
{
	struct titulo_build *b = NULL;
	struct titulo_lote *lote = NULL;
	int rc = titulo_build_check(conf, cat, csv_path, opts, &b, findings);
	if (rc)
		return rc;
	size_t n = b->count ? b->count : 1;
	lote = calloc(1, sizeof(*lote));
	/* An array of titulo pointers: the element size is a pointer's. */
	if (!lote || !(lote->titulos = calloc(n, sizeof(titulo *))) || /* NOLINT(bugprone-sizeof-expression) */
	    !(lote->folios = calloc(n, sizeof(*lote->folios))) ||
	    !(lote->rows = calloc(n, sizeof(*lote->rows))) ||
	    !(lote->skipped = calloc(b->nskipped ? b->nskipped : 1, sizeof(*lote->skipped)))) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	if (b->nskipped)
		memcpy(lote->skipped, b->skipped, b->nskipped * sizeof(*lote->skipped));
	lote->nskipped = b->nskipped;
	struct keep k = { lote, b->count };
	rc = titulo_build_each(b, keep_titulo, &k);
	if (rc)
		goto out;
	*out = lote;
	lote = NULL;
out:
	titulo_lote_free(lote);
	titulo_build_free(b);
	return rc;
}
