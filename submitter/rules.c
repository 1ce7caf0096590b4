/*
 * Text and value rules of the builder: normalization (§12), CURP (§9),
 * dates (§8).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "titulo-internal.h"

/* Unicode White_Space (PropList.txt). */
static int is_white_space(utf8proc_int32_t c)
{
	return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
	       (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
	       c == 0x205F || c == 0x3000;
}

int titulo_normalize(const char *in, char **out, int *changed)
{
	int rc;
	utf8proc_uint8_t *nfc = NULL;
	char *res = NULL;
	if (!in || !out)
		return FIRMANTE_E_INVALID;
	utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)in, 0, &nfc,
					  UTF8PROC_NULLTERM | UTF8PROC_STABLE | UTF8PROC_COMPOSE);
	if (n < 0) {
		rc = n == UTF8PROC_ERROR_NOMEM ? FIRMANTE_E_NOMEM : FIRMANTE_E_INVALID;
		goto out;
	}
	res = malloc((size_t)n + 1);
	if (!res) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	size_t o = 0;
	int pending_space = 0;
	const utf8proc_uint8_t *p = nfc;
	utf8proc_ssize_t left = n;
	while (left > 0) {
		utf8proc_int32_t c;
		utf8proc_ssize_t k = utf8proc_iterate(p, left, &c);
		if (k <= 0) {
			rc = FIRMANTE_E_INVALID;
			goto out;
		}
		if (is_white_space(c)) {
			pending_space = o > 0;
		} else {
			if (c < 0x20 || c == 0xFFFE || c == 0xFFFF || c == '|') {
				rc = FIRMANTE_E_INVALID;
				goto out;
			}
			if (pending_space)
				res[o++] = ' ';
			pending_space = 0;
			memcpy(res + o, p, (size_t)k);
			o += (size_t)k;
		}
		p += k;
		left -= k;
	}
	res[o] = '\0';
	*changed = strcmp(res, in) != 0;
	*out = res;
	res = NULL;
	rc = 0;
out:
	free(nfc);
	free(res);
	return rc;
}

static int curp_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'N')
		return c - 'A' + 10;
	if (c >= 'O' && c <= 'Z')
		return c - 'A' + 11; /* Ñ sits between N and O */
	return -1;
}

static const char *const curp_states[] = {
	"AS", "BC", "BS", "CC", "CL", "CM", "CS", "CH", "DF", "DG", "GT", "GR", "HG", "JC", "MC", "MN",
	"MS", "NT", "NL", "OC", "PL", "QT", "QR", "SP", "SL", "SR", "TC", "TS", "TL", "VZ", "YN", "ZS",
	"NE"
};

static int is_upper(char c) { return c >= 'A' && c <= 'Z'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_inner_consonant(char c)
{
	return is_upper(c) && !strchr("AEIOU", c);
}

#define WHYK(kind, ...)                                   \
	do {                                              \
		if (why)                                  \
			snprintf(why, why_size, __VA_ARGS__); \
		return (kind);                            \
	} while (0)
#define WHY(...) WHYK(2, __VA_ARGS__)

int titulo_curp_check(const char *s, char *why, size_t why_size)
{
	return te_curp_check(s, why, why_size) ? FIRMANTE_E_INVALID : 0;
}

int te_curp_check(const char *s, char *why, size_t why_size)
{
	if (!s || strlen(s) != 18)
		WHYK(1, "a CURP has 18 characters, this one has %zu", s ? strlen(s) : 0);
	for (int i = 0; i < 4; i++)
		if (!is_upper(s[i]))
			WHY("characters 1-4 of a CURP are upper-case letters");
	if (!strchr("AEIOUX", s[1]))
		WHY("character 2 of a CURP is a vowel or X");
	for (int i = 4; i < 10; i++)
		if (!is_digit(s[i]))
			WHY("characters 5-10 of a CURP are the birth date YYMMDD");
	int mm = (s[6] - '0') * 10 + (s[7] - '0'), dd = (s[8] - '0') * 10 + (s[9] - '0');
	if (mm < 1 || mm > 12 || dd < 1 || dd > 31)
		WHY("characters 5-10 of a CURP are not a valid birth date YYMMDD");
	if (s[10] != 'H' && s[10] != 'M')
		WHY("character 11 of a CURP is the sex, H or M");
	int st = 0;
	for (size_t i = 0; i < sizeof(curp_states) / sizeof(curp_states[0]); i++)
		if (s[11] == curp_states[i][0] && s[12] == curp_states[i][1])
			st = 1;
	if (!st)
		WHY("characters 12-13 of a CURP are not a state code");
	for (int i = 13; i < 16; i++)
		if (!is_inner_consonant(s[i]))
			WHY("characters 14-16 of a CURP are consonants");
	if (!is_upper(s[16]) && !is_digit(s[16]))
		WHY("character 17 of a CURP is a digit or a letter");
	if (!is_digit(s[17]))
		WHY("character 18 of a CURP is the check digit");
	int sum = 0;
	for (int i = 0; i < 17; i++)
		sum += curp_value(s[i]) * (18 - i);
	int d = 10 - sum % 10;
	if (d == 10)
		d = 0;
	if (s[17] - '0' != d)
		WHYK(3, "the CURP check digit should be %d, not %c", d, s[17]);
	return 0;
}

int titulo_date_check(const char *s)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return FIRMANTE_E_INVALID;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && !is_digit(s[i]))
			return FIRMANTE_E_INVALID;
	int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
	int m = (s[5] - '0') * 10 + (s[6] - '0');
	int d = (s[8] - '0') * 10 + (s[9] - '0');
	if (y < 1900 || m < 1 || m > 12 || d < 1)
		return FIRMANTE_E_INVALID;
	int max = mdays[m - 1];
	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		max = 29;
	return d <= max ? 0 : FIRMANTE_E_INVALID;
}

int te_date_input(const char *in, char out[11])
{
	char buf[11];
	if (!in)
		return FIRMANTE_E_INVALID;
	size_t n = strlen(in);
	if (n == 10 && in[4] == '-') {
		memcpy(buf, in, 11);
	} else {
		/* DD/MM/YYYY, day and month of one or two digits */
		const char *s1 = strchr(in, '/');
		const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
		if (!s1 || !s2 || strchr(s2 + 1, '/'))
			return FIRMANTE_E_INVALID;
		size_t dl = (size_t)(s1 - in), ml = (size_t)(s2 - s1 - 1), yl = strlen(s2 + 1);
		if (dl < 1 || dl > 2 || ml < 1 || ml > 2 || yl != 4)
			return FIRMANTE_E_INVALID;
		memcpy(buf, s2 + 1, 4);
		buf[4] = '-';
		buf[5] = ml == 2 ? s1[1] : '0';
		buf[6] = s1[ml];
		buf[7] = '-';
		buf[8] = dl == 2 ? in[0] : '0';
		buf[9] = in[dl - 1];
		buf[10] = '\0';
	}
	if (titulo_date_check(buf) != 0)
		return FIRMANTE_E_INVALID;
	memcpy(out, buf, 11);
	return 0;
}
