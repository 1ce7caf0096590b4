/*
 * Builder: catalogs (§4), CURP (§9), dates (§8), normalization (§12),
 * institution configuration, graduates' CSV and the rules checked on it.
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

#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "firmante/titulo.h"
#include "firmante/util.h"

#define CONF FIRMANTE_SOURCE_DIR "/examples/institucion.conf"
#define CSV FIRMANTE_SOURCE_DIR "/examples/egresados.csv"

static titulo_catalogos *g_cat;
static char g_dir[64];

static int setup(void **state)
{
	(void)state;
	struct titulo_error err;
	if (titulo_catalogos_load(NULL, &g_cat, &err) != 0)
		return -1;
	snprintf(g_dir, sizeof(g_dir), "/tmp/test_titulo_build.XXXXXX");
	return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	titulo_catalogos_free(g_cat);
	char p[128];
	const char *names[] = { "a.csv", "a.conf" };
	for (size_t i = 0; i < 2; i++) {
		snprintf(p, sizeof(p), "%s/%s", g_dir, names[i]);
		unlink(p);
	}
	rmdir(g_dir);
	return 0;
}

static const char *tmpfile_with(const char *name, const char *text)
{
	static char p[128];
	snprintf(p, sizeof(p), "%s/%s", g_dir, name);
	assert_int_equal(fm_write_file_atomic(p, text, strlen(text), 0600), 0);
	return p;
}

static void dump(const struct titulo_findings *f)
{
	char line[1400];
	for (size_t i = 0; i < f->count; i++)
		print_message("  %s\n", titulo_finding_format(&f->items[i], line, sizeof(line)));
}

static int has(const struct titulo_findings *f, int sev, const char *text)
{
	char line[1400];
	for (size_t i = 0; i < f->count; i++)
		if (f->items[i].severity == sev &&
		    strstr(titulo_finding_format(&f->items[i], line, sizeof(line)), text))
			return 1;
	return 0;
}

static void test_catalogs(void **state)
{
	(void)state;
	assert_string_equal(titulo_catalogo_descripcion(g_cat, "cargo", "3"), "RECTOR");
	assert_string_equal(titulo_catalogo_descripcion(g_cat, "entidadFederativa", "09"), "CIUDAD DE MÉXICO");
	assert_null(titulo_catalogo_descripcion(g_cat, "entidadFederativa", "9"));
	assert_null(titulo_catalogo_descripcion(g_cat, "cargo", "03"));
	assert_string_equal(titulo_catalogo_detalle(g_cat, "modalidadTitulacion", "1"), "ACTA DE EXAMEN");
	assert_string_equal(titulo_catalogo_detalle(g_cat, "modalidadTitulacion", "4"), "CONSTANCIA DE EXENCIÓN");
	assert_string_equal(titulo_catalogo_descripcion(g_cat, "cargo", "5"), "RESPONSABLE DE EXPEDICIÓN");
	assert_null(titulo_catalogo_descripcion(g_cat, "nada", "1"));
	titulo_catalogos_free(NULL);
	titulo_catalogos *c = NULL;
	struct titulo_error err;
	assert_int_equal(titulo_catalogos_load("/nonexistent/catalogos.csv", &c, &err), FIRMANTE_E_CONFIG);
	assert_null(c);
}

static void test_curp_and_dates(void **state)
{
	(void)state;
	char why[200];
	assert_int_equal(titulo_curp_check("PEMJ800101HDFRRN07", why, sizeof(why)), 0);
	assert_int_equal(titulo_curp_check("MEOJ700515HDFNRN00", why, sizeof(why)), 0);
	assert_int_equal(titulo_curp_check("ROSL750822MJCDNR01", why, sizeof(why)), 0);
	assert_int_equal(titulo_curp_check("PEMJ800101HDFRRN08", why, sizeof(why)), FIRMANTE_E_INVALID);
	assert_non_null(strstr(why, "check digit should be 7"));
	/* known failures of the fixtures (§9) */
	assert_int_equal(titulo_curp_check("HEGT761003MDFRNN09", why, sizeof(why)), FIRMANTE_E_INVALID);
	assert_non_null(strstr(why, "should be 7"));
	assert_int_equal(titulo_curp_check("EICA750212HDFRNL01", NULL, 0), FIRMANTE_E_INVALID);
	assert_int_equal(titulo_curp_check("PEMJ800101HDFRRN0", why, sizeof(why)), FIRMANTE_E_INVALID);
	assert_int_equal(titulo_curp_check("PEMJ801301HDFRRN07", why, sizeof(why)), FIRMANTE_E_INVALID);
	assert_int_equal(titulo_curp_check("PEMJ800101HXXRRN07", why, sizeof(why)), FIRMANTE_E_INVALID);
	assert_int_equal(titulo_date_check("2024-02-29"), 0);
	assert_int_equal(titulo_date_check("2023-02-29"), FIRMANTE_E_INVALID);
	assert_int_equal(titulo_date_check("2004-08-16-06:00"), FIRMANTE_E_INVALID);
	assert_int_equal(titulo_date_check("2004-8-16"), FIRMANTE_E_INVALID);
	assert_int_equal(titulo_date_check("2004-04-31"), FIRMANTE_E_INVALID);
}

static void test_normalize(void **state)
{
	(void)state;
	char *o = NULL;
	int ch = -1;
	assert_int_equal(titulo_normalize("PEÑA", &o, &ch), 0);
	assert_string_equal(o, "PEÑA");
	assert_int_equal(ch, 0);
	free(o);
	/* decomposed N + combining tilde → precomposed Ñ; NBSP, TAB, doubles */
	assert_int_equal(titulo_normalize("  PEN\xCC\x83" "A\xC2\xA0\tDE  LA\nO ", &o, &ch), 0);
	assert_string_equal(o, "PEÑA DE LA O");
	assert_int_equal(ch, 1);
	free(o);
	assert_int_equal(titulo_normalize("a|b", &o, &ch), FIRMANTE_E_INVALID);
	assert_int_equal(titulo_normalize("a\x01" "b", &o, &ch), FIRMANTE_E_INVALID);
	assert_int_equal(titulo_normalize("\xC3(", &o, &ch), FIRMANTE_E_INVALID);
	assert_int_equal(titulo_normalize(" \t", &o, &ch), 0);
	assert_string_equal(o, "");
	free(o);
}

static void test_config_example(void **state)
{
	(void)state;
	struct titulo_config *c = NULL;
	struct titulo_findings f = { 0 };
	int rc = titulo_config_load(CONF, g_cat, &c, &f);
	dump(&f);
	assert_int_equal(rc, 0);
	assert_int_equal(f.errors, 0);
	assert_string_equal(c->idEntidadFederativa, "09");
	assert_int_equal(c->nfirmantes, 2);
	assert_string_equal(c->firmantes[0].curp, "MEOJ700515HDFNRN00");
	assert_string_equal(c->firmantes[0].primerApellido, "MÉNDEZ");
	assert_string_equal(c->firmantes[0].key, "pkcs11:token=firmante-demo;id=%01;type=private");
	assert_string_equal(c->firmantes[1].idCargo, "6");
	assert_string_equal(c->firmantes[1].abrTitulo, "MTRA.");
	assert_true(c->ncarreras >= 3);
	assert_string_equal(c->carreras[0].cveCarrera, "103337");
	assert_string_equal(c->carreras[0].numeroRvoe, "1470");
	assert_non_null(titulo_config_firmante_by_curp(c, "ROSL750822MJCDNR01"));
	assert_null(titulo_config_firmante_by_curp(c, "XXXX"));
	titulo_config_free(c);
	titulo_config_free(NULL);
	titulo_findings_clear(&f);
}

static void test_config_errors(void **state)
{
	(void)state;
	const char *p = tmpfile_with("a.conf",
		"[institucion]\n"
		"cveInstitucion = 9001\n"
		"nombreInstitucion =  UNIVERSIDAD   DE PRUEBA \n"
		"idEntidadFederativa = 9\n"
		"colorFavorito = azul\n"
		"[carrera 100001]\n"
		"nombreCarrera = LICENCIATURA EN X\n"
		"idAutorizacionReconocimiento = 77\n"
		"[firmante rector]\n"
		"nombre = A\n"
		"primerApellido = B\n"
		"curp = MEOJ700515HDFNRN00\n"
		"idCargo = 99\n"
		"key = /home/rector/clave.key\n"
		"[otra cosa]\n"
		"x = 1\n");
	struct titulo_config *c = NULL;
	struct titulo_findings f = { 0 };
	assert_int_equal(titulo_config_load(p, g_cat, &c, &f), FIRMANTE_E_CONFIG);
	dump(&f);
	assert_null(c);
	assert_true(has(&f, TITULO_ERROR, "cveInstitucion is the DGP's 6-digit"));
	assert_true(has(&f, TITULO_ERROR, "idEntidadFederativa is two digits"));
	assert_true(has(&f, TITULO_ERROR, ":5: [institucion] colorFavorito: unknown key"));
	assert_true(has(&f, TITULO_ERROR, "'77' is not an id of the catalog autorizacionReconocimiento"));
	assert_true(has(&f, TITULO_ERROR, "'99' is not an id of the catalog cargo"));
	assert_true(has(&f, TITULO_ERROR, "PKCS#11 URI"));
	assert_true(has(&f, TITULO_ERROR, "unknown section"));
	assert_true(has(&f, TITULO_WARNING, ":3: warning: [institucion] nombreInstitucion: normalized to \"UNIVERSIDAD DE PRUEBA\""));
	titulo_findings_clear(&f);
}

static void test_build_example(void **state)
{
	(void)state;
	struct titulo_config *c = NULL;
	struct titulo_findings f = { 0 };
	struct titulo_lote *l = NULL;
	assert_int_equal(titulo_config_load(CONF, g_cat, &c, &f), 0);
	int rc = titulo_build_csv(c, g_cat, CSV, &l, &f);
	dump(&f);
	assert_int_equal(rc, 0);
	assert_true(l->count >= 10);
	int modalidades[7] = { 0 }, no_second = 0, exam = 0, exen = 0;
	for (size_t i = 0; i < l->count; i++) {
		titulo *t = l->titulos[i];
		assert_string_equal(titulo_attr(t, "TituloElectronico", "folioControl"), l->folios[i]);
		assert_int_equal(titulo_firmantes_count(t), 2);
		assert_string_equal(titulo_firmante_attr(t, 0, "cargo"), "RECTOR");
		assert_string_equal(titulo_firmante_attr(t, 1, "cargo"), "SECRETARIO GENERAL");
		assert_null(titulo_firmante_attr(t, 0, "sello"));
		const char *m = titulo_attr(t, "Expedicion", "idModalidadTitulacion");
		modalidades[m[0] - '0']++;
		if (!titulo_attr(t, "Profesionista", "segundoApellido"))
			no_second++;
		exam += titulo_attr(t, "Expedicion", "fechaExamenProfesional") != NULL;
		exen += titulo_attr(t, "Expedicion", "fechaExencionExamenProfesional") != NULL;
		assert_string_equal(titulo_attr(t, "Expedicion", "entidadFederativa"),
				    titulo_catalogo_descripcion(g_cat, "entidadFederativa",
					titulo_attr(t, "Expedicion", "idEntidadFederativa")));
		assert_non_null(titulo_attr(t, "Antecedente", "entidadFederativa"));
		char *cad = NULL;
		size_t cl;
		assert_int_equal(titulo_cadena(t, 0, &cad, &cl), 0);
		free(cad);
		if (strcmp(titulo_attr(t, "Carrera", "cveCarrera"), "201455") == 0) {
			assert_non_null(titulo_attr(t, "Antecedente", "noCedula"));
			assert_string_equal(titulo_attr(t, "Expedicion", "cumplioServicioSocial"), "0");
			assert_string_equal(titulo_attr(t, "Expedicion", "idFundamentoLegalServicioSocial"), "5");
		}
		/* serialize → parse gives the same cadena */
		char *xml = NULL;
		size_t xl;
		titulo *t2 = NULL;
		assert_int_equal(titulo_serialize(t, &xml, &xl), 0);
		assert_int_equal(titulo_parse(xml, xl, &t2, NULL), 0);
		char *a = NULL, *b = NULL;
		size_t al, bl;
		assert_int_equal(titulo_cadena(t, 1, &a, &al), 0);
		assert_int_equal(titulo_cadena(t2, 1, &b, &bl), 0);
		assert_string_equal(a, b);
		free(a);
		free(b);
		free(xml);
		titulo_free(t2);
	}
	for (int m = 1; m <= 6; m++)
		assert_true(modalidades[m] > 0);
	assert_true(no_second > 0);
	assert_true(exam > 0 && exen > 0);
	titulo_lote_free(l);
	titulo_lote_free(NULL);
	titulo_config_free(c);
	titulo_findings_clear(&f);
}

static void test_build_errors(void **state)
{
	(void)state;
	struct titulo_config *c = NULL;
	struct titulo_findings f = { 0 };
	struct titulo_lote *l = NULL;
	assert_int_equal(titulo_config_load(CONF, g_cat, &c, &f), 0);
	const char *p = tmpfile_with("a.csv",
		"folioControl,curp,nombre,primerApellido,segundoApellido,correoElectronico,cveCarrera,fechaInicio,fechaTerminacion,idModalidadTitulacion,fechaExamenProfesional,fechaExencionExamenProfesional,fechaExpedicion,cumplioServicioSocial,idFundamentoLegalServicioSocial,idEntidadFederativa,institucionProcedencia,idTipoEstudioAntecedente,idEntidadFederativaAntecedente,fechaInicioAntecedente,fechaTerminacionAntecedente,noCedula\n"
		/* row 2: fine except two spaces in the name (warning) */
		"F-1,PEMJ800101HDFRRN07,JOSÉ  LUIS,PÉREZ,MARTÍNEZ,jl@example.mx,103337,2016-08-15,2020-06-26,1,2021-03-18,,2021-05-10,1,1,,CCH SUR,4,09,2013-08-19,2016-06-24,\n"
		/* row 3: bad CURP digit, exam date with a CONSTANCIA modalidad, entity 9, bad date */
		"F-2,PEMJ800101HDFRRN08,ANA,PÉREZ,,ana@example.mx,103337,2016-08-15,2020-06-31,2,2021-03-18,,2021-05-10,1,1,9,CCH SUR,4,09,2013-08-19,2016-06-24,\n"
		/* row 4: repeated folio, unknown career, POR TESIS without exam date */
		"F-1,PEMJ800101HDFRRN07,ANA,PÉREZ,,ana@example.mx,999999,2016-08-15,2020-06-26,1,,,2021-05-10,1,1,,CCH SUR,4,09,2013-08-19,2016-06-24,\n"
		/* row 5: exam after expedición, '|' in a value */
		"F-3,PEMJ800101HDFRRN07,ANA,PÉ|REZ,,ana@example.mx,103337,2016-08-15,2020-06-26,1,2021-06-18,,2021-05-10,1,1,,CCH SUR,4,09,2013-08-19,2016-06-24,\n");
	int rc = titulo_build_csv(c, g_cat, p, &l, &f);
	dump(&f);
	assert_int_equal(rc, FIRMANTE_E_INVALID);
	assert_null(l);
	assert_true(has(&f, TITULO_WARNING, "a.csv:2:3: warning: nombre: normalized to \"JOSÉ LUIS\""));
	assert_true(has(&f, TITULO_ERROR, "a.csv:3:2: curp: 'PEMJ800101HDFRRN08': the CURP check digit should be 7"));
	assert_true(has(&f, TITULO_ERROR, "a.csv:3:11: fechaExamenProfesional: modalidad 2 (POR PROMEDIO, CONSTANCIA DE EXENCIÓN) takes no"));
	assert_true(has(&f, TITULO_ERROR, "a.csv:3:12: fechaExencionExamenProfesional: modalidad 2"));
	assert_true(has(&f, TITULO_ERROR, "a.csv:3:16: idEntidadFederativa: '9' is not a two-digit entity id"));
	assert_true(has(&f, TITULO_ERROR, "a.csv:3:9: fechaTerminacion: '2020-06-31': June 2020 has 30 days; there is no day 31"));
	assert_true(has(&f, TITULO_ERROR, "a.csv:4:1: folioControl: folioControl 'F-1' is repeated"));
	assert_true(has(&f, TITULO_ERROR, "a.csv:4:7: cveCarrera: career '999999'"));
	assert_true(has(&f, TITULO_ERROR, "a.csv:4:11: fechaExamenProfesional: modalidad 1 (POR TESIS, ACTA DE EXAMEN) needs"));
	assert_true(has(&f, TITULO_ERROR, "a.csv:5:13: fechaExpedicion: fechaExpedicion 2021-05-10 is before fechaExamenProfesional"));
	assert_true(has(&f, TITULO_ERROR, "a.csv:5:4: primerApellido: character 3 is '|', which the cadena original uses between fields"));
	titulo_findings_clear(&f);

	/* header problems */
	p = tmpfile_with("a.csv", "folioControl,curp,edad\nX,Y,1\n");
	assert_int_equal(titulo_build_csv(c, g_cat, p, &l, &f), FIRMANTE_E_INVALID);
	dump(&f);
	assert_true(has(&f, TITULO_ERROR, "a.csv:1:3: edad: unknown column"));
	assert_true(has(&f, TITULO_ERROR, "nombre: required column is missing"));
	titulo_findings_clear(&f);
	/* malformed CSV */
	p = tmpfile_with("a.csv", "folioControl,\"curp\n");
	assert_int_equal(titulo_build_csv(c, g_cat, p, &l, &f), FIRMANTE_E_INVALID);
	assert_true(f.errors >= 1);
	titulo_findings_clear(&f);
	titulo_config_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_catalogs),
		cmocka_unit_test(test_curp_and_dates),
		cmocka_unit_test(test_normalize),
		cmocka_unit_test(test_config_example),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_build_example),
		cmocka_unit_test(test_build_errors),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
