/*
 * The institution's configuration (INI, libinih): institution, careers as
 * registered with the DGP (§4), and the signers (FirmaResponsable, §3).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "firmante/util.h"
#include "titulo-internal.h"

#define CONFIG_MAX_BYTES (1u << 20)
#define CONFIG_MAX_SECTIONS 1000

#define CONFIG_MAX_BROKEN 16

struct cfg_reader {
	const char *p, *end;
	int line;
	int long_line;
	int in_broken;                    /* keys now follow a broken [section */
	int broken[CONFIG_MAX_BROKEN];    /* lines of section headers without ']' */
	int nbroken;
};

struct cfg_ctx {
	struct titulo_config *c;
	struct titulo_findings *findings;
	struct cfg_reader rd;
	char last_section[256];
	int kind;  /* 0 none, 1 institucion, 2 carrera, 3 firmante */
	int rc;    /* first hard error (NOMEM) */
	int errors;
};

/* fgets-like reader over memory; counts lines for the findings. */
static char *cfg_read_line(char *str, int num, void *stream)
{
	struct cfg_reader *r = stream;
	if (r->p >= r->end)
		return NULL;
	const char *nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
	size_t n = nl ? (size_t)(nl - r->p) + 1 : (size_t)(r->end - r->p);
	r->line++;
	if (n >= (size_t)num) {
		r->long_line = r->line;
		memcpy(str, r->p, (size_t)num - 2);
		str[num - 2] = '\n';
		str[num - 1] = '\0';
	} else {
		memcpy(str, r->p, n);
		str[n] = '\0';
	}
	r->p += n;
	/* A line opening a section: libinih reports one without its ']' only as
	 * a syntax error and keeps the keys below it in the previous section;
	 * here they are set aside and the header is reported at its line. */
	const char *q = str;
	while (*q == ' ' || *q == '\t')
		q++;
	if (*q == '[') {
		const char *close = strchr(q, ']');
		const char *semi = strchr(q, ';');
		int broken = !close || (semi && semi < close);
		r->in_broken = broken;
		if (broken && r->nbroken < CONFIG_MAX_BROKEN)
			r->broken[r->nbroken++] = r->line;
	}
	return str;
}

static char *dupstr(const char *s)
{
	size_t n = strlen(s);
	char *d = malloc(n + 1);
	if (d)
		memcpy(d, s, n + 1);
	return d;
}

static void cfg_err(struct cfg_ctx *x, const char *rule, int line, const char *field,
		    const char *msg)
{
	const struct titulo_rule *r = titulo_rule_find(rule);
	if (!r || r->severity == TITULO_ERROR)
		x->errors++;
	if (te_finding_r(x->findings, rule, -1, NULL, x->c ? x->c->path : NULL,
			 (unsigned long)line, 0, field,
			 "%s", msg) == FIRMANTE_E_NOMEM)
		x->rc = FIRMANTE_E_NOMEM;
}

/* Store @value (normalized, §12) in *@slot. */
static void set_value(struct cfg_ctx *x, char **slot, const char *field, const char *value)
{
	char *norm = NULL;
	int changed = 0;
	int line = x->rd.line;
	if (*slot) {
		cfg_err(x, "config-duplicate", line, field, "set twice (or continued on an indented line)");
		return;
	}
	int rc = titulo_normalize(value, &norm, &changed);
	if (rc == FIRMANTE_E_NOMEM) {
		x->rc = rc;
		return;
	}
	if (rc) {
		cfg_err(x, "config-text-invalid", line, field,
			"not valid UTF-8 text, or holds a control character or '|'");
		return;
	}
	if (changed) {
		char msg[512];
		snprintf(msg, sizeof(msg), "normalized to \"%.400s\" (NFC, white space)", norm);
		cfg_err(x, "config-text-normalized", line, field, msg);
	}
	if (!norm[0]) {
		free(norm);
		return; /* empty: same as not given */
	}
	*slot = norm;
}

static int cfg_handler(void *user, const char *section, const char *name, const char *value)
{
	struct cfg_ctx *x = user;
	struct titulo_config *c = x->c;
	char field[320];
	if (x->rc)
		return 0;
	if (x->rd.in_broken)
		return 1; /* under a broken section header: reported once, at its line */
	if (strcmp(section, x->last_section) != 0) {
		snprintf(x->last_section, sizeof(x->last_section), "%s", section);
		x->kind = 0;
		if (c->ncarreras + c->nfirmantes >= CONFIG_MAX_SECTIONS) {
			cfg_err(x, "config-unknown-section", x->rd.line, section, "too many sections");
			return 0;
		}
		if (strcmp(section, "institucion") == 0) {
			x->kind = 1;
		} else if (strncmp(section, "carrera ", 8) == 0) {
			const char *cve = section + 8;
			while (*cve == ' ')
				cve++;
			for (size_t i = 0; i < c->ncarreras; i++)
				if (strcmp(c->carreras[i].cveCarrera, cve) == 0) {
					cfg_err(x, "config-duplicate", x->rd.line, section,
						"career section appears twice");
					return 0;
				}
			struct titulo_conf_carrera *a =
				realloc(c->carreras, (c->ncarreras + 1) * sizeof(*a));
			if (!a) {
				x->rc = FIRMANTE_E_NOMEM;
				return 0;
			}
			c->carreras = a;
			memset(&a[c->ncarreras], 0, sizeof(*a));
			a[c->ncarreras].line = x->rd.line;
			a[c->ncarreras].cveCarrera = dupstr(cve);
			if (!a[c->ncarreras].cveCarrera) {
				x->rc = FIRMANTE_E_NOMEM;
				return 0;
			}
			c->ncarreras++;
			x->kind = 2;
		} else if (strncmp(section, "firmante ", 9) == 0) {
			const char *nm = section + 9;
			while (*nm == ' ')
				nm++;
			for (size_t i = 0; i < c->nfirmantes; i++)
				if (strcmp(c->firmantes[i].seccion, nm) == 0) {
					cfg_err(x, "config-duplicate", x->rd.line, section,
						"signer section appears twice");
					return 0;
				}
			struct titulo_conf_firmante *a =
				realloc(c->firmantes, (c->nfirmantes + 1) * sizeof(*a));
			if (!a) {
				x->rc = FIRMANTE_E_NOMEM;
				return 0;
			}
			c->firmantes = a;
			memset(&a[c->nfirmantes], 0, sizeof(*a));
			a[c->nfirmantes].line = x->rd.line;
			a[c->nfirmantes].seccion = dupstr(nm);
			if (!a[c->nfirmantes].seccion) {
				x->rc = FIRMANTE_E_NOMEM;
				return 0;
			}
			c->nfirmantes++;
			x->kind = 3;
		} else {
			cfg_err(x, "config-unknown-section", x->rd.line, section,
				"unknown section; expected [institucion], [carrera <cveCarrera>] "
				"or [firmante <name>]");
			return 0;
		}
	}
	snprintf(field, sizeof(field), "[%s] %s", section, name);
	char **slot = NULL;
	if (x->kind == 1) {
		if (strcmp(name, "cveInstitucion") == 0)
			slot = &c->cveInstitucion;
		else if (strcmp(name, "nombreInstitucion") == 0)
			slot = &c->nombreInstitucion;
		else if (strcmp(name, "idEntidadFederativa") == 0)
			slot = &c->idEntidadFederativa;
	} else if (x->kind == 2) {
		struct titulo_conf_carrera *k = &c->carreras[c->ncarreras - 1];
		if (strcmp(name, "nombreCarrera") == 0)
			slot = &k->nombreCarrera;
		else if (strcmp(name, "idAutorizacionReconocimiento") == 0)
			slot = &k->idAutorizacionReconocimiento;
		else if (strcmp(name, "numeroRvoe") == 0)
			slot = &k->numeroRvoe;
	} else if (x->kind == 3) {
		struct titulo_conf_firmante *f = &c->firmantes[c->nfirmantes - 1];
		if (strcmp(name, "nombre") == 0)
			slot = &f->nombre;
		else if (strcmp(name, "primerApellido") == 0)
			slot = &f->primerApellido;
		else if (strcmp(name, "segundoApellido") == 0)
			slot = &f->segundoApellido;
		else if (strcmp(name, "curp") == 0)
			slot = &f->curp;
		else if (strcmp(name, "idCargo") == 0)
			slot = &f->idCargo;
		else if (strcmp(name, "cargo") == 0)
			slot = &f->cargo;
		else if (strcmp(name, "abrTitulo") == 0)
			slot = &f->abrTitulo;
		else if (strcmp(name, "key") == 0)
			slot = &f->key;
	} else {
		return 0; /* inside a refused section: reported once */
	}
	if (!slot) {
		cfg_err(x, "config-unknown-key", x->rd.line, field, "unknown key");
		return 0;
	}
	if (x->kind == 3 && slot == &c->firmantes[c->nfirmantes - 1].cargo) {
		/* compared byte for byte with the catalog, so kept as written; a
		 * value in double quotes keeps its spaces */
		size_t n = strlen(value);
		if (*slot) {
			cfg_err(x, "config-duplicate", x->rd.line, field, "set twice");
			return 0;
		}
		if (n >= 2 && value[0] == '"' && value[n - 1] == '"') {
			value++;
			n -= 2;
		}
		*slot = malloc(n + 1);
		if (!*slot) {
			x->rc = FIRMANTE_E_NOMEM;
			return 0;
		}
		memcpy(*slot, value, n);
		(*slot)[n] = '\0';
		return 1;
	}
	set_value(x, slot, field, value);
	return 1;
}

static int all_digits(const char *s, size_t n)
{
	if (!s || strlen(s) != n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

static void need(struct cfg_ctx *x, int line, const char *section, const char *key,
		 const char *v)
{
	if (!v) {
		char field[320], msg[128];
		snprintf(field, sizeof(field), "[%s] %s", section, key);
		snprintf(msg, sizeof(msg), "required key is missing");
		cfg_err(x, "config-missing-key", line, field, msg);
	}
}

static void check_catalog(struct cfg_ctx *x, const titulo_catalogos *cat, int line,
			  const char *field, const char *catalogo, const char *id)
{
	if (id && !titulo_catalogo_descripcion(cat, catalogo, id)) {
		char msg[256];
		snprintf(msg, sizeof(msg), "'%s' is not an id of the catalog %s", id, catalogo);
		cfg_err(x, "config-catalog-id", line, field, msg);
	}
}

static void validate(struct cfg_ctx *x, const titulo_catalogos *cat)
{
	struct titulo_config *c = x->c;
	char field[320], msg[512];
	need(x, 0, "institucion", "cveInstitucion", c->cveInstitucion);
	need(x, 0, "institucion", "nombreInstitucion", c->nombreInstitucion);
	need(x, 0, "institucion", "idEntidadFederativa", c->idEntidadFederativa);
	if (c->cveInstitucion && !all_digits(c->cveInstitucion, 6))
		cfg_err(x, "institution-key", 0, "[institucion] cveInstitucion",
			"cveInstitucion is the DGP's 6-digit institution key");
	if (c->idEntidadFederativa && !all_digits(c->idEntidadFederativa, 2))
		cfg_err(x, "config-entity", 0, "[institucion] idEntidadFederativa",
			"idEntidadFederativa is two digits, 01..33 (§3)");
	else
		check_catalog(x, cat, 0, "[institucion] idEntidadFederativa", "entidadFederativa",
			      c->idEntidadFederativa);
	if (c->ncarreras == 0)
		cfg_err(x, "config-no-career", 0, "[carrera]", "no [carrera <cveCarrera>] section");
	if (c->nfirmantes == 0)
		cfg_err(x, "config-no-signer", 0, "[firmante]", "no [firmante <name>] section");
	for (size_t i = 0; i < c->ncarreras; i++) {
		struct titulo_conf_carrera *k = &c->carreras[i];
		char sec[280];
		snprintf(sec, sizeof(sec), "carrera %s", k->cveCarrera);
		need(x, k->line, sec, "nombreCarrera", k->nombreCarrera);
		need(x, k->line, sec, "idAutorizacionReconocimiento", k->idAutorizacionReconocimiento);
		snprintf(field, sizeof(field), "[%s]", sec);
		if (!k->cveCarrera[0] || strchr(k->cveCarrera, '|') || !te_text_ok(k->cveCarrera))
			cfg_err(x, "config-missing-key", k->line, field, "the section needs the cveCarrera");
		else if (!all_digits(k->cveCarrera, 6))
			cfg_err(x, "career-key", k->line, field,
				"cveCarrera is usually the DGP's 6-digit career key");
		snprintf(field, sizeof(field), "[%s] idAutorizacionReconocimiento", sec);
		check_catalog(x, cat, k->line, field, "autorizacionReconocimiento",
			      k->idAutorizacionReconocimiento);
		if (k->idAutorizacionReconocimiento && !k->numeroRvoe &&
		    (strcmp(k->idAutorizacionReconocimiento, "1") == 0 ||
		     strcmp(k->idAutorizacionReconocimiento, "2") == 0)) {
			snprintf(field, sizeof(field), "[%s] numeroRvoe", sec);
			cfg_err(x, "rvoe-missing", k->line, field,
				"a career with an RVOE should give numeroRvoe (§10)");
		}
		if (k->idAutorizacionReconocimiento && k->numeroRvoe &&
		    strcmp(k->idAutorizacionReconocimiento, "1") != 0 &&
		    strcmp(k->idAutorizacionReconocimiento, "2") != 0) {
			snprintf(field, sizeof(field), "[%s] numeroRvoe", sec);
			cfg_err(x, "rvoe-unexpected", k->line, field,
				"numeroRvoe is given but the authorization is not an RVOE (1 or 2); "
				"public and autonomous institutions leave it out (§10)");
		}
	}
	for (size_t i = 0; i < c->nfirmantes; i++) {
		struct titulo_conf_firmante *f = &c->firmantes[i];
		char sec[280];
		snprintf(sec, sizeof(sec), "firmante %s", f->seccion);
		need(x, f->line, sec, "nombre", f->nombre);
		need(x, f->line, sec, "primerApellido", f->primerApellido);
		need(x, f->line, sec, "curp", f->curp);
		need(x, f->line, sec, "idCargo", f->idCargo);
		need(x, f->line, sec, "key", f->key);
		snprintf(field, sizeof(field), "[%s] idCargo", sec);
		check_catalog(x, cat, f->line, field, "cargo", f->idCargo);
		const char *ctext = f->idCargo ? titulo_catalogo_descripcion(cat, "cargo", f->idCargo)
					       : NULL;
		if (f->cargo && ctext && strcmp(f->cargo, ctext) != 0) {
			snprintf(field, sizeof(field), "[%s] cargo", sec);
			snprintf(msg, sizeof(msg),
				 "\"%s\" is not the catalog's text for idCargo %s, which is \"%s\"; "
				 "the DGP rejects any difference (accents, spaces, case) (§4, §13.3)",
				 f->cargo, f->idCargo, ctext);
			cfg_err(x, "cargo-text-mismatch", f->line, field, msg);
		}
		snprintf(field, sizeof(field), "[%s] curp", sec);
		if (f->curp) {
			char why[200];
			if (titulo_curp_check(f->curp, why, sizeof(why)) != 0) {
				/* the certificate's CURP is what counts (§7, §9) */
				int form = strlen(f->curp) == 18 && strstr(why, "check digit");
				snprintf(msg, sizeof(msg), "%s", why);
				cfg_err(x, form ? "signer-curp-check-digit" : "signer-curp", f->line, field, msg);
			}
			for (size_t j = 0; j < i; j++)
				if (c->firmantes[j].curp && strcmp(c->firmantes[j].curp, f->curp) == 0)
					cfg_err(x, "signer-curp-duplicate", f->line, field,
						"two signers have the same curp");
		}
		if (f->key && strncmp(f->key, "pkcs11:", 7) != 0) {
			snprintf(field, sizeof(field), "[%s] key", sec);
			cfg_err(x, "signer-key-uri", f->line, field,
				"key is a PKCS#11 URI (RFC 7512) starting with 'pkcs11:'");
		}
	}
}

void titulo_config_free(struct titulo_config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->ncarreras; i++) {
		struct titulo_conf_carrera *k = &c->carreras[i];
		free(k->cveCarrera);
		free(k->nombreCarrera);
		free(k->idAutorizacionReconocimiento);
		free(k->numeroRvoe);
	}
	for (size_t i = 0; i < c->nfirmantes; i++) {
		struct titulo_conf_firmante *f = &c->firmantes[i];
		free(f->seccion);
		free(f->nombre);
		free(f->primerApellido);
		free(f->segundoApellido);
		free(f->curp);
		free(f->idCargo);
		free(f->cargo);
		free(f->abrTitulo);
		free(f->key);
	}
	free(c->carreras);
	free(c->firmantes);
	free(c->path);
	free(c->cveInstitucion);
	free(c->nombreInstitucion);
	free(c->idEntidadFederativa);
	free(c);
}

const struct titulo_conf_firmante *titulo_config_firmante_by_curp(const struct titulo_config *c,
								   const char *curp)
{
	if (!c || !curp)
		return NULL;
	for (size_t i = 0; i < c->nfirmantes; i++)
		if (c->firmantes[i].curp && strcmp(c->firmantes[i].curp, curp) == 0)
			return &c->firmantes[i];
	return NULL;
}

int titulo_config_load(const char *path, const titulo_catalogos *cat,
		       struct titulo_config **out, struct titulo_findings *findings)
{
	int rc;
	char *buf = NULL;
	size_t len = 0;
	struct cfg_ctx x = { .findings = findings };

	x.c = calloc(1, sizeof(*x.c));
	if (!x.c) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	x.c->path = dupstr(path ? path : "");
	if (!x.c->path) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	errno = 0;
	rc = fm_read_file(path, CONFIG_MAX_BYTES, &buf, &len);
	if (rc) {
		if (rc == FIRMANTE_E_TOO_LARGE) {
			cfg_err(&x, "config-unreadable", 0, "",
				"the file is larger than 1 MiB, the most a configuration may be");
			rc = FIRMANTE_E_CONFIG;
		} else if (rc != FIRMANTE_E_NOMEM) {
			char msg[300];
			snprintf(msg, sizeof(msg), "cannot read the file: %s",
				 errno == EINVAL ? "it is a directory or not a regular file"
				 : errno	 ? strerror(errno)
						 : "read error");
			cfg_err(&x, "config-unreadable", 0, "", msg);
			rc = FIRMANTE_E_IO;
		}
		goto out;
	}
	if (memchr(buf, '\0', len)) {
		cfg_err(&x, "config-unreadable", 0, "", "the file holds a NUL byte");
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	x.rd.p = buf;
	x.rd.end = buf + len;
	int r = ini_parse_stream(cfg_read_line, &x.rd, cfg_handler, &x);
	if (x.rc) {
		rc = x.rc;
		goto out;
	}
	if (x.rd.long_line)
		cfg_err(&x, "config-unreadable", x.rd.long_line, "", "line too long");
	for (int i = 0; i < x.rd.nbroken; i++) {
		if (r == x.rd.broken[i])
			r = 0; /* said precisely below */
		cfg_err(&x, "config-syntax", x.rd.broken[i], "",
			"a section header without its closing ']' (write [name]); the keys "
			"below it, up to the next section, were not read");
	}
	if (r > 0 && x.errors == 0)
		cfg_err(&x, "config-syntax", r, "", "syntax error (expected [section] or key = value)");
	else if (r < 0 && x.errors == 0)
		cfg_err(&x, "config-syntax", 0, "", "cannot parse the file");
	validate(&x, cat);
	if (x.rc) {
		rc = x.rc;
		goto out;
	}
	if (x.errors) {
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	*out = x.c;
	x.c = NULL;
	rc = 0;
out:
	titulo_config_free(x.c);
	free(buf);
	return rc;
}
