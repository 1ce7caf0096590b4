/*
 * Base64 decoding (common/util.c, fm_base64_decode): strict RFC 4648 §4.
 * Property: whatever decodes re-encodes to exactly the input (canonical
 * form only), and an encoding always decodes back to the bytes.
 */
#include <string.h>

#include "firmante/util.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *bytes = NULL, *back = NULL;
	char *text = NULL;
	size_t n = 0, back_len = 0;

	if (fm_base64_decode((const char *)data, size, &bytes, &n) == 0) {
		if (fm_base64_encode(bytes, n, &text) != 0)
			fuzz_fail("encoding %zu decoded bytes failed", n);
		if (strlen(text) != size || memcmp(text, data, size) != 0)
			fuzz_fail("accepted a non-canonical Base64 text of %zu bytes", size);
		free(text);
		text = NULL;
	}
	/* The other direction: the input as bytes. */
	if (fm_base64_encode(data, size, &text) != 0)
		fuzz_fail("encoding %zu bytes failed", size);
	if (fm_base64_decode(text, strlen(text), &back, &back_len) != 0)
		fuzz_fail("our own encoding of %zu bytes does not decode", size);
	if (back_len != size || (size && memcmp(back, data, size) != 0))
		fuzz_fail("encode/decode of %zu bytes is not the identity", size);
	free(bytes);
	free(back);
	free(text);
	return 0;
}
