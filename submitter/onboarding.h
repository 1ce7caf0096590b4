/*
 * Onboarding with the DGP and DGAIR (docs/onboarding.md): the registration
 * kit (titulos alta), the QA-to-production path (titulos qa-check, titulos
 * perfil), DGAIR-authenticated titles (titulos dgair import), and the rules
 * they share. Sources: met-web-service.md §9 (DGAIR), §10 (onboarding),
 * §11.5 (profiles); titulo-electronico.md §7, §11.
 */
#ifndef FIRMANTE_ONBOARDING_H
#define FIRMANTE_ONBOARDING_H

#include <stddef.h>

#include "state.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A signer certificate handed to the DGP must stay valid at least this many
 * days after the kit is made (the DGP registers it in person, §10.2). */
#define ALTA_MIN_DAYS 30
/* titulos report warns this many days before a signer certificate expires. */
#define ALTA_WARN_DAYS 60

/* A configured signer's key as the agent lists it (GET /v1/keys). */
struct alta_cert {
	int found;              /* 1 when the agent lists the configured key */
	char curp[19];          /* subject serialNumber */
	char kind[8];           /* "fiel", "csd" or "" */
	char not_before[11];    /* YYYY-MM-DD, "" when unknown */
	char not_after[11];
	char no_certificado[21];
};

/*
 * alta_check_signer - may this certificate be registered with the DGP as
 * the configured signer's (§10.2; titulo-electronico.md §6, §7)?
 * @conf_curp: the CURP in the institution configuration.
 * @c: the key's certificate fields.
 * @today: "YYYY-MM-DD".
 * @min_days: days the certificate must still be valid after @today
 *            (ALTA_MIN_DAYS).
 * @reason, @size: on refusal, a sentence for the registrar (Spanish terms of
 *            the SAT and DGP kept: e.firma, CSD, CURP); untouched on success.
 * Returns 0 when it may; FIRMANTE_E_KEY_NOT_FOUND (the agent lists no such
 * key), FIRMANTE_E_CERT_NOT_FIEL (a CSD or unknown kind),
 * FIRMANTE_E_CERT_EXPIRED (expired, or expiring within @min_days),
 * FIRMANTE_E_CERT_NOT_YET_VALID, FIRMANTE_E_INVALID (CURP of the
 * certificate is not the configured one, or dates unreadable).
 */
int alta_check_signer(const char *conf_curp, const struct alta_cert *c, const char *today,
		      int min_days, char *reason, size_t size);

/*
 * alta_days_between - whole days from @from to @to (both "YYYY-MM-DD", UTC
 * calendar days); negative when @to is earlier.
 * @out: written on success. Returns 0 or FIRMANTE_E_INVALID (not a date).
 */
int alta_days_between(const char *from, const char *to, long *out);

/*
 * alta_nivel - the educational level of a career for the DGP's registration
 * sheet, read from the start of its exact name: LICENCIATURA (also
 * INGENIERÍA, ARQUITECTURA, "LICENCIADO EN"...), MAESTRÍA, DOCTORADO,
 * ESPECIALIDAD, TÉCNICO SUPERIOR UNIVERSITARIO, PROFESIONAL ASOCIADO;
 * NULL when the name does not say (the registrar fills it in).
 */
const char *alta_nivel(const char *nombre_carrera);

/*
 * alta_is_uuid - 1 when @s is an RFC 4122 UUID in its text form
 * (8-4-4-4-12 hexadecimal digits, either case), else 0 (§11 folioDigital).
 */
int alta_is_uuid(const char *s);

/*
 * onboarding_production_check - before titulos submit sends anything with
 * profile @perfil: "produccion" is refused until `titulos perfil listo
 * produccion` recorded it ready in @st (§10.4-5, §11.5). Prints the reason.
 * Returns 0 (may send) or an exit status (1).
 */
int onboarding_production_check(met_state *st, const char *perfil);

/* onboarding_report - lines for titulos report: authenticated titles and
 * signer certificates that expire within ALTA_WARN_DAYS (or have
 * expired), as recorded by titulos alta. Prints to stdout. */
void onboarding_report(met_state *st);

/* titulos alta, qa-check, perfil, dgair: an exit status, or -1 when @cmd
 * is none of them. */
int titulos_cmd_onboarding(const char *cmd, int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
