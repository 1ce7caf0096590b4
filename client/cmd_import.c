/*
 * firmante import --cer FILE.cer --key FILE.key [--token URI] ...
 * Moves a SAT e.firma onto a token (fp11_import_efirma), talking to the
 * token directly (not through the agent).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "firmante/pinentry.h"
#include "firmante/protocol.h"
#include "firmante/token.h"
#include "firmante/util.h"

#define SECRET_MAX 256
#define FILE_MAX (64u * 1024u)
#define PINENTRY_TIMEOUT 300 /* seconds a password or PIN dialog stays open */
#define PINENTRY_MAX_WORDS 8 /* --pinentry program and arguments */

int firmante_cmd_import(int argc, char **argv);

static void import_usage(FILE *f)
{
	fputs("usage: firmante import --cer FILE.cer --key FILE.key [--token URI]\n"
	      "                       [--module PATH] [--pinentry PROGRAM]\n"
	      "                       [--password-file FILE] [--pin-file FILE]\n"
	      "\n"
	      "Moves an e.firma (SAT .cer certificate and encrypted .key) onto a token:\n"
	      "the key is written as sensitive and not extractable, with the certificate\n"
	      "beside it (same CKA_ID: the certificate's subject key identifier). A CSD\n"
	      "(sello digital) is refused. The .key file stays on disk: delete it yourself\n"
	      "once the token works.\n"
	      "\n"
	      "  --cer FILE            the certificate (.cer, DER)\n"
	      "  --key FILE            the private key (.key, encrypted PKCS#8 DER)\n"
	      "  --token URI           which token (pkcs11:token=LABEL), when several are plugged in\n"
	      "  --module PATH         PKCS#11 module to use instead of the p11-kit registered ones\n"
	      "  --pinentry PROGRAM    the pinentry program asking for the password and the PIN\n"
	      "                        (default: pinentry; words split on blanks, no shell)\n"
	      "  --password-file FILE  the .key password from a file (tests, unattended use only)\n"
	      "  --pin-file FILE       the token's user PIN from a file (tests, unattended use only)\n"
	      "\n"
	      "Without the files, the password and PIN are asked through pinentry (the\n"
	      "same dialogs as the agent's; pinentry-curses on a terminal).\n",
	      f);
}

/* A whole small file into memory. */
static int read_small(const char *path, uint8_t **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t n = 0;

	if (!f)
		return FIRMANTE_E_IO;
	buf = malloc(FILE_MAX + 1);
	if (!buf) {
		fclose(f);
		return FIRMANTE_E_NOMEM;
	}
	n = fread(buf, 1, FILE_MAX + 1, f);
	fclose(f);
	if (n > FILE_MAX) {
		fm_wipe(buf, FILE_MAX + 1);
		free(buf);
		return FIRMANTE_E_TOO_LARGE;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* First line of @path (no newline) into @buf. */
static int read_secret_file(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return FIRMANTE_E_IO;
	if (!fgets(buf, (int)size, f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	return 0;
}

/* The pinentry program, started at the first question and kept for the next. */
struct asker {
	char *argv[PINENTRY_MAX_WORDS + 1];
	char words[512];
	fm_pinentry *pe;
};

/* Split @program on blanks into @a->argv (no quoting, no shell). */
static int asker_init(struct asker *a, const char *program)
{
	size_t n = 0;
	char *p;

	memset(a, 0, sizeof(*a));
	if (strlen(program) >= sizeof(a->words))
		return FIRMANTE_E_INVALID;
	memcpy(a->words, program, strlen(program) + 1);
	p = a->words;
	while (*p) {
		while (*p == ' ' || *p == '\t')
			*p++ = '\0';
		if (!*p)
			break;
		if (n == PINENTRY_MAX_WORDS)
			return FIRMANTE_E_INVALID;
		a->argv[n++] = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
	}
	return n ? 0 : FIRMANTE_E_INVALID;
}

/* One secret through pinentry into @buf (@size bytes). */
static int ask_pinentry(struct asker *a, const char *desc, const char *prompt, char *buf,
			size_t size)
{
	char detail[512];
	int rc;

	if (!a->pe) {
		rc = fm_pinentry_open(a->argv, PINENTRY_TIMEOUT, "firmante import", &a->pe, detail,
				      sizeof(detail));
		if (rc) {
			a->pe = NULL;
			fprintf(stderr, "firmante import: %s\n", detail);
			return rc;
		}
	}
	rc = fm_pinentry_getpin(a->pe, desc, prompt, NULL, buf, size, detail, sizeof(detail));
	if (rc)
		fprintf(stderr, "firmante import: %s\n", detail);
	return rc;
}

struct pin_src {
	const char *file;
	struct asker *asker;
};

static int import_pin_cb(void *data, const struct fp11_token_info *tok, bool context_specific,
			 char *pin, size_t pin_size)
{
	struct pin_src *ps = data;
	char desc[512], line[128];

	(void)context_specific;
	if (ps->file)
		return read_secret_file(ps->file, pin, pin_size) ? FIRMANTE_E_PINENTRY : 0;
	desc[0] = '\0';
	snprintf(line, sizeof(line), "\"%s\" (serial %s)", tok->label, tok->serial);
	fm_pinentry_desc_add(desc, sizeof(desc), "Enter the PIN of token ", line, 100);
	fm_pinentry_desc_add(desc, sizeof(desc), "", "to store your e.firma on it.", 80);
	if (tok->user_pin_final_try)
		fm_pinentry_desc_add(desc, sizeof(desc), "",
				     "WARNING: LAST try: a wrong PIN locks the token.", 80);
	else if (tok->user_pin_count_low)
		fm_pinentry_desc_add(desc, sizeof(desc), "",
				     "WARNING: a wrong PIN was entered before; few tries are left.",
				     80);
	return ask_pinentry(ps->asker, desc, "PIN:", pin, pin_size);
}

int firmante_cmd_import(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "cer", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "token", required_argument, NULL, 't' },
		{ "module", required_argument, NULL, 'm' },
		{ "password-file", required_argument, NULL, 'p' },
		{ "pin-file", required_argument, NULL, 'P' },
		{ "pinentry", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cer = NULL, *key = NULL, *token = NULL, *module = NULL, *pwfile = NULL;
	const char *pinentry = "pinentry";
	struct asker asker;
	struct pin_src ps = { NULL, &asker };
	uint8_t *cert_der = NULL, *key_der = NULL;
	size_t cert_len = 0, key_len = 0;
	char password[SECRET_MAX], detail[512];
	struct fp11_import_result res;
	fp11_ctx *p11 = NULL;
	int c, rc, status = 1;

	memset(password, 0, sizeof(password));
	memset(&asker, 0, sizeof(asker));
	/* A pinentry that exits first (after BYE, or killed) must not end
	 * this process with SIGPIPE: the write fails with EPIPE instead. */
	signal(SIGPIPE, SIG_IGN);
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': cer = optarg; break;
		case 'k': key = optarg; break;
		case 't': token = optarg; break;
		case 'm': module = optarg; break;
		case 'p': pwfile = optarg; break;
		case 'P': ps.file = optarg; break;
		case 'e': pinentry = optarg; break;
		case 'h': import_usage(stdout); return 0;
		default: import_usage(stderr); return 2;
		}
	}
	if (!cer || !key || optind != argc) {
		import_usage(stderr);
		return 2;
	}
	if (asker_init(&asker, pinentry) != 0) {
		fprintf(stderr, "firmante import: --pinentry needs a program and at most %d "
				"words\n", PINENTRY_MAX_WORDS);
		return 2;
	}
	rc = read_small(cer, &cert_der, &cert_len);
	if (rc) {
		fprintf(stderr, "firmante import: cannot read the certificate %s: %s\n", cer,
			rc == FIRMANTE_E_IO ? strerror(errno) : firmante_err_title(rc));
		goto out;
	}
	rc = read_small(key, &key_der, &key_len);
	if (rc) {
		fprintf(stderr, "firmante import: cannot read the key file %s: %s\n", key,
			rc == FIRMANTE_E_IO ? strerror(errno) : firmante_err_title(rc));
		goto out;
	}
	if (pwfile) {
		rc = read_secret_file(pwfile, password, sizeof(password));
	} else {
		struct fm_satcert sc;
		char desc[1024];

		desc[0] = '\0';
		fm_pinentry_desc_add(desc, sizeof(desc), "Password of the e.firma key file ", key,
				     200);
		if (fm_satcert_parse_der(cert_der, cert_len, &sc) == 0) {
			fm_pinentry_desc_add(desc, sizeof(desc), "Holder: ", sc.subject_cn, 90);
			fm_pinentry_desc_add(desc, sizeof(desc), "noCertificado: ", sc.no_certificado,
					     20);
		}
		fm_pinentry_desc_add(desc, sizeof(desc), "",
				     "(the password you chose at SAT for this .key file)", 80);
		rc = ask_pinentry(&asker, desc, "Password:", password, sizeof(password));
	}
	if (rc) {
		fprintf(stderr, "firmante import: no password for the .key file\n");
		goto out;
	}
	struct fp11_config cfg = { NULL, 0, true };
	const char *paths[1] = { module };
	if (module) {
		cfg.module_paths = paths;
		cfg.n_module_paths = 1;
		cfg.use_p11kit_registered = false;
	}
	rc = fp11_open(&cfg, &p11);
	if (rc) {
		fprintf(stderr, "firmante import: cannot load the PKCS#11 module%s%s\n",
			module ? " " : "s", module ? module : "");
		p11 = NULL;
		goto out;
	}
	rc = fp11_import_efirma(p11, token, import_pin_cb, &ps, cert_der, cert_len, key_der, key_len,
				password, &res, detail, sizeof(detail));
	fm_wipe(password, sizeof(password));
	if (key_der)
		fm_wipe(key_der, key_len);
	if (rc) {
		fprintf(stderr, "firmante import: %s\n", detail[0] ? detail : firmante_err_title(rc));
		goto out;
	}
	printf("Imported e.firma %s onto token \"%s\" as \"%s\".\n", res.no_certificado,
	       res.token_label, res.label);
	printf("The key is stored as sensitive and not extractable; CKA_ID ");
	for (size_t i = 0; i < res.id_len; i++)
		printf("%02x", res.id[i]);
	printf(".\n");
	printf("The file %s still exists on disk: once signing with the token works,\n"
	       "delete it or keep it offline (anyone with it and its password can sign as you).\n",
	       key);
	status = 0;
out:
	fm_wipe(password, sizeof(password));
	if (key_der) {
		fm_wipe(key_der, key_len);
		free(key_der);
	}
	free(cert_der);
	fp11_close(p11);
	fm_pinentry_close(asker.pe);
	return status;
}
