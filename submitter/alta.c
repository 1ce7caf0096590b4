/*
 * Rules shared by the onboarding commands (onboarding.h): may a signer's
 * certificate be registered with the DGP, calendar days, the level of a
 * career, the form of a UUID.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "firmante/protocol.h"
#include "onboarding.h"

static int parse_date(const char *s, time_t *out)
{
	if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return FIRMANTE_E_INVALID;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
			return FIRMANTE_E_INVALID;
	int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
	int m = (s[5] - '0') * 10 + (s[6] - '0'), d = (s[8] - '0') * 10 + (s[9] - '0');
	if (m < 1 || m > 12 || d < 1 || d > 31)
		return FIRMANTE_E_INVALID;
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = m - 1;
	tm.tm_mday = d;
	tm.tm_hour = 12;
	time_t t = timegm(&tm);
	if (t == (time_t)-1 || tm.tm_mday != d)
		return FIRMANTE_E_INVALID; /* 2025-02-30 and the like */
	*out = t;
	return 0;
}

int alta_days_between(const char *from, const char *to, long *out)
{
	time_t a, b;
	if (parse_date(from, &a) || parse_date(to, &b))
		return FIRMANTE_E_INVALID;
	*out = (long)((b - a) / 86400);
	return 0;
}

int alta_check_signer(const char *conf_curp, const struct alta_cert *c, const char *today,
		      int min_days, char *reason, size_t size)
{
	long left = 0, since = 0;
	if (!c || !c->found) {
		snprintf(reason, size, "el agente no muestra la llave configurada; ¿está conectado "
				       "el token del firmante?");
		return FIRMANTE_E_KEY_NOT_FOUND;
	}
	if (strcmp(c->kind, "fiel") != 0) {
		snprintf(reason, size,
			 "el certificado %s es %s, no una e.firma; la DGP registra la e.firma "
			 "(FIEL) de cada firmante",
			 c->no_certificado,
			 strcmp(c->kind, "csd") == 0 ? "un CSD (sello digital)" : "de tipo desconocido");
		return FIRMANTE_E_CERT_NOT_FIEL;
	}
	if (!conf_curp || strcmp(conf_curp, c->curp) != 0) {
		snprintf(reason, size,
			 "la CURP del certificado %s es %s, pero la configuración dice %s; la DGP "
			 "rechaza títulos así (\"La Curp del ... no es igual a\")",
			 c->no_certificado, c->curp[0] ? c->curp : "(ninguna)",
			 conf_curp ? conf_curp : "(ninguna)");
		return FIRMANTE_E_INVALID;
	}
	if (alta_days_between(today, c->not_after, &left) ||
	    alta_days_between(c->not_before, today, &since)) {
		snprintf(reason, size, "las fechas de vigencia del certificado %s no se pueden leer",
			 c->no_certificado);
		return FIRMANTE_E_INVALID;
	}
	if (since < 0) {
		snprintf(reason, size, "el certificado %s es válido a partir del %s, todavía no",
			 c->no_certificado, c->not_before);
		return FIRMANTE_E_CERT_NOT_YET_VALID;
	}
	if (left < 0) {
		snprintf(reason, size,
			 "el certificado %s venció el %s; renueve la e.firma en el SAT, importe la "
			 "nueva al token y vuelva a generar el paquete",
			 c->no_certificado, c->not_after);
		return FIRMANTE_E_CERT_EXPIRED;
	}
	if (left < min_days) {
		snprintf(reason, size,
			 "el certificado %s vence el %s (en %ld día%s, menos de %d); renueve la "
			 "e.firma en el SAT antes de registrarla ante la DGP",
			 c->no_certificado, c->not_after, left, left == 1 ? "" : "s", min_days);
		return FIRMANTE_E_CERT_EXPIRED;
	}
	return 0;
}

static int starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

const char *alta_nivel(const char *n)
{
	if (!n)
		return NULL;
	if (starts(n, "TÉCNICO SUPERIOR UNIVERSITARIO") || starts(n, "TECNICO SUPERIOR UNIVERSITARIO"))
		return "TÉCNICO SUPERIOR UNIVERSITARIO";
	if (starts(n, "PROFESIONAL ASOCIADO"))
		return "PROFESIONAL ASOCIADO";
	if (starts(n, "MAESTRÍA") || starts(n, "MAESTRIA") || starts(n, "MAESTRO EN") ||
	    starts(n, "MAESTRA EN"))
		return "MAESTRÍA";
	if (starts(n, "DOCTORADO") || starts(n, "DOCTOR EN") || starts(n, "DOCTORA EN"))
		return "DOCTORADO";
	if (starts(n, "ESPECIALIDAD") || starts(n, "ESPECIALIZACIÓN") ||
	    starts(n, "ESPECIALIZACION") || starts(n, "ESPECIALISTA EN"))
		return "ESPECIALIDAD";
	if (starts(n, "LICENCIATURA") || starts(n, "LICENCIADO EN") || starts(n, "LICENCIADA EN") ||
	    starts(n, "INGENIERÍA") || starts(n, "INGENIERIA") || starts(n, "INGENIERO") ||
	    starts(n, "INGENIERA") || starts(n, "ARQUITECTURA") || starts(n, "ARQUITECTO") ||
	    starts(n, "MÉDICO CIRUJANO") || starts(n, "MEDICO CIRUJANO") ||
	    starts(n, "CIRUJANO DENTISTA") || starts(n, "CONTADOR PÚBLICO") ||
	    starts(n, "CONTADURÍA") || starts(n, "CONTADURIA"))
		return "LICENCIATURA";
	return NULL;
}

int alta_is_uuid(const char *s)
{
	static const int groups[] = { 8, 4, 4, 4, 12 };
	if (!s)
		return 0;
	for (int g = 0; g < 5; g++) {
		for (int i = 0; i < groups[g]; i++, s++) {
			char ch = *s;
			if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
			      (ch >= 'A' && ch <= 'F')))
				return 0;
		}
		if (g < 4 && *s++ != '-')
			return 0;
	}
	return *s == '\0';
}
