/*
 * firmante pair list | firmante pair revoke ORIGIN: the browser origins
 * paired with the agent (GET /v1/pairings, POST /v1/pairings/revoke).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "commands.h"
#include "firmante/client.h"
#include "firmante/protocol.h"

static void pair_usage(FILE *f)
{
	fprintf(f,
		"Usage: firmante pair list\n"
		"       firmante pair revoke ORIGIN\n"
		"\n"
		"list    web pages (origins such as https://escolar.example.edu.mx) paired\n"
		"        with the agent's browser listener, and since when\n"
		"revoke  forget ORIGIN: its token stops working at once; the page must be\n"
		"        paired again (with the holder's confirmation) to ask for signatures\n");
}

/* One request; prints the problem and returns the exit status on failure. */
static int call(const char *socket_path, const char *method, const char *path, const char *body,
		char **reply)
{
	firmante_client *cl = NULL;
	struct firmante_problem prob;
	int rc;

	rc = firmante_client_new(socket_path, &cl);
	if (rc < 0) {
		fprintf(stderr, "firmante: %s\n", firmante_err_title(rc));
		return 3;
	}
	firmante_client_set_timeout(cl, 60);
	rc = firmante_client_request(cl, method, path, body, reply, &prob);
	firmante_client_free(cl);
	if (rc < 0) {
		fprintf(stderr, "firmante: %s [%s]%s%s\n", prob.title, prob.code,
			prob.detail[0] ? ": " : "", prob.detail);
		return rc == FIRMANTE_E_NOT_FOUND ? 1 : 3;
	}
	return 0;
}

int cmd_pair(const char *socket_path, int as_json, int argc, char **argv)
{
	char *reply = NULL;
	json_t *root = NULL, *arr, *p;
	size_t i;
	int status;

	if (argc < 2) {
		pair_usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		pair_usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "list") && argc == 2) {
		status = call(socket_path, "GET", FIRMANTE_API_PREFIX "/pairings", NULL, &reply);
		if (status)
			return status;
		if (as_json) {
			fputs(reply, stdout);
			free(reply);
			return 0;
		}
		root = json_loads(reply, 0, NULL);
		free(reply);
		arr = json_object_get(root, "pairings");
		if (!json_is_array(arr)) {
			fprintf(stderr, "firmante: unreadable reply from the agent\n");
			json_decref(root);
			return 3;
		}
		if (json_array_size(arr) == 0)
			printf("No paired origins.\n");
		else
			printf("%-60s %s\n", "ORIGIN", "PAIRED (UTC)");
		json_array_foreach(arr, i, p) {
			const char *o = json_string_value(json_object_get(p, "origin"));
			const char *t = json_string_value(json_object_get(p, "paired"));

			printf("%-60s %s\n", o ? o : "?", t ? t : "?");
		}
		json_decref(root);
		return 0;
	}
	if (!strcmp(argv[1], "revoke") && argc == 3) {
		json_t *body = json_pack("{s:s}", "origin", argv[2]);
		char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;

		json_decref(body);
		if (!text) {
			fprintf(stderr, "firmante: out of memory\n");
			return 3;
		}
		status = call(socket_path, "POST", FIRMANTE_API_PREFIX "/pairings/revoke", text,
			      &reply);
		free(text);
		if (status)
			return status;
		if (as_json)
			fputs(reply, stdout);
		else
			printf("Revoked %s: its pages can no longer reach the agent.\n", argv[2]);
		free(reply);
		return 0;
	}
	pair_usage(stderr);
	return 2;
}
