/*
 * firmante approve: the holder's decision on signature requests waiting in
 * the agent's approval queue (configuration "approval = queue"), through
 * GET/POST /v1/requests.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "commands.h"
#include "firmante/client.h"
#include "firmante/protocol.h"

static void approve_usage(FILE *f)
{
	fprintf(f,
		"Usage: firmante approve [--list]\n"
		"       firmante approve [--deny] ID...\n"
		"       firmante approve [--deny] --all\n"
		"\n"
		"Without ID: list the signature requests waiting for you, with everything\n"
		"they ask you to sign: who asks, which certificate, and the title\n"
		"(folioControl, graduate and CURP, career, date of issue).\n"
		"With ID(s): approve those requests (--deny: refuse them).\n"
		"--all: approve (or with --deny refuse) every waiting request.\n"
		"The agent must run with \"approval = queue\"; a request nobody decides\n"
		"within approval-timeout is refused.\n");
}

static const char *js(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "";
}

static int call(const char *socket_path, const char *method, const char *body, char **reply)
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
	rc = firmante_client_request(cl, method, FIRMANTE_API_PREFIX "/requests", body, reply,
				     &prob);
	firmante_client_free(cl);
	if (rc < 0) {
		fprintf(stderr, "firmante: %s [%s]%s%s\n", prob.title, prob.code,
			prob.detail[0] ? ": " : "", prob.detail);
		return rc == FIRMANTE_E_NOT_FOUND ? 1 : 3;
	}
	return 0;
}

static void print_request(json_t *r)
{
	json_t *caller = json_object_get(r, "caller"), *cert = json_object_get(r, "certificate");
	json_t *t = json_object_get(r, "title");
	char who[700];

	if (js(caller, "origin")[0])
		snprintf(who, sizeof(who), "web page %s (browser)", js(caller, "origin"));
	else
		snprintf(who, sizeof(who), "uid %lld, %s (pid %lld)",
			 (long long)json_integer_value(json_object_get(caller, "uid")),
			 js(caller, "exe"), (long long)json_integer_value(json_object_get(caller, "pid")));
	printf("Request %lld (received %s)\n",
	       (long long)json_integer_value(json_object_get(r, "request")), js(r, "received"));
	if (js(r, "warning")[0])
		printf("  WARNING:        %s\n", js(r, "warning"));
	printf("  Caller:         %s\n", who);
	printf("  Signer:         %s\n", js(cert, "name"));
	printf("  Signer CURP:    %s\n", js(cert, "curp"));
	printf("  Certificate:    %s, valid until %s (token %s)\n", js(cert, "no_certificado"),
	       js(cert, "not_after"), js(cert, "token"));
	if (json_is_object(json_object_get(r, "batch"))) {
		json_t *b = json_object_get(r, "batch"), *cars = json_object_get(b, "careers"), *car;
		size_t k;

		printf("  BATCH:          %lld titles, folioControl %s to %s\n",
		       (long long)json_integer_value(json_object_get(b, "count")),
		       js(b, "firstFolioControl"), js(b, "lastFolioControl"));
		json_array_foreach(cars, k, car) {
			printf("  Career:         %s (%lld)\n", js(car, "nombreCarrera"),
			       (long long)json_integer_value(json_object_get(car, "count")));
		}
		printf("  Manifest:       SHA-256 %s\n", js(b, "manifestSha256"));
		return;
	}
	printf("  Cargo:          %s\n", js(t, "cargo"));
	printf("  folioControl:   %s\n", js(t, "folioControl"));
	printf("  Graduate:       %s\n", js(t, "graduate"));
	printf("  Graduate CURP:  %s\n", js(t, "graduate_curp"));
	printf("  Career:         %s\n", js(t, "career"));
	printf("  Date of issue:  %s\n", js(t, "fechaExpedicion"));
	printf("  Institution:    %s\n", js(t, "institution"));
}

static int list(const char *socket_path, int as_json)
{
	char *reply = NULL;
	json_t *root, *arr, *r;
	size_t i;
	int status;

	status = call(socket_path, "GET", NULL, &reply);
	if (status)
		return status;
	if (as_json) {
		fputs(reply, stdout);
		free(reply);
		return 0;
	}
	root = json_loads(reply, 0, NULL);
	free(reply);
	arr = json_object_get(root, "requests");
	if (!json_is_array(arr)) {
		fprintf(stderr, "firmante: unreadable reply from the agent\n");
		json_decref(root);
		return 3;
	}
	if (json_array_size(arr) == 0)
		printf("No requests are waiting for your approval%s.\n",
		       strcmp(js(root, "approval"), "queue") == 0 ? ""
		       : " (the agent asks through pinentry; set approval = queue to use this)");
	json_array_foreach(arr, i, r) {
		if (i)
			printf("\n");
		print_request(r);
	}
	if (json_array_size(arr))
		printf("\nApprove with: firmante approve ID...  (or --all); refuse with --deny.\n");
	json_decref(root);
	return 0;
}

static int decide(const char *socket_path, int as_json, const char *id, bool all, bool approve)
{
	json_t *body;
	char *text, *reply = NULL;
	int status;

	if (all) {
		body = json_pack("{s:b, s:s}", "all", 1, "decision", approve ? "approve" : "deny");
	} else {
		char *end = NULL;
		long long n;

		errno = 0;
		n = strtoll(id, &end, 10);
		if (errno || !end || *end || n < 1) {
			fprintf(stderr, "firmante approve: \"%s\" is not a request number\n", id);
			return 2;
		}
		body = json_pack("{s:I, s:s}", "request", (json_int_t)n, "decision",
				 approve ? "approve" : "deny");
	}
	text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!text) {
		fprintf(stderr, "firmante: out of memory\n");
		return 3;
	}
	status = call(socket_path, "POST", text, &reply);
	free(text);
	if (status)
		return status;
	if (as_json) {
		fputs(reply, stdout);
	} else {
		json_t *root = json_loads(reply, 0, NULL);
		long long n = json_integer_value(json_object_get(root, "decided"));

		if (all)
			printf("%s %lld request(s).\n", approve ? "Approved" : "Refused", n);
		else
			printf("%s request %s.\n", approve ? "Approved" : "Refused", id);
		json_decref(root);
	}
	free(reply);
	return 0;
}

int cmd_approve(const char *socket_path, int as_json, int argc, char **argv)
{
	bool deny = false, all = false, listing = false;
	int n_ids = 0, status = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--deny"))
			deny = true;
		else if (!strcmp(argv[i], "--all"))
			all = true;
		else if (!strcmp(argv[i], "--list"))
			listing = true;
		else if (!strcmp(argv[i], "--json"))
			as_json = 1;
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			approve_usage(stdout);
			return 0;
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "firmante approve: unknown option \"%s\"\n", argv[i]);
			approve_usage(stderr);
			return 2;
		} else
			n_ids++;
	}
	if ((all && n_ids) || (listing && (all || n_ids || deny)) || (deny && !all && !n_ids)) {
		approve_usage(stderr);
		return 2;
	}
	if (!all && !n_ids)
		return list(socket_path, as_json);
	if (all)
		return decide(socket_path, as_json, "", true, !deny);
	for (int i = 1; i < argc; i++) {
		int s;

		if (argv[i][0] == '-')
			continue;
		s = decide(socket_path, as_json, argv[i], false, !deny);
		if (s && !status)
			status = s;
	}
	return status;
}
