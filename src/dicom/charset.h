/* charset: a DICOM value's bytes in its data set's Specific Character Set (0008,0005) to UTF-8
 * and back, through iconv (glibc). Supported: the default repertoire (ASCII; "ISO_IR 6" read
 * as it), ISO_IR 100, 101, 109, 110, 144, 126, 127, 138, 148, 166 (ISO 8859-1, -2, -3, -4, -5,
 * -7, -6, -8, -9, TIS-620), ISO_IR 13 (JIS X 0201), ISO_IR 192 (UTF-8), GB18030, GBK, and the
 * ISO 2022 forms (code extensions, PS3.3 C.12.1.1.2, PS3.5 6.1.2.5 and Annexes H, I, J):
 * "ISO 2022 IR 6", "ISO 2022 IR 100" ... "ISO 2022 IR 166" (the single-byte sets in G1),
 * "ISO 2022 IR 13" (JIS X 0201), "ISO 2022 IR 87" and "ISO 2022 IR 159" (JIS X 0208, 0212
 * in G0), "ISO 2022 IR 149" (KS X 1001 in G1) and "ISO 2022 IR 58" (GB 2312 in G1). The
 * escape sequences are read and written by charset.c itself, each run converted by a plain
 * descriptor (ISO-8859-n, EUC-JP, EUC-KR, GB2312): iconv's ISO-2022-KR is 7-bit SO/SI where
 * DICOM sends KS X 1001 with the high bit set, and ISO-2022-JP-2 has no G1 for IR 13 katakana,
 * so neither reads DICOM's form (see the DESIGN comment in charset.c).
 * A set it does not know, a multi-valued set with a term that takes no code extensions, a
 * byte sequence invalid in the set, an escape to a set not declared, or output over cap is
 * refused (HDX_E_INVAL with a fixed reason from open; HDX_E_INVAL or HDX_E_TOOBIG from the
 * conversions). On any refusal out is "" and *out_len 0.
 * Thread: any, but one struct hdx_charset at a time: open makes every iconv descriptor the
 * set needs once, and the conversions use (and reset) them. */
#ifndef HDX_DICOM_CHARSET_H
#define HDX_DICOM_CHARSET_H

#include <stddef.h>

struct hdx_charset; /* opened conversion (to and from UTF-8) for one Specific Character Set */

/* charset: the raw (0008,0005) value (backslash-separated, values space-trimmed; "" or NULL =
 * default repertoire; an empty value 1 of a multi-valued set = ISO 2022 IR 6). HDX_OK and
 * *out (close it with hdx_charset_close), HDX_E_INVAL with *why a fixed text, HDX_E_NOMEM. */
int hdx_charset_open(const char *charset, struct hdx_charset **out, const char **why);
void hdx_charset_close(struct hdx_charset *cs); /* NULL is fine */
/* in (len bytes in the set) to UTF-8 in out (NUL-terminated). HDX_OK, HDX_E_INVAL (invalid
 * bytes), HDX_E_TOOBIG (cap). */
int hdx_charset_to_utf8(struct hdx_charset *cs, const char *in, size_t len, char *out, size_t cap,
                        size_t *out_len);
/* UTF-8 to the set (for answers in the query's own set). HDX_E_INVAL when a character has no
 * encoding in the set (the caller then answers in ISO_IR 192). */
int hdx_charset_from_utf8(struct hdx_charset *cs, const char *in, size_t len, char *out, size_t cap,
                          size_t *out_len);
/* 1 when the set is the default repertoire or ISO_IR 192 (UTF-8 needs no conversion). */
int hdx_charset_is_utf8(const struct hdx_charset *cs);

#endif
