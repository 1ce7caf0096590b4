/* firmante: the agent's command line (status, tokens, keys). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "firmante/build-config.h"
#include "firmante/client.h"
#include "firmante/protocol.h"
#include "commands.h"

enum exit_code { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_AGENT = 3 };

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: firmante [--socket PATH] [--json] COMMAND\n"
		"\n"
		"Talk to the firmanted signing agent.\n"
		"\n"
		"Commands:\n"
		"  status    the agent's version and how many tokens and keys it sees\n"
		"  tokens    tokens present: label, serial, maker, PIN state\n"
		"  keys      signing identities (key + certificate): CURP, RFC,\n"
		"            noCertificado, validity, e.firma or CSD, usable or why not\n"
		"  audit show|verify [--file PATH]\n"
		"            the agent's audit log; verify reports any edited, removed or\n"
		"            reordered line by number (exit status 1)\n"
		"  pair list | pair revoke ORIGIN\n"
		"            web pages paired with the browser listener; revoke one\n"
		"  approve [--deny] [ID... | --all]\n"
		"            signature requests waiting for you (approval = queue): list\n"
		"            them with what they sign, approve or refuse them\n"
		"  import --cer FILE.cer --key FILE.key [--token URI] ...\n"
		"            put an e.firma on a token (see firmante import --help)\n"
		"  doctor [--json] ...\n"
		"            check modules, tokens, PINs, certificate expiry, pcscd, udev\n"
		"            rules, the agent's socket and the agent; OK/WARN/FAIL lines with\n"
		"            hints, exit status 1 when a check failed (firmante doctor --help)\n"
		"\n"
		"Options:\n"
		"  -s, --socket PATH  agent socket (default: $FIRMANTE_SOCKET, else\n"
		"                     $XDG_RUNTIME_DIR/firmante/agent.sock)\n"
		"  -j, --json         print the agent's JSON reply unchanged\n"
		"  -h, --help         this help\n"
		"  -V, --version      version\n"
		"\n"
		"Exit status: 0 success, 2 usage error, 3 agent unreachable or error.\n");
}

static const char *str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static int flag(json_t *o, const char *k)
{
	return json_is_true(json_object_get(o, k));
}

static void print_status(json_t *r)
{
	printf("agent version:   %s\n", str(r, "version"));
	json_t *p = json_object_get(r, "protocol");
	printf("protocol:        %lld\n", json_is_integer(p) ? json_integer_value(p) : 0LL);
	json_t *t = json_object_get(r, "tokens"), *k = json_object_get(r, "identities");
	printf("tokens:          %lld\n", json_is_integer(t) ? json_integer_value(t) : 0LL);
	printf("signing keys:    %lld\n", json_is_integer(k) ? json_integer_value(k) : 0LL);
}

static void print_tokens(json_t *r)
{
	json_t *arr = json_object_get(r, "tokens");
	size_t i;
	json_t *t;
	if (!json_is_array(arr) || json_array_size(arr) == 0) {
		printf("No tokens present.\n");
		return;
	}
	printf("%-32s %-16s %-24s %s\n", "LABEL", "SERIAL", "MANUFACTURER / MODEL", "PIN");
	json_array_foreach(arr, i, t) {
		json_t *f = json_object_get(t, "flags");
		char maker[64];
		snprintf(maker, sizeof(maker), "%s %s", str(t, "manufacturer"), str(t, "model"));
		const char *pin = flag(f, "pin_locked")      ? "LOCKED"
				  : flag(f, "pin_final_try") ? "final try left"
				  : flag(f, "pin_count_low") ? "wrong PIN entered before"
				  : flag(f, "protected_auth_path") ? "PIN pad"
								     : "ok";
		printf("%-32s %-16s %-24s %s\n", str(t, "label"), str(t, "serial"), maker, pin);
	}
}

static void print_keys(json_t *r)
{
	json_t *arr = json_object_get(r, "keys");
	size_t i;
	json_t *k;
	if (!json_is_array(arr) || json_array_size(arr) == 0) {
		printf("No signing keys found (a key needs its certificate on the same token).\n");
		return;
	}
	json_array_foreach(arr, i, k) {
		json_t *tok = json_object_get(k, "token");
		printf("%s\n", str(k, "subject")[0] ? str(k, "subject") : str(k, "label"));
		printf("  token:          %s (serial %s)\n", str(tok, "label"), str(tok, "serial"));
		printf("  CURP:           %s\n", str(k, "curp"));
		printf("  RFC:            %s\n", str(k, "rfc"));
		printf("  noCertificado:  %s\n", str(k, "no_certificado"));
		printf("  valid:          %s .. %s\n", str(k, "not_before"), str(k, "not_after"));
		printf("  kind:           %s\n",
		       strcmp(str(k, "kind"), "fiel") == 0   ? "e.firma (FIEL)"
		       : strcmp(str(k, "kind"), "csd") == 0 ? "CSD (sello digital): not for titles"
							    : str(k, "kind"));
		json_t *sens = json_object_get(k, "sensitive"), *extr = json_object_get(k, "extractable");
		if (json_is_null(sens) || json_is_null(extr) || !sens || !extr)
			printf("  key:            hidden until login; checked at signing\n");
		else if (json_is_true(sens) && json_is_false(extr))
			printf("  key:            stays on the token (sensitive, not extractable)\n");
		else
			printf("  key:            EXTRACTABLE: the token would let it out\n");
		if (flag(k, "usable"))
			printf("  usable:         yes\n");
		else
			printf("  usable:         no: %s\n", str(k, "reason"));
		printf("  uri:            %s\n", str(k, "uri"));
	}
}

int firmante_cmd_import(int argc, char **argv); /* client/cmd_import.c */

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *socket_path = NULL;
	int as_json = 0, c;
	while ((c = getopt_long(argc, argv, "+s:jhV", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			socket_path = optarg;
			break;
		case 'j':
			as_json = 1;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'V':
			printf("firmante %s\n", FIRMANTE_VERSION);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc && strcmp(argv[optind], "audit") == 0)
		return cmd_audit(socket_path, as_json, argc - optind, argv + optind);
	if (optind < argc && strcmp(argv[optind], "pair") == 0)
		return cmd_pair(socket_path, as_json, argc - optind, argv + optind);
	if (optind < argc && strcmp(argv[optind], "approve") == 0)
		return cmd_approve(socket_path, as_json, argc - optind, argv + optind);
	if (optind < argc && strcmp(argv[optind], "doctor") == 0)
		return cmd_doctor(socket_path, as_json, argc - optind, argv + optind);
	/* Commands with their own options (client/cmd_*.c). */
	if (optind < argc && strcmp(argv[optind], "import") == 0)
		return firmante_cmd_import(argc - optind, argv + optind);
	if (optind != argc - 1) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[optind];
	const char *path;
	void (*printer)(json_t *);
	if (strcmp(cmd, "status") == 0) {
		path = FIRMANTE_API_PREFIX "/status";
		printer = print_status;
	} else if (strcmp(cmd, "tokens") == 0) {
		path = FIRMANTE_API_PREFIX "/tokens";
		printer = print_tokens;
	} else if (strcmp(cmd, "keys") == 0) {
		path = FIRMANTE_API_PREFIX "/keys";
		printer = print_keys;
	} else {
		fprintf(stderr, "firmante: unknown command '%s'\n", cmd);
		usage(stderr);
		return EXIT_USAGE;
	}

	firmante_client *cl = NULL;
	struct firmante_problem prob;
	char *reply = NULL;
	int rc = firmante_client_new(socket_path, &cl);
	if (rc == FIRMANTE_E_CONFIG) {
		fprintf(stderr, "firmante: the agent socket path is too long (a Unix socket path "
				"has at most 107 bytes)\n");
		return EXIT_USAGE;
	} else if (rc < 0) {
		fprintf(stderr, "firmante: %s\n", firmante_err_title(rc));
		return EXIT_AGENT;
	}
	firmante_client_set_timeout(cl, 60);
	rc = firmante_client_request(cl, "GET", path, NULL, &reply, &prob);
	firmante_client_free(cl);
	if (rc < 0) {
		fprintf(stderr, "firmante: %s [%s]%s%s\n", prob.title, prob.code,
			prob.detail[0] ? ": " : "", prob.detail);
		return EXIT_AGENT;
	}
	int status = EXIT_OK;
	if (as_json) {
		fputs(reply, stdout);
		if (reply[0] && reply[strlen(reply) - 1] != '\n')
			putchar('\n');
	} else {
		json_error_t jerr;
		json_t *root = json_loads(reply, 0, &jerr);
		if (!root) {
			fprintf(stderr, "firmante: unreadable reply from the agent: %s\n", jerr.text);
			status = EXIT_AGENT;
		} else {
			printer(root);
			json_decref(root);
		}
	}
	free(reply);
	return status;
}
