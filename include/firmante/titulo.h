/*
 * The title room (submitter/, prefix titulo_): the Título Electrónico v1.0
 * document model, its XML form, the cadena original and verification.
 *
 * Source of the rules: ../shared/spec/titulo-electronico.md (the SEP/DGP
 * standard, DOF 13 April 2018, in implementer's terms); section numbers
 * below refer to it.
 *
 * This header is the contract the agent (agent/) relies on; the submitter
 * extends the model with builder and verification functions declared in
 * titulo-build.h.
 */
#ifndef FIRMANTE_TITULO_H
#define FIRMANTE_TITULO_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Namespace of every element (§1); compared byte for byte. */
#define TITULO_NS "https://www.siged.sep.gob.mx/titulos/"
#define TITULO_VERSION "1.0"
/* Number of fields in a FirmaResponsable cadena original (§5.2). */
#define TITULO_CADENA_FIELDS 38

typedef struct titulo titulo;

/* Where and why a document was refused. Strings are UTF-8, NUL-terminated. */
struct titulo_error {
	int code;           /* negative firmante error (FIRMANTE_E_BAD_DOCUMENT...) */
	int line;           /* 1-based line in the XML, 0 when unknown */
	char field[128];    /* "Profesionista/@curp", "FirmaResponsable[2]/@sello", ... */
	char message[512];  /* one sentence for a person */
};

/*
 * titulo_parse - parse a Título Electrónico XML document held in memory.
 * The parser is libxml2 with network access, DTD loading and entity
 * substitution disabled; documents above FIRMANTE_MAX_DOCUMENT bytes are
 * refused. Structure checked: root TituloElectronico in namespace
 * TITULO_NS, the child elements of §2 in order, at least one
 * FirmaResponsable. Attribute values are kept as the parser returns them
 * (entities decoded, no trimming; §5.1).
 * @xml, @len: the document (UTF-8), not retained.
 * @out: the model, written only on success; free with titulo_free().
 * @err: may be NULL; filled on failure.
 * Returns 0, FIRMANTE_E_BAD_DOCUMENT, FIRMANTE_E_TOO_LARGE, FIRMANTE_E_NOMEM.
 */
int titulo_parse(const char *xml, size_t len, titulo **out, struct titulo_error *err);

/* titulo_free - free a model; NULL is a no-op. */
void titulo_free(titulo *t);

/* titulo_firmantes_count - number of FirmaResponsable elements (≥ 1). */
size_t titulo_firmantes_count(const titulo *t);

/*
 * titulo_firmante_attr - attribute of FirmaResponsable number @i (0-based,
 * document order), e.g. "curp", "idCargo", "cargo", "nombre", "sello".
 * Returns the value owned by @t, or NULL when absent or @i out of range.
 */
const char *titulo_firmante_attr(const titulo *t, size_t i, const char *name);

/*
 * titulo_attr - attribute of a single-occurrence element.
 * @element: "TituloElectronico", "Institucion", "Carrera", "Profesionista",
 *           "Expedicion", "Antecedente" (or "Autenticacion").
 * Returns the value owned by @t, or NULL when absent.
 */
const char *titulo_attr(const titulo *t, const char *element, const char *name);

/*
 * titulo_cadena - the cadena original of FirmaResponsable @i (§5):
 * "||" + 38 fields joined by "|" + "||"; an absent optional attribute gives
 * an empty field; UTF-8, no trailing newline.
 * @out: malloc'd, NUL-terminated, caller frees; @len: its length without
 * the NUL. Written only on success.
 * Returns 0, FIRMANTE_E_BAD_DOCUMENT (a required field is absent, or a
 * value holds '|'; @i out of range), FIRMANTE_E_NOMEM.
 */
int titulo_cadena(const titulo *t, size_t i, char **out, size_t *len);

/*
 * titulo_set_firma - store the sello and certificate of FirmaResponsable @i
 * (§6, §7). The strings are copied. @sello and @certificado are Base64 on
 * one line; @no_certificado 20 ASCII digits.
 * Returns 0, FIRMANTE_E_BAD_REQUEST (@i out of range or a value malformed),
 * FIRMANTE_E_NOMEM.
 */
int titulo_set_firma(titulo *t, size_t i, const char *sello,
		     const char *certificado, const char *no_certificado);

/*
 * titulo_serialize - write the document as XML per the output rules of §1:
 * UTF-8 without BOM, XML declaration, TITULO_NS as default namespace on
 * the root, children in the order of §2, no empty attributes.
 * @out: malloc'd, NUL-terminated; @len without the NUL. Written on success.
 * Returns 0, FIRMANTE_E_NOMEM, FIRMANTE_E_INTERNAL.
 */
int titulo_serialize(const titulo *t, char **out, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
