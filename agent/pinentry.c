/*
 * firmanted: holder approval and PIN through pinentry. The dialog texts
 * are the agent's; starting the program and speaking Assuan with it is
 * the shared pinentry client (common/pinentry.c, firmante/pinentry.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "firmante/pinentry.h"
#include "firmante/protocol.h"
#include "firmante/util.h"

#define desc_add fm_pinentry_desc_add

struct agent_pinentry {
	fm_pinentry *pe;
};

void agent_pinentry_abort_all(void)
{
	fm_pinentry_abort_all();
}

void agent_pinentry_close(agent_pinentry *p)
{
	if (!p)
		return;
	fm_pinentry_close(p->pe);
	free(p);
}

int agent_pinentry_open(const struct agent_config *cfg, agent_pinentry **out,
			char *detail, size_t detail_size)
{
	struct agent_pinentry *p = calloc(1, sizeof(*p));
	int rc;

	if (!p)
		return FIRMANTE_E_NOMEM;
	rc = fm_pinentry_open(cfg->pinentry_argv, cfg->approval_timeout,
			      "firmante: signature request", &p->pe, detail, detail_size);
	if (rc) {
		free(p);
		return rc;
	}
	*out = p;
	return 0;
}

int agent_pinentry_confirm(agent_pinentry *p, const struct agent_approval *a,
			   char *detail, size_t detail_size)
{
	const struct fp11_identity *id = a->identity;
	char desc[2048], caller[700], cert_line[160], until[32];

	desc[0] = '\0';
	if (a->caller->origin[0])
		snprintf(caller, sizeof(caller), "web page %s (browser)", a->caller->origin);
	else
		snprintf(caller, sizeof(caller), "uid %lu, %s (pid %ld)",
			 (unsigned long)a->caller->uid, a->caller->exe, (long)a->caller->pid);
	fm_time_iso8601(id->cert.not_after, until, sizeof(until));
	snprintf(cert_line, sizeof(cert_line), "%s, valid until %s", id->cert.no_certificado, until);

	/* The warning comes first: an Assuan line holds 1000 bytes and
	 * the pinentry client cuts the end of a long description. */
	if (id->token.user_pin_final_try)
		desc_add(desc, sizeof(desc), "",
			 "WARNING: the token allows ONE more PIN try; a wrong PIN locks it.", 80);
	else if (id->token.user_pin_count_low)
		desc_add(desc, sizeof(desc), "",
			 "WARNING: a wrong PIN was entered before; few tries are left.", 80);
	desc_add(desc, sizeof(desc), "", "A program asks to sign a T\xc3\xadtulo Electr\xc3\xb3nico with your e.firma.", 80);
	desc_add(desc, sizeof(desc), "Caller: ", caller, 110);
	desc_add(desc, sizeof(desc), "Signer: ", id->cert.subject_cn, 70);
	desc_add(desc, sizeof(desc), "Signer CURP: ", id->cert.curp, 18);
	desc_add(desc, sizeof(desc), "Certificate: ", cert_line, 70);
	desc_add(desc, sizeof(desc), "Cargo: ", a->cargo, 50);
	desc_add(desc, sizeof(desc), "folioControl: ", a->folio_control, 40);
	desc_add(desc, sizeof(desc), "Graduate: ", a->graduate_name, 90);
	desc_add(desc, sizeof(desc), "Graduate CURP: ", a->graduate_curp, 18);
	desc_add(desc, sizeof(desc), "Career: ", a->nombre_carrera, 90);
	desc_add(desc, sizeof(desc), "Date of issue: ", a->fecha_expedicion, 20);
	desc_add(desc, sizeof(desc), "Institution: ", a->nombre_institucion, 70);
	if (id->token.protected_auth_path)
		desc_add(desc, sizeof(desc), "",
			 "Then enter the PIN on the token's own PIN pad.", 80);

	return fm_pinentry_confirm(p->pe, desc, "Sign?", "Sign", "Refuse", "confirmation", detail,
				   detail_size);
}

int agent_pinentry_getpin(agent_pinentry *p, const struct fp11_token_info *tok,
			  bool context_specific, const char *folio_control,
			  char *pin, size_t pin_size, char *detail, size_t detail_size)
{
	char desc[1024], line[300];

	desc[0] = '\0';
	snprintf(line, sizeof(line), "\"%s\" (serial %s)", tok->label, tok->serial);
	desc_add(desc, sizeof(desc), "Enter the PIN of token ", line, 100);
	desc_add(desc, sizeof(desc), "to sign the title with folioControl ", folio_control, 40);
	if (context_specific)
		desc_add(desc, sizeof(desc), "", "This key asks for its PIN again for each signature.", 80);
	if (tok->user_pin_final_try)
		desc_add(desc, sizeof(desc), "",
			 "WARNING: LAST try: a wrong PIN locks the token.", 80);
	else if (tok->user_pin_count_low)
		desc_add(desc, sizeof(desc), "",
			 "WARNING: a wrong PIN was entered before; few tries are left.", 80);

	return fm_pinentry_getpin(p->pe, desc, "PIN:", NULL, pin, pin_size, detail, detail_size);
}

bool agent_pinentry_timed_out(const agent_pinentry *p)
{
	return p && fm_pinentry_timed_out(p->pe);
}

int agent_pinentry_ask(agent_pinentry *p, const char *text, const char *ok, const char *cancel,
		       char *detail, size_t detail_size)
{
	char desc[2048];
	const char *line = text;

	/* One desc_add() per line: control characters become blanks. */
	desc[0] = '\0';
	while (line && *line) {
		const char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);
		char one[300];

		snprintf(one, sizeof(one), "%.*s", (int)(n < sizeof(one) - 1 ? n : sizeof(one) - 1),
			 line);
		desc_add(desc, sizeof(desc), "", one, 200);
		line = nl ? nl + 1 : NULL;
	}
	return fm_pinentry_confirm(p->pe, desc, "Allow?", ok, cancel, "confirmation", detail,
				   detail_size);
}
