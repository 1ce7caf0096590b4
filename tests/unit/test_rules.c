/*
 * Bad input, one test per rule and per case of the issue: each builds a
 * graduates' CSV (or a configuration, or a title) with one defect and
 * asserts the rule code, the field and, for CSV rows, the row and column of
 * the finding. Also: the rule table is complete and unique, positive cases
 * of the CSV reader (BOM, ';', Windows-1252, DD/MM/YYYY, header names
 * without case or accents, blank lines, --skip-invalid) and the XML written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "firmante/titulo.h"
#include "firmante/util.h"

#define CONF FIRMANTE_SOURCE_DIR "/examples/institucion.conf"
#define EXAMPLE FIRMANTE_SHARED_DIR "/spec/examples/oficial-reconstruido-sin-firma.xml"
#define TODAY "2025-06-01"

static titulo_catalogos *g_cat;
static struct titulo_config *g_conf;
static char g_dir[64];

/* ---- helpers ----------------------------------------------------------- */

static char *replace(const char *s, const char *from, const char *to)
{
	const char *p = strstr(s, from);
	if (!p)
		print_message("replace: '%s' not found\n", from);
	assert_non_null(p);
	size_t a = (size_t)(p - s), fl = strlen(from), tl = strlen(to), rest = strlen(p + fl);
	char *r = malloc(a + tl + rest + 1);
	assert_non_null(r);
	memcpy(r, s, a);
	memcpy(r + a, to, tl);
	memcpy(r + a + tl, p + fl, rest + 1);
	return r;
}

static const char *path_of(const char *name)
{
	static char p[128];
	snprintf(p, sizeof(p), "%s/%s", g_dir, name);
	return p;
}

static const char *write_tmp(const char *name, const char *text, size_t len)
{
	const char *p = path_of(name);
	assert_int_equal(fm_write_file_atomic(p, text, len, 0600), 0);
	return p;
}

static void dump(const struct titulo_findings *f)
{
	char line[1400];
	for (size_t i = 0; i < f->count; i++)
		print_message("  [%s] %s\n", f->items[i].rule,
			      titulo_finding_format(&f->items[i], line, sizeof(line)));
}

static const struct titulo_finding *find_rule(const struct titulo_findings *f, const char *rule,
					      const char *field)
{
	for (size_t i = 0; i < f->count; i++)
		if (strcmp(f->items[i].rule, rule) == 0 &&
		    (!field || strcmp(f->items[i].field, field) == 0))
			return &f->items[i];
	return NULL;
}

/* Every finding carries a code of the table with the table's severity. */
static void assert_codes_known(const struct titulo_findings *f)
{
	for (size_t i = 0; i < f->count; i++) {
		const struct titulo_rule *r = titulo_rule_find(f->items[i].rule);
		if (!r)
			print_message("finding without a known rule: '%s' %s\n", f->items[i].rule,
				      f->items[i].message);
		assert_non_null(r);
		assert_int_equal(r->severity, f->items[i].severity);
	}
}

/* ---- the graduates' CSV ------------------------------------------------ */

static const char *const cols[] = {
	"folioControl", "curp", "nombre", "primerApellido", "segundoApellido",
	"correoElectronico", "cveCarrera", "fechaInicio", "fechaTerminacion",
	"idModalidadTitulacion", "fechaExamenProfesional", "fechaExencionExamenProfesional",
	"fechaExpedicion", "cumplioServicioSocial", "idFundamentoLegalServicioSocial",
	"idEntidadFederativa", "institucionProcedencia", "idTipoEstudioAntecedente",
	"idEntidadFederativaAntecedente", "fechaInicioAntecedente",
	"fechaTerminacionAntecedente", "noCedula", "nombreCarrera", "modalidadTitulacion",
	"fundamentoLegalServicioSocial", "entidadFederativa", "tipoEstudioAntecedente",
	"entidadFederativaAntecedente",
};
#define NCOLS (sizeof(cols) / sizeof(cols[0]))

/* A valid row (licenciatura, POR TESIS). */
static const char *const base[NCOLS] = {
	"T-0001", "PEMJ800101HDFRRN07", "JUAN", "PÉREZ", "MARTÍNEZ", "juan@example.mx",
	"103337", "2016-08-15", "2020-06-26", "1", "2021-03-18", "", "2021-05-10", "1", "1",
	"", "CCH SUR", "4", "09", "2013-08-19", "2016-06-24", "", "", "", "", "", "", "",
};

static int col_index(const char *name)
{
	for (size_t i = 0; i < NCOLS; i++)
		if (strcmp(cols[i], name) == 0)
			return (int)i;
	fail_msg("no column %s", name);
	return -1;
}

/* Overrides "column=value" separated by '\n' applied to the base row. */
static void make_row(const char *overrides, char *vals[NCOLS])
{
	for (size_t i = 0; i < NCOLS; i++)
		vals[i] = strdup(base[i]);
	if (!overrides)
		return;
	char *o = strdup(overrides), *save = NULL;
	for (char *tok = strtok_r(o, "\n", &save); tok; tok = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(tok, '=');
		assert_non_null(eq);
		*eq = '\0';
		int c = col_index(tok);
		free(vals[c]);
		vals[c] = strdup(eq + 1);
	}
	free(o);
}

static size_t g_cap; /* capacity of the buffer add_field() grows */

static void add_field(char **buf, size_t *len, const char *v, int last)
{
	size_t n = strlen(v);
	if (!*buf)
		g_cap = 0;
	if (*len + 2 * n + 4 > g_cap) {
		g_cap = (*len + 2 * n + 4) * 2;
		*buf = realloc(*buf, g_cap);
		assert_non_null(*buf);
	}
	char *p = *buf + *len;
	*p++ = '"';
	for (size_t i = 0; i < n; i++) {
		if (v[i] == '"')
			*p++ = '"';
		*p++ = v[i];
	}
	*p++ = '"';
	*p++ = last ? '\n' : ',';
	*len = (size_t)(p - *buf);
}

/* CSV text: header + one row per override set (NULL-terminated list). */
static char *make_csv(const char *const *rows, size_t *len)
{
	char *buf = NULL;
	*len = 0;
	for (size_t i = 0; i < NCOLS; i++)
		add_field(&buf, len, cols[i], i + 1 == NCOLS);
	for (size_t r = 0; rows[r]; r++) {
		char *vals[NCOLS];
		make_row(rows[r][0] ? rows[r] : NULL, vals);
		for (size_t i = 0; i < NCOLS; i++) {
			add_field(&buf, len, vals[i], i + 1 == NCOLS);
			free(vals[i]);
		}
	}
	buf[*len] = '\0'; /* add_field() keeps room for it */
	return buf;
}

static int registered(void *ctx, const char *folio)
{
	(void)ctx;
	return strcmp(folio, "T-0001") == 0;
}

static int build(const char *csv, size_t len, unsigned flags, int with_registry,
		 struct titulo_lote **lote, struct titulo_findings *f)
{
	const char *p = write_tmp("in.csv", csv, len);
	struct titulo_build_options o = { .flags = flags, .today = TODAY };
	if (with_registry)
		o.folio_registered = registered;
	int rc = titulo_build_csv_opts(g_conf, g_cat, p, &o, lote, f);
	dump(f);
	assert_codes_known(f);
	return rc;
}

struct csv_case {
	const char *name;
	const char *row2;    /* overrides of row 2 ("" = the base row) */
	const char *row3;    /* a second row, or NULL */
	const char *rule;
	const char *field;   /* the CSV column the finding names */
	unsigned long row;   /* 2 or 3 */
	const char *text;    /* a piece of the message, or NULL */
	int registry;
};

static const struct csv_case csv_cases[] = {
	{ "curp_length", "curp=PEMJ800101HDFRRN0", NULL, "curp-length", "curp", 2, "18 characters", 0 },
	{ "curp_month", "curp=PEMJ801301HDFRRN07", NULL, "curp-pattern", "curp", 2, "birth date", 0 },
	{ "curp_state", "curp=PEMJ800101HXXRRN07", NULL, "curp-pattern", "curp", 2, "state", 0 },
	{ "curp_sex", "curp=PEMJ800101XDFRRN07", NULL, "curp-pattern", "curp", 2, "sex", 0 },
	{ "curp_lower_case", "curp=pemj800101hdfrrn07", NULL, "curp-pattern", "curp", 2, NULL, 0 },
	{ "curp_check_digit", "curp=PEMJ800101HDFRRN08", NULL, "curp-check-digit", "curp", 2, "should be 7", 0 },
	{ "email_no_at", "correoElectronico=juan.example.mx", NULL, "email-format", "correoElectronico", 2, NULL, 0 },
	{ "email_no_dot", "correoElectronico=juan@mx", NULL, "email-format", "correoElectronico", 2, NULL, 0 },
	{ "email_space", "correoElectronico=ju an@example.mx", NULL, "email-format", "correoElectronico", 2, NULL, 0 },
	{ "folio_lower_case", "folioControl=t-1", NULL, "folio-format", "folioControl", 2, NULL, 0 },
	{ "folio_too_long", "folioControl=A234567890123456789012345678901234567890X", NULL, "folio-format", "folioControl", 2, NULL, 0 },
	{ "folio_underscore", "folioControl=T_1", NULL, "folio-format", "folioControl", 2, NULL, 0 },
	{ "folio_duplicate", "", "", "folio-duplicate", "folioControl", 3, "repeated", 0 },
	{ "folio_registered", "", NULL, "folio-registered", "folioControl", 2, "already recorded", 1 },
	{ "required_nombre", "nombre=", NULL, "required-empty", "nombre", 2, NULL, 0 },
	{ "required_blank_curp", "curp=   ", NULL, "required-empty", "curp", 2, NULL, 0 },
	{ "pipe_in_value", "primerApellido=PÉ|REZ", NULL, "text-invalid", "primerApellido", 2, NULL, 0 },
	{ "control_character", "nombre=JU\x01" "AN", NULL, "text-invalid", "nombre", 2, NULL, 0 },
	{ "career_unknown", "cveCarrera=999999", NULL, "career-unknown", "cveCarrera", 2, "999999", 0 },
	{ "career_name_double_space", "nombreCarrera=LICENCIATURA EN  DERECHO", NULL, "career-name-mismatch", "nombreCarrera", 2, "\"LICENCIATURA EN DERECHO\"", 0 },
	{ "career_name_trailing_space", "nombreCarrera=LICENCIATURA EN DERECHO ", NULL, "career-name-mismatch", "nombreCarrera", 2, NULL, 0 },
	{ "date_april_31", "fechaTerminacion=2020-06-31", NULL, "date-invalid", "fechaTerminacion", 2, NULL, 0 },
	{ "date_month_13", "fechaExpedicion=2021-13-01", NULL, "date-invalid", "fechaExpedicion", 2, NULL, 0 },
	{ "date_dashes_dmy", "fechaExamenProfesional=18-03-2021", NULL, "date-invalid", "fechaExamenProfesional", 2, NULL, 0 },
	{ "date_feb_29_not_leap", "fechaExpedicion=29/02/2021", NULL, "date-invalid", "fechaExpedicion", 2, NULL, 0 },
	{ "date_with_zone", "fechaInicio=2016-08-15-06:00", NULL, "date-invalid", "fechaInicio", 2, NULL, 0 },
	{ "career_start_after_end", "fechaInicio=2020-08-15", NULL, "date-career-order", "fechaTerminacion", 2, NULL, 0 },
	{ "exam_before_career_end", "fechaExamenProfesional=2020-01-10", NULL, "date-exam-order", "fechaExamenProfesional", 2, NULL, 0 },
	{ "expedition_before_exam", "fechaExpedicion=2021-03-01", NULL, "date-expedition-order", "fechaExpedicion", 2, NULL, 0 },
	{ "expedition_before_career_end", "idModalidadTitulacion=2\nfechaExamenProfesional=\nfechaExencionExamenProfesional=2020-06-26\nfechaExpedicion=2020-05-01", NULL, "date-expedition-order", "fechaExpedicion", 2, NULL, 0 },
	{ "expedition_in_future", "fechaExpedicion=2030-01-01", NULL, "date-future", "fechaExpedicion", 2, TODAY, 0 },
	{ "antecedent_start_after_end", "fechaInicioAntecedente=2016-08-01", NULL, "date-antecedent-order", "fechaTerminacionAntecedente", 2, NULL, 0 },
	{ "antecedent_ends_after_career_starts", "fechaTerminacionAntecedente=2016-09-01", NULL, "date-antecedent-career", "fechaInicio", 2, NULL, 0 },
	{ "modalidad1_without_exam", "fechaExamenProfesional=", NULL, "exam-date-missing", "fechaExamenProfesional", 2, "POR TESIS", 0 },
	{ "modalidad2_with_both_dates", "idModalidadTitulacion=2\nfechaExencionExamenProfesional=2021-04-01", NULL, "exam-date-not-allowed", "fechaExamenProfesional", 2, NULL, 0 },
	{ "modalidad3_without_exemption", "idModalidadTitulacion=3\nfechaExamenProfesional=", NULL, "exemption-date-missing", "fechaExencionExamenProfesional", 2, NULL, 0 },
	{ "modalidad1_with_exemption", "fechaExencionExamenProfesional=2021-04-01", NULL, "exemption-date-not-allowed", "fechaExencionExamenProfesional", 2, NULL, 0 },
	{ "modalidad_unknown", "idModalidadTitulacion=7", NULL, "catalog-id-unknown", "idModalidadTitulacion", 2, NULL, 0 },
	{ "fundamento_unknown", "idFundamentoLegalServicioSocial=6", NULL, "catalog-id-unknown", "idFundamentoLegalServicioSocial", 2, NULL, 0 },
	{ "tipo_antecedente_unknown", "idTipoEstudioAntecedente=0", NULL, "catalog-id-unknown", "idTipoEstudioAntecedente", 2, NULL, 0 },
	{ "entidad_34", "idEntidadFederativaAntecedente=34", NULL, "catalog-id-unknown", "idEntidadFederativaAntecedente", 2, NULL, 0 },
	{ "modalidad_text_trailing_space", "modalidadTitulacion=POR TESIS ", NULL, "catalog-text-mismatch", "modalidadTitulacion", 2, "\"POR TESIS \"", 0 },
	{ "modalidad_text_case", "modalidadTitulacion=Por Tesis", NULL, "catalog-text-mismatch", "modalidadTitulacion", 2, NULL, 0 },
	{ "fundamento_text_dot", "fundamentoLegalServicioSocial=ART. 52 LRART. 5 CONST.", NULL, "catalog-text-mismatch", "fundamentoLegalServicioSocial", 2, NULL, 0 },
	{ "entidad_text_no_accent", "entidadFederativaAntecedente=CIUDAD DE MEXICO", NULL, "catalog-text-mismatch", "entidadFederativaAntecedente", 2, "CIUDAD DE MÉXICO", 0 },
	{ "tipo_text_trailing_space", "tipoEstudioAntecedente=BACHILLERATO ", NULL, "catalog-text-mismatch", "tipoEstudioAntecedente", 2, NULL, 0 },
	{ "entidad_expedicion_abbreviation", "entidadFederativa=CDMX", NULL, "catalog-text-mismatch", "entidadFederativa", 2, NULL, 0 },
	{ "antecedent_state_7", "idEntidadFederativaAntecedente=7", NULL, "entity-two-digits", "idEntidadFederativaAntecedente", 2, "write 07", 0 },
	{ "expedition_state_9", "idEntidadFederativa=9", NULL, "entity-two-digits", "idEntidadFederativa", 2, "write 09", 0 },
	{ "state_three_digits", "idEntidadFederativa=009", NULL, "entity-two-digits", "idEntidadFederativa", 2, NULL, 0 },
	{ "servicio_social_2", "cumplioServicioSocial=2", NULL, "servicio-social-value", "cumplioServicioSocial", 2, NULL, 0 },
	{ "cumplio_with_no_aplica", "idFundamentoLegalServicioSocial=5", NULL, "servicio-social-fundamento", "idFundamentoLegalServicioSocial", 2, "NO APLICA", 0 },
	{ "not_cumplio_with_fundamento", "cumplioServicioSocial=0", NULL, "servicio-social-fundamento", "idFundamentoLegalServicioSocial", 2, NULL, 0 },
	{ "licenciatura_without_servicio", "cumplioServicioSocial=0\nidFundamentoLegalServicioSocial=5", NULL, "servicio-social-level", "cumplioServicioSocial", 2, NULL, 0 },
	{ "cedula_letters", "noCedula=12A4", NULL, "cedula-digits", "noCedula", 2, NULL, 0 },
	{ "cedula_for_licenciatura", "noCedula=1234567", NULL, "cedula-unexpected", "noCedula", 2, NULL, 0 },
	{ "posgrado_without_cedula", "cveCarrera=201455\nidTipoEstudioAntecedente=2\ncumplioServicioSocial=0\nidFundamentoLegalServicioSocial=5", NULL, "cedula-missing", "noCedula", 2, NULL, 0 },
	{ "name_double_space", "nombre=MARÍA  JOSÉ", NULL, "text-normalized", "nombre", 2, "\"MARÍA JOSÉ\"", 0 },
	{ "name_decomposed", "nombre=JOSE\xCC\x81", NULL, "text-normalized", "nombre", 2, "\"JOSÉ\"", 0 },
	{ "name_nbsp", "primerApellido=DE\xC2\xA0LA O", NULL, "text-normalized", "primerApellido", 2, "\"DE LA O\"", 0 },
	/* what the message says: the culprit shown, the day the month lacks */
	{ "name_nbsp_shown", "primerApellido=DE\xC2\xA0LA O", NULL, "text-normalized", "primerApellido", 2, "from \"DE<U+00A0>LA O\": special spaces", 0 },
	{ "name_decomposed_shown", "nombre=JOSE\xCC\x81", NULL, "text-normalized", "nombre", 2, "<U+0301>", 0 },
	{ "control_character_named", "nombre=JU\x01" "AN", NULL, "text-invalid", "nombre", 2, "character 3 is the invisible control character U+0001", 0 },
	{ "pipe_named", "primerApellido=PÉ|REZ", NULL, "text-invalid", "primerApellido", 2, "character 3 is '|'", 0 },
	{ "date_feb_31", "fechaExpedicion=2021-02-31", NULL, "date-invalid", "fechaExpedicion", 2, "February 2021 has 28 days; there is no day 31", 0 },
	{ "date_feb_29_dmy_named", "fechaExpedicion=29/02/2021", NULL, "date-invalid", "fechaExpedicion", 2, "February 2021 has 28 days", 0 },
	{ "date_month_13_named", "fechaExpedicion=2021-13-01", NULL, "date-invalid", "fechaExpedicion", 2, "there is no month 13", 0 },
	{ "folio_duplicate_names_first_row", "", "", "folio-duplicate", "folioControl", 3, "row 2 has it too", 0 },
};
#define NCSV (sizeof(csv_cases) / sizeof(csv_cases[0]))

static void run_csv_case(void **state)
{
	const struct csv_case *k = *state;
	const char *rows[3] = { k->row2, k->row3, NULL };
	size_t len;
	char *csv = make_csv(rows, &len);
	struct titulo_findings f = { 0 };
	struct titulo_lote *l = NULL;
	int rc = build(csv, len, 0, k->registry, &l, &f);
	const struct titulo_finding *x = find_rule(&f, k->rule, k->field);
	if (!x)
		fail_msg("%s: no finding %s on %s", k->name, k->rule, k->field);
	assert_int_equal(x->row, k->row);
	assert_int_equal(x->column, (unsigned long)col_index(k->field) + 1);
	if (k->text && !strstr(x->message, k->text))
		fail_msg("%s: message '%s' lacks '%s'", k->name, x->message, k->text);
	const struct titulo_rule *r = titulo_rule_find(k->rule);
	if (r->severity == TITULO_ERROR) {
		assert_int_equal(rc, FIRMANTE_E_INVALID);
		assert_null(l);
		assert_int_equal(x->code, r->error);
	} else {
		/* a warning alone never stops the batch */
		assert_int_equal(f.errors, 0);
		assert_int_equal(rc, 0);
		assert_non_null(l);
	}
	titulo_lote_free(l);
	titulo_findings_clear(&f);
	free(csv);
}

/* ---- the CSV file itself ----------------------------------------------- */

static char *header_line(void)
{
	size_t len = 0;
	char *buf = NULL;
	for (size_t i = 0; i < NCOLS; i++)
		add_field(&buf, &len, cols[i], i + 1 == NCOLS);
	buf[len] = '\0'; /* add_field() keeps room for it */
	return buf;
}

static void expect_file_rule(const char *csv, size_t len, const char *rule, unsigned long row,
			     unsigned long column)
{
	struct titulo_findings f = { 0 };
	struct titulo_lote *l = NULL;
	assert_int_equal(build(csv, len, 0, 0, &l, &f), FIRMANTE_E_INVALID);
	assert_null(l);
	const struct titulo_finding *x = find_rule(&f, rule, NULL);
	if (!x)
		fail_msg("no finding %s", rule);
	assert_int_equal(x->row, row);
	assert_int_equal(x->column, column);
	titulo_findings_clear(&f);
}

static void test_csv_unknown_column(void **state)
{
	(void)state;
	const char *rows[] = { "", NULL };
	size_t len;
	char *csv = make_csv(rows, &len);
	char *bad = replace(csv, "\"folioControl\",", "\"folioControl\",\"edad\",");
	char *bad2 = replace(bad, "\"T-0001\",", "\"T-0001\",\"23\",");
	expect_file_rule(bad2, strlen(bad2), "csv-unknown-column", 1, 2);
	free(bad2);
	free(bad);
	free(csv);
}

static void test_csv_duplicate_column(void **state)
{
	(void)state;
	const char *rows[] = { "", NULL };
	size_t len;
	char *csv = make_csv(rows, &len);
	char *bad = replace(csv, "\"nombre\",", "\"curp\",");
	expect_file_rule(bad, strlen(bad), "csv-duplicate-column", 1, 3);
	free(bad);
	free(csv);
}

static void test_csv_missing_column(void **state)
{
	(void)state;
	const char *csv = "folioControl,curp\nA,B\n";
	struct titulo_findings f = { 0 };
	struct titulo_lote *l = NULL;
	assert_int_equal(build(csv, strlen(csv), 0, 0, &l, &f), FIRMANTE_E_INVALID);
	assert_non_null(find_rule(&f, "csv-missing-column", "nombre"));
	assert_non_null(find_rule(&f, "csv-missing-column", "fechaExpedicion"));
	titulo_findings_clear(&f);
}

static void test_csv_field_count(void **state)
{
	(void)state;
	char *h = header_line();
	size_t n = strlen(h) + 64;
	char *csv = malloc(n);
	snprintf(csv, n, "%sT-1,PEMJ800101HDFRRN07\n", h);
	expect_file_rule(csv, strlen(csv), "csv-field-count", 2, 0);
	free(csv);
	free(h);
}

static void test_csv_malformed(void **state)
{
	(void)state;
	/* an unclosed quote: the record and field where it opens */
	const char *csv = "folioControl,\"curp\nA,B\n";
	expect_file_rule(csv, strlen(csv), "csv-malformed", 1, 2);
}

static void test_csv_empty(void **state)
{
	(void)state;
	expect_file_rule("", 0, "csv-empty", 0, 0);
}

static void test_csv_not_an_encoding(void **state)
{
	(void)state;
	/* 0x81 is neither UTF-8 here nor defined in Windows-1252 */
	const char csv[] = "folioControl,curp\nA\x81,B\n";
	expect_file_rule(csv, sizeof(csv) - 1, "csv-encoding", 0, 0);
	const char nul[] = "f\0o\0l\0i\0o\0";
	expect_file_rule(nul, sizeof(nul) - 1, "csv-encoding", 0, 0);
}

/* A NUL byte inside one field: that field's row and column, reported as a
 * control character; no "required value is empty" beside it. */
static void test_csv_nul_in_field(void **state)
{
	(void)state;
	const char *rows[] = { "", NULL };
	size_t len;
	char *csv = make_csv(rows, &len);
	char *p = strstr(csv, "\"JUAN\"");
	assert_non_null(p);
	char *bad = malloc(len + 2);
	size_t at = (size_t)(p - csv) + 3; /* "JU|AN" */
	memcpy(bad, csv, at);
	bad[at] = '\0';
	memcpy(bad + at + 1, csv + at, len - at);
	struct titulo_findings f = { 0 };
	struct titulo_lote *l = NULL;
	assert_int_equal(build(bad, len + 1, 0, 0, &l, &f), FIRMANTE_E_INVALID);
	const struct titulo_finding *x = find_rule(&f, "text-invalid", "nombre");
	assert_non_null(x);
	assert_int_equal(x->row, 2);
	assert_int_equal(x->column, (unsigned long)col_index("nombre") + 1);
	assert_non_null(strstr(x->message, "NUL byte"));
	assert_null(find_rule(&f, "required-empty", NULL));
	assert_int_equal(f.errors, 1);
	titulo_findings_clear(&f);
	free(bad);
	free(csv);
}

/* A row over the 64-field limit: its row, the first field past the limit. */
static void test_csv_too_many_fields(void **state)
{
	(void)state;
	char *h = header_line();
	size_t n = strlen(h) + 200;
	char *csv = malloc(n);
	int k = snprintf(csv, n, "%sT-1", h);
	for (int i = 0; i < 70; i++)
		k += snprintf(csv + k, n - (size_t)k, ",");
	snprintf(csv + k, n - (size_t)k, "\n");
	expect_file_rule(csv, strlen(csv), "csv-field-count", 2, 65);
	free(csv);
	free(h);
}

/* A quote inside an unquoted field: the record and field where it is. */
static void test_csv_stray_quote(void **state)
{
	(void)state;
	const char *csv = "folioControl,curp\nA,B\"C\n";
	expect_file_rule(csv, strlen(csv), "csv-malformed", 2, 2);
}

/* A header and no graduates is an error, not "0 titles written". */
static void test_csv_header_only(void **state)
{
	(void)state;
	char *h = header_line();
	expect_file_rule(h, strlen(h), "csv-no-rows", 0, 0);
	size_t n = strlen(h) + 8;
	char *blank = malloc(n);
	snprintf(blank, n, "%s\n \n", h); /* blank lines are no rows either */
	expect_file_rule(blank, strlen(blank), "csv-no-rows", 0, 0);
	free(blank);
	free(h);
}

/* ---- positive cases of the reader and the XML written -------------------- */

static titulo *build_one(const char *csv, size_t len, struct titulo_findings *f)
{
	struct titulo_lote *l = NULL;
	int rc = build(csv, len, 0, 0, &l, f);
	assert_int_equal(rc, 0);
	assert_int_equal(l->count, 1);
	titulo *t = l->titulos[0];
	l->titulos[0] = NULL;
	free(l->folios[0]);
	l->count = 0;
	titulo_lote_free(l);
	return t;
}

/* noinline: gcc 12 -O2 takes strstr() results on the returned buffer for
 * pointers to the inlined local (a -Wdangling-pointer false positive). */
__attribute__((noinline)) static char *xml_of(const titulo *t)
{
	char *xml = NULL;
	size_t xl;
	assert_int_equal(titulo_serialize(t, &xml, &xl), 0);
	return xml;
}

/* MARÍA  JOSÉ and NFD É end up single-spaced NFC in the XML (§12). */
static void test_normalized_into_xml(void **state)
{
	(void)state;
	const char *rows[] = { "nombre=MARÍA  JOSÉ\nprimerApellido=PE\xCC\x81REZ", NULL };
	size_t len;
	char *csv = make_csv(rows, &len);
	struct titulo_findings f = { 0 };
	titulo *t = build_one(csv, len, &f);
	assert_non_null(find_rule(&f, "text-normalized", "nombre"));
	assert_non_null(find_rule(&f, "text-normalized", "primerApellido"));
	char *xml = xml_of(t);
	assert_non_null(strstr(xml, "nombre=\"MARÍA JOSÉ\""));
	assert_non_null(strstr(xml, "primerApellido=\"PÉREZ\""));
	assert_null(strstr(xml, "PE\xCC\x81REZ"));
	free(xml);
	titulo_free(t);
	titulo_findings_clear(&f);
	free(csv);
}

/* An empty optional value: no attribute, an empty field in the cadena. */
static void test_empty_optional(void **state)
{
	(void)state;
	const char *rows[] = { "segundoApellido=", NULL };
	size_t len;
	char *csv = make_csv(rows, &len);
	struct titulo_findings f = { 0 };
	titulo *t = build_one(csv, len, &f);
	assert_int_equal(f.errors, 0);
	char *xml = xml_of(t);
	char *prof = strstr(xml, "<Profesionista");
	assert_non_null(prof);
	char *end = strstr(prof, "/>");
	assert_non_null(end);
	char *element = strndup(prof, (size_t)(end - prof));
	assert_non_null(element);
	assert_null(strstr(element, "segundoApellido"));
	free(element);
	assert_null(titulo_attr(t, "Profesionista", "segundoApellido"));
	assert_null(strstr(xml, "=\"\""));
	char *cad = NULL;
	size_t cl;
	assert_int_equal(titulo_cadena(t, 0, &cad, &cl), 0);
	/* fields 18-20: primerApellido, empty segundoApellido, correo */
	assert_non_null(strstr(cad, "|PÉREZ||juan@example.mx|"));
	free(cad);
	free(xml);
	titulo_free(t);
	titulo_findings_clear(&f);
	free(csv);
}

static void test_dates_dmy(void **state)
{
	(void)state;
	const char *rows[] = { "fechaExpedicion=10/05/2021\nfechaInicio=15/8/2016", NULL };
	size_t len;
	char *csv = make_csv(rows, &len);
	struct titulo_findings f = { 0 };
	titulo *t = build_one(csv, len, &f);
	assert_string_equal(titulo_attr(t, "Expedicion", "fechaExpedicion"), "2021-05-10");
	assert_string_equal(titulo_attr(t, "Carrera", "fechaInicio"), "2016-08-15");
	titulo_free(t);
	titulo_findings_clear(&f);
	free(csv);
}

/* Excel: Windows-1252, ';', header names in another case and with accents,
 * a blank line. */
static void test_excel_export(void **state)
{
	(void)state;
	const char *rows[] = { "", NULL };
	size_t len;
	char *csv = make_csv(rows, &len);
	for (size_t i = 0; i < len; i++)
		if (csv[i] == ',')
			csv[i] = ';';
	char *h1 = replace(csv, "\"fechaExpedicion\"", "\"FechaExpedición\"");
	char *h2 = replace(h1, "\"curp\"", "\" CURP \"");
	char *blank = replace(h2, "\n\"T-0001\"", "\n\n\"T-0001\"");
	/* UTF-8 → Windows-1252 for the Latin-1 letters used (É, Í, Ó) */
	size_t bl = strlen(blank), o = 0;
	char *w = malloc(bl + 1);
	for (size_t i = 0; i < bl; i++) {
		unsigned char c = (unsigned char)blank[i];
		if (c == 0xC3)
			w[o++] = (char)((unsigned char)blank[++i] + 0x40);
		else
			w[o++] = (char)c;
	}
	w[o] = '\0';
	struct titulo_findings f = { 0 };
	titulo *t = build_one(w, o, &f);
	assert_non_null(find_rule(&f, "csv-windows-1252", NULL));
	assert_int_equal(f.errors, 0);
	assert_string_equal(titulo_attr(t, "Profesionista", "primerApellido"), "PÉREZ");
	assert_string_equal(titulo_attr(t, "Expedicion", "fechaExpedicion"), "2021-05-10");
	titulo_free(t);
	titulo_findings_clear(&f);
	free(w);
	free(blank);
	free(h2);
	free(h1);
	free(csv);
}

/* 5,000 rows with 50 seeded defects, each a single error: all 50 are
 * reported in one run with row and column, and nothing else. */
static void test_5000_rows_50_defects(void **state)
{
	(void)state;
	static const struct {
		const char *col, *value, *rule;
	} defects[] = {
		{ "curp", "PEMJ800101HDFRRN08", "curp-check-digit" },
		{ "correoElectronico", "juan.example.mx", "email-format" },
		{ "fechaTerminacion", "2020-02-30", "date-invalid" },
		{ "idEntidadFederativaAntecedente", "7", "entity-two-digits" },
		{ "idModalidadTitulacion", "9", "catalog-id-unknown" },
		{ "fechaExamenProfesional", "", "exam-date-missing" },
		{ "cumplioServicioSocial", "3", "servicio-social-value" },
		{ "nombre", "", "required-empty" },
		{ "correoElectronico", "a b@example.mx", "email-format" },
		{ "modalidadTitulacion", "POR TESIS.", "catalog-text-mismatch" },
	};
	enum { NROWS = 5000, NDEF = 50 };
	static char *rows[NROWS + 1];
	static int defect_of[NROWS];
	for (int i = 0; i < NROWS; i++)
		defect_of[i] = -1;
	/* deterministic, distinct rows: i*97+13 mod 5000 for i < 50 */
	for (int i = 0; i < NDEF; i++)
		defect_of[(i * 97 + 13) % NROWS] = i % 10;
	for (int i = 0; i < NROWS; i++) {
		char buf[160];
		int d = defect_of[i];
		if (d >= 0)
			snprintf(buf, sizeof(buf), "folioControl=T-%05d\n%s=%s", i, defects[d].col,
				 defects[d].value);
		else
			snprintf(buf, sizeof(buf), "folioControl=T-%05d", i);
		rows[i] = strdup(buf);
	}
	rows[NROWS] = NULL;
	size_t len;
	char *csv = make_csv((const char *const *)rows, &len);
	const char *p = write_tmp("in.csv", csv, len);
	struct titulo_build_options o = { .today = TODAY };
	struct titulo_findings f = { 0 };
	struct titulo_lote *l = NULL;
	assert_int_equal(titulo_build_csv_opts(g_conf, g_cat, p, &o, &l, &f), FIRMANTE_E_INVALID);
	assert_null(l);
	assert_codes_known(&f);
	if (f.errors != NDEF || f.warnings != 0)
		dump(&f);
	assert_int_equal(f.errors, NDEF);
	assert_int_equal(f.warnings, 0);
	assert_int_equal(f.count, NDEF);
	for (int i = 0; i < NROWS; i++) {
		int d = defect_of[i];
		if (d < 0)
			continue;
		int found = 0;
		for (size_t k = 0; k < f.count; k++) {
			const struct titulo_finding *x = &f.items[k];
			if (x->row == (unsigned long)i + 2 &&
			    x->column == (unsigned long)col_index(defects[d].col) + 1 &&
			    strcmp(x->rule, defects[d].rule) == 0 &&
			    strcmp(x->field, defects[d].col) == 0)
				found++;
		}
		if (found != 1)
			fail_msg("row %d: defect %s not reported exactly once", i + 2, defects[d].rule);
	}
	titulo_findings_clear(&f);
	/* the same file with --skip-invalid: 4,950 titles, the 50 rows listed */
	o.flags = TITULO_BUILD_SKIP_INVALID;
	assert_int_equal(titulo_build_csv_opts(g_conf, g_cat, p, &o, &l, &f), 0);
	assert_int_equal(l->count, NROWS - NDEF);
	assert_int_equal(l->nskipped, NDEF);
	for (size_t k = 0; k < l->nskipped; k++)
		assert_true(defect_of[l->skipped[k] - 2] >= 0);
	titulo_lote_free(l);
	titulo_findings_clear(&f);
	for (int i = 0; i < NROWS; i++)
		free(rows[i]);
	free(csv);
}

static void test_bom_and_skip_invalid(void **state)
{
	(void)state;
	const char *rows[] = { "", "folioControl=T-0002\ncurp=PEMJ800101HDFRRN08", "folioControl=T-0003", NULL };
	size_t len;
	char *csv = make_csv(rows, &len);
	char *bom = malloc(len + 4);
	memcpy(bom, "\xEF\xBB\xBF", 3);
	memcpy(bom + 3, csv, len + 1);
	struct titulo_findings f = { 0 };
	struct titulo_lote *l = NULL;
	assert_int_equal(build(bom, len + 3, 0, 0, &l, &f), FIRMANTE_E_INVALID);
	assert_null(l);
	titulo_findings_clear(&f);
	assert_int_equal(build(bom, len + 3, TITULO_BUILD_SKIP_INVALID, 0, &l, &f), 0);
	assert_non_null(l);
	assert_int_equal(l->count, 2);
	assert_string_equal(l->folios[0], "T-0001");
	assert_string_equal(l->folios[1], "T-0003");
	assert_int_equal(l->rows[1], 4);
	assert_int_equal(l->nskipped, 1);
	assert_int_equal(l->skipped[0], 3);
	assert_non_null(find_rule(&f, "curp-check-digit", "curp"));
	titulo_lote_free(l);
	titulo_findings_clear(&f);
	free(bom);
	free(csv);
}

/* ---- the configuration ------------------------------------------------- */

struct conf_case {
	const char *name;
	const char *from, *to; /* one edit of examples/institucion.conf */
	const char *rule;
	const char *field;
};

static const struct conf_case conf_cases[] = {
	{ "cargo_trailing_space", "idCargo = 3 ", "cargo = \"RESPONSABLE DE EXPEDICIÓN \"\nidCargo = 5 ", "cargo-text-mismatch", "[firmante rector] cargo" },
	{ "cargo_without_accent", "idCargo = 3 ", "cargo = RECTÓR\nidCargo = 3 ", "cargo-text-mismatch", "[firmante rector] cargo" },
	{ "cargo_unknown", "idCargo = 3 ", "idCargo = 12 ", "config-catalog-id", "[firmante rector] idCargo" },
	{ "autorizacion_unknown", "idAutorizacionReconocimiento = 6 ", "idAutorizacionReconocimiento = 10 ", "config-catalog-id", "[carrera 105830] idAutorizacionReconocimiento" },
	{ "rvoe_without_rvoe", "idAutorizacionReconocimiento = 6 ", "numeroRvoe = 123\nidAutorizacionReconocimiento = 6 ", "rvoe-unexpected", "[carrera 105830] numeroRvoe" },
	{ "rvoe_missing", "numeroRvoe = 1470", "", "rvoe-missing", "[carrera 103337] numeroRvoe" },
	{ "institution_key", "cveInstitucion = 090457", "cveInstitucion = 90457", "institution-key", "[institucion] cveInstitucion" },
	{ "institution_state_9", "idEntidadFederativa = 09", "idEntidadFederativa = 9", "config-entity", "[institucion] idEntidadFederativa" },
	{ "unknown_key", "[carrera 104211]", "[carrera 104211]\ncolor = azul", "config-unknown-key", "[carrera 104211] color" },
	{ "unknown_section", "[carrera 104211]", "[sede norte]\nx = 1\n[carrera 104211]", "config-unknown-section", "sede norte" },
	{ "signer_without_curp", "curp = ROSL750822MJCDNR01", "", "config-missing-key", "[firmante secretario] curp" },
	{ "signer_curp_structure", "curp = ROSL750822MJCDNR01", "curp = ROSL751322MJCDNR01", "signer-curp", "[firmante secretario] curp" },
	{ "signer_curp_check_digit", "curp = ROSL750822MJCDNR01", "curp = ROSL750822MJCDNR02", "signer-curp-check-digit", "[firmante secretario] curp" },
	{ "signer_curp_twice", "curp = ROSL750822MJCDNR01", "curp = MEOJ700515HDFNRN00", "signer-curp-duplicate", "[firmante secretario] curp" },
	{ "signer_key_file", "key = pkcs11:token=firmante-demo;id=%02;type=private", "key = /home/secretaria/clave.key", "signer-key-uri", "[firmante secretario] key" },
	{ "key_twice", "abrTitulo = MTRA.", "abrTitulo = MTRA.\nabrTitulo = DRA.", "config-duplicate", "[firmante secretario] abrTitulo" },
	{ "name_two_spaces", "nombre = LAURA", "nombre = LAURA  ISABEL", "config-text-normalized", "[firmante secretario] nombre" },
	{ "career_key_short", "[carrera 104211]", "[carrera 1042]", "career-key", "[carrera 1042]" },
	{ "section_without_bracket", "[firmante rector]", "[firmante rector", "config-syntax", "" },
};
#define NCONF (sizeof(conf_cases) / sizeof(conf_cases[0]))

static void run_conf_case(void **state)
{
	const struct conf_case *k = *state;
	char *text = NULL;
	size_t len;
	assert_int_equal(fm_read_file(CONF, 1u << 20, &text, &len), 0);
	char *bad = replace(text, k->from, k->to);
	const char *p = write_tmp("in.conf", bad, strlen(bad));
	struct titulo_config *c = NULL;
	struct titulo_findings f = { 0 };
	int rc = titulo_config_load(p, g_cat, &c, &f);
	dump(&f);
	assert_codes_known(&f);
	const struct titulo_finding *x = find_rule(&f, k->rule, k->field);
	if (!x)
		fail_msg("%s: no finding %s on %s", k->name, k->rule, k->field);
	assert_string_equal(x->file, p);
	const struct titulo_rule *r = titulo_rule_find(k->rule);
	if (r->severity == TITULO_ERROR) {
		assert_int_equal(rc, FIRMANTE_E_CONFIG);
		assert_null(c);
	} else {
		assert_int_equal(rc, 0);
		assert_int_equal(f.errors, 0);
	}
	titulo_config_free(c);
	titulo_findings_clear(&f);
	free(bad);
	free(text);
}

/* A catalog copy whose cargo 5 carries a trailing space is refused, naming
 * the row (§13.3). */
static void test_catalog_trailing_space(void **state)
{
	(void)state;
	char path[4096], *text = NULL;
	size_t len;
	assert_int_equal(fm_data_path("catalogos.csv", path, sizeof(path)), 0);
	assert_int_equal(fm_read_file(path, 1u << 20, &text, &len), 0);
	char *bad = replace(text, "cargo,5,RESPONSABLE DE EXPEDICIÓN,", "cargo,5,RESPONSABLE DE EXPEDICIÓN ,");
	const char *p = write_tmp("catalogos.csv", bad, strlen(bad));
	titulo_catalogos *c = NULL;
	struct titulo_error err = { 0 };
	assert_int_equal(titulo_catalogos_load(p, &c, &err), FIRMANTE_E_CONFIG);
	assert_null(c);
	assert_non_null(strstr(err.message, "cargo id 5"));
	assert_non_null(strstr(err.message, "\"RESPONSABLE DE EXPEDICIÓN \""));
	free(bad);
	free(text);
}

/* The catalogs are data: a copy with a cargo the DGP added later is used
 * without recompiling. */
static void test_catalog_replaceable(void **state)
{
	(void)state;
	char path[4096], *text = NULL;
	size_t len;
	assert_int_equal(fm_data_path("catalogos.csv", path, sizeof(path)), 0);
	assert_int_equal(fm_read_file(path, 1u << 20, &text, &len), 0);
	char *more = replace(text, "modalidadTitulacion,1,", "cargo,12,COORDINADOR DE TITULACIÓN,,\nmodalidadTitulacion,1,");
	const char *p = write_tmp("catalogos.csv", more, strlen(more));
	titulo_catalogos *c = NULL;
	struct titulo_error err = { 0 };
	assert_int_equal(titulo_catalogos_load(p, &c, &err), 0);
	assert_string_equal(titulo_catalogo_descripcion(c, "cargo", "12"), "COORDINADOR DE TITULACIÓN");
	assert_string_equal(titulo_catalogo_descripcion(c, "cargo", "11"),
			    "TITULAR DE LA AUTORIDAD EDUCATIVA FEDERAL EN LA CIUDAD DE MÉXICO");
	assert_null(titulo_catalogo_descripcion(g_cat, "cargo", "12"));
	titulo_catalogos_free(c);
	free(more);
	free(text);
}

/* ---- titles from other systems ------------------------------------------ */

#define T_CURP "EICA750212HDFRNL01"
#define T_NOCERT "30001000000300099999"
#define A_NOCERT "30001000000400000001"

static EVP_PKEY *g_key, *g_akey;
static char *g_fiel, *g_csd, *g_other, *g_signed;
static uint8_t *g_auth_der;
static size_t g_auth_len;
static titulo_verifier *g_v;

static X509 *cert_of(EVP_PKEY *key, const char *curp, const char *nocert, const char *ou)
{
	X509 *x = X509_new();
	BIGNUM *bn = BN_bin2bn((const unsigned char *)nocert, (int)strlen(nocert), NULL);
	ASN1_INTEGER *serial = BN_to_ASN1_INTEGER(bn, NULL);
	X509_set_serialNumber(x, serial);
	X509_set_version(x, 2);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 365);
	X509_NAME *n = X509_NAME_new();
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)"PRUEBA", -1, -1, 0);
	X509_NAME_add_entry_by_txt(n, "serialNumber", MBSTRING_UTF8, (const unsigned char *)curp, -1, -1, 0);
	if (ou)
		X509_NAME_add_entry_by_txt(n, "OU", MBSTRING_UTF8, (const unsigned char *)ou, -1, -1, 0);
	X509_set_subject_name(x, n);
	X509_set_issuer_name(x, n);
	X509_set_pubkey(x, key);
	X509_sign(x, key, EVP_sha256());
	X509_NAME_free(n);
	ASN1_INTEGER_free(serial);
	BN_free(bn);
	return x;
}

static char *cert_b64(EVP_PKEY *key, const char *curp, const char *nocert, const char *ou)
{
	X509 *x = cert_of(key, curp, nocert, ou);
	unsigned char *der = NULL;
	int dl = i2d_X509(x, &der);
	char *b64 = NULL;
	fm_base64_encode(der, (size_t)dl, &b64);
	OPENSSL_free(der);
	X509_free(x);
	return b64;
}

static char *sign_b64(EVP_PKEY *key, const char *data, size_t len)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	size_t sl = 0;
	EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key);
	EVP_DigestSign(md, NULL, &sl, (const unsigned char *)data, len);
	unsigned char *sig = malloc(sl);
	EVP_DigestSign(md, sig, &sl, (const unsigned char *)data, len);
	char *b64 = NULL;
	fm_base64_encode(sig, sl, &b64);
	free(sig);
	EVP_MD_CTX_free(md);
	return b64;
}

static char *signed_with(const char *cert, const char *nocert)
{
	char *xml = NULL, *cad = NULL, *out = NULL;
	size_t xl, cl, ol;
	assert_int_equal(fm_read_file(EXAMPLE, 1u << 20, &xml, &xl), 0);
	titulo *t = NULL;
	assert_int_equal(titulo_parse(xml, xl, &t, NULL), 0);
	assert_int_equal(titulo_cadena(t, 0, &cad, &cl), 0);
	char *sello = sign_b64(g_key, cad, cl);
	assert_int_equal(titulo_set_firma(t, 0, sello, cert, nocert), 0);
	assert_int_equal(titulo_serialize(t, &out, &ol), 0);
	free(sello);
	free(cad);
	titulo_free(t);
	free(xml);
	return out;
}

/* The signed example with an Autenticacion node sealed by the authority
 * key; @join is put between the sellos of selloTitulo (one signer: after). */
static char *with_autenticacion(const char *xml, const char *nocert, const char *join,
				int good_sello)
{
	titulo *t = NULL;
	assert_int_equal(titulo_parse(xml, strlen(xml), &t, NULL), 0);
	const char *sello = titulo_firmante_attr(t, 0, "sello");
	size_t n = strlen(sello) + 64;
	char *st = malloc(n);
	snprintf(st, n, "%s%s", sello, join);
	size_t cn = strlen(st) + 256;
	char *cad = malloc(cn);
	snprintf(cad, cn, "||1.0|ad662d33-6934-459c-a128-bdf0393e0f44|2019-01-01T10:00:00Z|%s|%s||",
		 st, nocert);
	char *sa = good_sello ? sign_b64(g_akey, cad, strlen(cad)) : strdup("QUJD");
	size_t nn = strlen(st) + strlen(sa) + 400;
	char *node = malloc(nn);
	snprintf(node, nn,
		 "<Autenticacion version=\"1.0\" folioDigital=\"ad662d33-6934-459c-a128-bdf0393e0f44\" "
		 "fechaAutenticacion=\"2019-01-01T10:00:00Z\" selloTitulo=\"%s\" "
		 "noCertificadoAutoridad=\"%s\" selloAutenticacion=\"%s\"/></TituloElectronico>",
		 st, nocert, sa);
	char *r = replace(xml, "</TituloElectronico>", node);
	free(node);
	free(sa);
	free(cad);
	free(st);
	titulo_free(t);
	return r;
}

struct xml_case {
	const char *name;
	const char *from, *to;
	const char *rule;
	const char *field;
	long firmante;
	const char *text;
};

static const struct xml_case xml_cases[] = {
	{ "lower_case_firmaResponsables", "FirmaResponsables>", "firmaResponsables>", "xml-structure", "firmaResponsables", -1, "the standard names it 'FirmaResponsables'" },
	{ "namespace_http", "xmlns=\"https://www.siged.sep.gob.mx/titulos/\"", "xmlns=\"http://www.siged.sep.gob.mx/titulos/\"", "xml-structure", "TituloElectronico", -1, "namespace" },
	{ "namespace_missing", " xmlns=\"https://www.siged.sep.gob.mx/titulos/\"", "", "xml-structure", "TituloElectronico", -1, "no namespace" },
	{ "element_missing", "<Antecedente ", "<Antecedentes ", "xml-structure", "Antecedentes", -1, NULL },
	{ "unknown_attribute", "<Institucion ", "<Institucion clave=\"1\" ", "xml-structure", "Institucion/@clave", -1, NULL },
	{ "attribute_case", "<Institucion cveInstitucion", "<Institucion CveInstitucion", "xml-structure", "Institucion/@CveInstitucion", -1, "cveInstitucion" },
	{ "empty_attribute", "<Antecedente ", "<Antecedente noCedula=\"\" ", "xml-empty-attribute", "Antecedente/@noCedula", -1, NULL },
	{ "date_with_zone", "fechaExpedicion=\"2011-08-10\"", "fechaExpedicion=\"2011-08-10-06:00\"", "xml-non-canonical", "Expedicion/@fechaExpedicion", -1, NULL },
	{ "integer_leading_zero", "idCargo=\"3\"", "idCargo=\"03\"", "xml-non-canonical", "FirmaResponsable/@idCargo", 0, NULL },
	{ "entity_one_digit", "<Expedicion ", "<Expedicion idEntidadFederativa=\"9\" ", "xml-structure", NULL, -1, NULL },
	{ "declared_latin1", "encoding=\"UTF-8\"", "encoding=\"ISO-8859-1\"", "xml-encoding", "document", -1, "ISO-8859-1" },
	{ "latin1_bytes", "TECNOLÓGICA", "TECNOL\xD3GICA", "xml-encoding", "document", -1, "not UTF-8" },
	{ "sello_changed_data", "nombre=\"ANTONIO\"", "nombre=\"ANTONIA\"", "sello-mismatch", "sello", 0, NULL },
	{ "sello_wrapped", "sello=\"", "sello=\"\n", "sello-base64", "sello", 0, NULL },
	{ "nocert_mismatch", "noCertificadoResponsable=\"" T_NOCERT "\"", "noCertificadoResponsable=\"30001000000300011111\"", "nocert-mismatch", "noCertificadoResponsable", 0, T_NOCERT },
	{ "cadena_pipe", "nombreInstitucion=\"", "nombreInstitucion=\"A|", "cadena-pipe", "Institucion/@nombreInstitucion", 0, NULL },
};
#define NXML (sizeof(xml_cases) / sizeof(xml_cases[0]))

static struct titulo_findings verify_text(const char *xml, size_t len, int want_rc)
{
	struct titulo_findings f = { 0 };
	int rc = titulo_verify(g_v, xml, len, 0, &f);
	dump(&f);
	assert_codes_known(&f);
	assert_int_equal(rc, want_rc);
	return f;
}

static void run_xml_case(void **state)
{
	const struct xml_case *k = *state;
	char *bad = replace(g_signed, k->from, k->to);
	if (strcmp(k->name, "lower_case_firmaResponsables") == 0) {
		char *b2 = replace(bad, "FirmaResponsables>", "firmaResponsables>");
		free(bad);
		bad = b2;
	}
	struct titulo_findings f = verify_text(bad, strlen(bad), FIRMANTE_E_INVALID);
	const struct titulo_finding *x = find_rule(&f, k->rule, k->field);
	if (!x)
		fail_msg("%s: no finding %s on %s", k->name, k->rule, k->field ? k->field : "");
	assert_int_equal(x->firmante, k->firmante);
	if (k->firmante >= 0)
		assert_string_equal(x->curp, T_CURP);
	if (k->text && !strstr(x->message, k->text))
		fail_msg("%s: message '%s' lacks '%s'", k->name, x->message, k->text);
	titulo_findings_clear(&f);
	free(bad);
}

/* @s without the attribute @name="..." (first occurrence). */
static char *strip_attr(const char *s, const char *name)
{
	char pat[64];
	snprintf(pat, sizeof(pat), " %s=\"", name);
	const char *a = strstr(s, pat);
	assert_non_null(a);
	const char *e = strchr(a + strlen(pat), '"');
	assert_non_null(e);
	size_t n = strlen(s);
	char *r = malloc(n + 1);
	memcpy(r, s, (size_t)(a - s));
	memcpy(r + (a - s), e + 1, n - (size_t)(e + 1 - s) + 1);
	return r;
}

/* A title as titulos build writes it: one "not signed yet" finding instead
 * of one per missing attribute and signer. */
static void test_unsigned_once(void **state)
{
	(void)state;
	char *a = strip_attr(g_signed, "sello");
	char *b = strip_attr(a, "certificadoResponsable");
	char *c = strip_attr(b, "noCertificadoResponsable");
	struct titulo_findings f = verify_text(c, strlen(c), FIRMANTE_E_INVALID);
	assert_non_null(find_rule(&f, "titulo-unsigned", "document"));
	assert_int_equal(f.errors, 1);
	assert_null(find_rule(&f, "sello-missing", NULL));
	titulo_findings_clear(&f);
	/* one attribute left: not "unsigned", the missing ones are named */
	f = verify_text(b, strlen(b), FIRMANTE_E_INVALID);
	assert_null(find_rule(&f, "titulo-unsigned", NULL));
	assert_non_null(find_rule(&f, "sello-missing", "sello"));
	char line[1400];
	const struct titulo_finding *x = find_rule(&f, "sello-missing", "sello");
	assert_non_null(strstr(titulo_finding_format(x, line, sizeof(line)), "FirmaResponsable[1] ("));
	titulo_findings_clear(&f);
	free(a);
	free(b);
	free(c);
}

static void test_signed_ok(void **state)
{
	(void)state;
	struct titulo_findings f = verify_text(g_signed, strlen(g_signed), 0);
	assert_int_equal(f.count, 0);
	titulo_findings_clear(&f);
}

static void test_csd_not_fiel(void **state)
{
	(void)state;
	char *x = signed_with(g_csd, T_NOCERT);
	struct titulo_findings f = verify_text(x, strlen(x), FIRMANTE_E_INVALID);
	const struct titulo_finding *c = find_rule(&f, "cert-not-fiel", "certificadoResponsable");
	assert_non_null(c);
	if (!c)
		return;
	assert_non_null(strstr(c->message, "not an e.firma"));
	assert_int_equal(c->firmante, 0);
	assert_int_equal(f.errors, 1);
	titulo_findings_clear(&f);
	free(x);
}

static void test_curp_not_certificate(void **state)
{
	(void)state;
	char *x = signed_with(g_other, T_NOCERT);
	struct titulo_findings f = verify_text(x, strlen(x), FIRMANTE_E_INVALID);
	const struct titulo_finding *c = find_rule(&f, "curp-cert-mismatch", "curp");
	assert_non_null(c);
	assert_non_null(strstr(c->message, "PEMJ800101HDFRRN07"));
	assert_non_null(strstr(c->message, T_CURP));
	titulo_findings_clear(&f);
	free(x);
}

static void test_bom(void **state)
{
	(void)state;
	size_t n = strlen(g_signed);
	char *x = malloc(n + 4);
	memcpy(x, "\xEF\xBB\xBF", 3);
	memcpy(x + 3, g_signed, n + 1);
	struct titulo_findings f = verify_text(x, n + 3, FIRMANTE_E_INVALID);
	assert_non_null(find_rule(&f, "xml-encoding", "document"));
	titulo_findings_clear(&f);
	free(x);
}

static void test_autenticacion(void **state)
{
	(void)state;
	/* without the authority's certificate: not verifiable, a warning */
	char *a = with_autenticacion(g_signed, A_NOCERT, "", 1);
	struct titulo_findings f = verify_text(a, strlen(a), 0);
	assert_non_null(find_rule(&f, "autenticacion-sello-titulo-ok", "Autenticacion/@selloTitulo"));
	assert_non_null(find_rule(&f, "autenticacion-not-verifiable", "Autenticacion/@selloAutenticacion"));
	titulo_findings_clear(&f);
	/* with it: verifies */
	titulo_verifier *v = NULL;
	struct titulo_error err;
	assert_int_equal(titulo_verifier_new(NULL, &v, &err), 0);
	assert_int_equal(titulo_verifier_set_autoridad(v, g_auth_der, g_auth_len, &err), 0);
	assert_int_equal(titulo_verify(v, a, strlen(a), 0, &f), 0);
	dump(&f);
	assert_non_null(find_rule(&f, "autenticacion-sello-ok", "Autenticacion/@selloAutenticacion"));
	assert_int_equal(f.warnings, 0);
	titulo_findings_clear(&f);
	/* a forged authority sello */
	char *forged = with_autenticacion(g_signed, A_NOCERT, "", 0);
	assert_int_equal(titulo_verify(v, forged, strlen(forged), 0, &f), FIRMANTE_E_INVALID);
	assert_non_null(find_rule(&f, "autenticacion-sello", "Autenticacion/@selloAutenticacion"));
	titulo_findings_clear(&f);
	/* selloTitulo joined with '|' by one producer: does not match (§11 a) */
	char *piped = with_autenticacion(g_signed, A_NOCERT, "|", 1);
	assert_int_equal(titulo_verify(v, piped, strlen(piped), 0, &f), FIRMANTE_E_INVALID);
	assert_non_null(find_rule(&f, "autenticacion-sello-titulo", "Autenticacion/@selloTitulo"));
	assert_null(find_rule(&f, "autenticacion-sello", NULL));
	titulo_findings_clear(&f);
	/* another authority certificate number */
	char *other = with_autenticacion(g_signed, "30001000000400000002", "", 1);
	assert_int_equal(titulo_verify(v, other, strlen(other), 0, &f), FIRMANTE_E_INVALID);
	assert_non_null(find_rule(&f, "autenticacion-cert-mismatch", "Autenticacion/@noCertificadoAutoridad"));
	titulo_findings_clear(&f);
	/* not a certificate */
	assert_int_equal(titulo_verifier_set_autoridad(v, (const uint8_t *)"abc", 3, &err),
			 FIRMANTE_E_CERT_INVALID);
	titulo_verifier_free(v);
	free(other);
	free(piped);
	free(forged);
	free(a);
}

/* titulo_show_* on the signed example. */
static void test_show(void **state)
{
	(void)state;
	titulo *t = NULL;
	assert_int_equal(titulo_parse(g_signed, strlen(g_signed), &t, NULL), 0);
	char *s = NULL;
	assert_int_equal(titulo_show_text(t, &s), 0);
	assert_non_null(strstr(s, "folioControl 2345678"));
	assert_non_null(strstr(s, "FirmaResponsable[1] (signed)"));
	assert_non_null(strstr(s, "INGENIERÍA EN NANOTECNOLOGÍA"));
	free(s);
	assert_int_equal(titulo_show_json(t, &s), 0);
	assert_non_null(strstr(s, "\"FirmaResponsables\""));
	assert_non_null(strstr(s, "\"curp\": \"AICA770112HDFRNL01\""));
	free(s);
	titulo_free(t);
}

/* ---- the rule table ----------------------------------------------------- */

static void test_rule_table(void **state)
{
	(void)state;
	size_t n;
	const struct titulo_rule *r = titulo_rules(&n);
	assert_true(n >= 60);
	for (size_t i = 0; i < n; i++) {
		assert_non_null(r[i].code);
		assert_true(strlen(r[i].code) < 40);
		assert_true(r[i].text[0] && r[i].source[0] && r[i].where[0]);
		assert_ptr_equal(titulo_rule_find(r[i].code), &r[i]);
		for (const char *c = r[i].code; *c; c++)
			assert_true((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-');
		if (r[i].severity == TITULO_ERROR)
			assert_true(r[i].error < 0);
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(r[i].code, r[j].code);
	}
	assert_null(titulo_rule_find("no-such-rule"));
	char *md = NULL;
	size_t ml;
	assert_int_equal(titulo_rules_markdown(&md, &ml), 0);
	assert_int_equal(ml, strlen(md));
	assert_non_null(strstr(md, "| `curp-check-digit` | error | CSV |"));
	free(md);
	struct titulo_findings f = { 0 };
	assert_int_equal(titulo_finding_add(&f, "no-such-rule", -1, NULL, NULL, 0, 0, NULL, "x"),
			 FIRMANTE_E_INVALID);
	assert_int_equal(titulo_finding_add(&f, "signer-curp-mismatch", -1, "A", "f", 0, 0, "curp", "y %d", 1), 0);
	char *js = NULL;
	assert_int_equal(titulo_findings_json(&f, &js), 0);
	assert_non_null(strstr(js, "\"rule\":\"signer-curp-mismatch\""));
	assert_non_null(strstr(js, "\"message\":\"y 1\""));
	free(js);
	titulo_findings_clear(&f);
}

/* ---- setup --------------------------------------------------------------- */

static int setup(void **state)
{
	(void)state;
	struct titulo_error err;
	struct titulo_findings f = { 0 };
	if (titulo_catalogos_load(NULL, &g_cat, &err) != 0)
		return -1;
	if (titulo_config_load(CONF, g_cat, &g_conf, &f) != 0)
		return -1;
	titulo_findings_clear(&f);
	snprintf(g_dir, sizeof(g_dir), "/tmp/test_rules.XXXXXX");
	if (!mkdtemp(g_dir))
		return -1;
	g_key = EVP_RSA_gen(2048);
	g_akey = EVP_RSA_gen(2048);
	g_fiel = cert_b64(g_key, T_CURP, T_NOCERT, NULL);
	g_csd = cert_b64(g_key, T_CURP, T_NOCERT, "CSD01_PRUEBA");
	g_other = cert_b64(g_key, "PEMJ800101HDFRRN07", T_NOCERT, NULL);
	X509 *ax = cert_of(g_akey, "AUTORIDAD", A_NOCERT, NULL);
	unsigned char *der = NULL;
	int dl = i2d_X509(ax, &der);
	g_auth_der = malloc((size_t)dl);
	memcpy(g_auth_der, der, (size_t)dl);
	g_auth_len = (size_t)dl;
	OPENSSL_free(der);
	X509_free(ax);
	g_signed = signed_with(g_fiel, T_NOCERT);
	return titulo_verifier_new(NULL, &g_v, &err) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	const char *names[] = { "in.csv", "in.conf", "catalogos.csv" };
	for (size_t i = 0; i < 3; i++)
		unlink(path_of(names[i]));
	rmdir(g_dir);
	titulo_verifier_free(g_v);
	free(g_signed);
	free(g_fiel);
	free(g_csd);
	free(g_other);
	free(g_auth_der);
	EVP_PKEY_free(g_key);
	EVP_PKEY_free(g_akey);
	titulo_config_free(g_conf);
	titulo_catalogos_free(g_cat);
	return 0;
}

int main(void)
{
	static struct CMUnitTest tests[NCSV + NCONF + NXML + 32];
	static char names[NCSV + NCONF + NXML][96];
	size_t n = 0;
	for (size_t i = 0; i < NCSV; i++, n++) {
		snprintf(names[n], sizeof(names[n]), "csv_%s", csv_cases[i].name);
		tests[n] = (struct CMUnitTest){ names[n], run_csv_case, NULL, NULL,
						(void *)&csv_cases[i] };
	}
	for (size_t i = 0; i < NCONF; i++, n++) {
		snprintf(names[n], sizeof(names[n]), "conf_%s", conf_cases[i].name);
		tests[n] = (struct CMUnitTest){ names[n], run_conf_case, NULL, NULL,
						(void *)&conf_cases[i] };
	}
	for (size_t i = 0; i < NXML; i++, n++) {
		snprintf(names[n], sizeof(names[n]), "xml_%s", xml_cases[i].name);
		tests[n] = (struct CMUnitTest){ names[n], run_xml_case, NULL, NULL,
						(void *)&xml_cases[i] };
	}
	const struct CMUnitTest more[] = {
		cmocka_unit_test(test_csv_unknown_column),
		cmocka_unit_test(test_csv_duplicate_column),
		cmocka_unit_test(test_csv_missing_column),
		cmocka_unit_test(test_csv_field_count),
		cmocka_unit_test(test_csv_malformed),
		cmocka_unit_test(test_csv_empty),
		cmocka_unit_test(test_csv_not_an_encoding),
		cmocka_unit_test(test_csv_nul_in_field),
		cmocka_unit_test(test_csv_too_many_fields),
		cmocka_unit_test(test_csv_stray_quote),
		cmocka_unit_test(test_csv_header_only),
		cmocka_unit_test(test_unsigned_once),
		cmocka_unit_test(test_normalized_into_xml),
		cmocka_unit_test(test_empty_optional),
		cmocka_unit_test(test_dates_dmy),
		cmocka_unit_test(test_excel_export),
		cmocka_unit_test(test_bom_and_skip_invalid),
		cmocka_unit_test(test_5000_rows_50_defects),
		cmocka_unit_test(test_catalog_trailing_space),
		cmocka_unit_test(test_catalog_replaceable),
		cmocka_unit_test(test_signed_ok),
		cmocka_unit_test(test_csd_not_fiel),
		cmocka_unit_test(test_curp_not_certificate),
		cmocka_unit_test(test_bom),
		cmocka_unit_test(test_autenticacion),
		cmocka_unit_test(test_show),
		cmocka_unit_test(test_rule_table),
	};
	for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++)
		tests[n++] = more[i];
	return _cmocka_run_group_tests("test_rules", tests, n, setup, teardown);
}
