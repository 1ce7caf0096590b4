/*
 * firmante import --cer FILE.cer --key FILE.key [--token URI] ...
 * Moves a SAT e.firma onto a token (fp11_import_efirma), talking to the
 * token directly (not through the agent).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "firmante/protocol.h"
#include "firmante/token.h"
#include "firmante/util.h"

#define SECRET_MAX 256
#define FILE_MAX (64u * 1024u)

int firmante_cmd_import(int argc, char **argv);

static void import_usage(FILE *f)
{
	fputs("usage: firmante import --cer FILE.cer --key FILE.key [--token URI]\n"
	      "                       [--module PATH] [--password-file FILE] [--pin-file FILE]\n"
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
	      "  --password-file FILE  the .key password from a file (tests, unattended use only)\n"
	      "  --pin-file FILE       the token's user PIN from a file (tests, unattended use only)\n"
	      "\n"
	      "Without the files, the password and PIN are asked on the terminal (not echoed).\n",
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

/* Ask on the terminal with echo off. */
static int ask_terminal(const char *prompt, char *buf, size_t size)
{
	struct termios old, quiet;
	FILE *tty = fopen("/dev/tty", "r+");
	int rc = 0;

	if (!tty)
		return FIRMANTE_E_PINENTRY;
	fputs(prompt, tty);
	fflush(tty);
	bool restore = tcgetattr(fileno(tty), &old) == 0;
	if (restore) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
	}
	if (!fgets(buf, (int)size, tty))
		rc = FIRMANTE_E_USER_DENIED;
	if (restore)
		tcsetattr(fileno(tty), TCSAFLUSH, &old);
	fputs("\n", tty);
	fclose(tty);
	if (rc == 0)
		buf[strcspn(buf, "\r\n")] = '\0';
	return rc;
}

struct pin_src {
	const char *file;
};

static int import_pin_cb(void *data, const struct fp11_token_info *tok, bool context_specific,
			 char *pin, size_t pin_size)
{
	struct pin_src *ps = data;
	char prompt[128];

	(void)context_specific;
	if (ps->file)
		return read_secret_file(ps->file, pin, pin_size) ? FIRMANTE_E_PINENTRY : 0;
	snprintf(prompt, sizeof(prompt), "PIN of token \"%s\": ", tok->label);
	return ask_terminal(prompt, pin, pin_size);
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
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cer = NULL, *key = NULL, *token = NULL, *module = NULL, *pwfile = NULL;
	struct pin_src ps = { NULL };
	uint8_t *cert_der = NULL, *key_der = NULL;
	size_t cert_len = 0, key_len = 0;
	char password[SECRET_MAX], detail[512];
	struct fp11_import_result res;
	fp11_ctx *p11 = NULL;
	int c, rc, status = 1;

	memset(password, 0, sizeof(password));
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': cer = optarg; break;
		case 'k': key = optarg; break;
		case 't': token = optarg; break;
		case 'm': module = optarg; break;
		case 'p': pwfile = optarg; break;
		case 'P': ps.file = optarg; break;
		case 'h': import_usage(stdout); return 0;
		default: import_usage(stderr); return 2;
		}
	}
	if (!cer || !key || optind != argc) {
		import_usage(stderr);
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
	if (pwfile)
		rc = read_secret_file(pwfile, password, sizeof(password));
	else
		rc = ask_terminal("Password of the e.firma .key file: ", password, sizeof(password));
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
	return status;
}
