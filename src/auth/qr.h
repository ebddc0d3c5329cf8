/* qr: the enrolment QR code of an otpauth:// URI (libqrencode), for a terminal (UTF-8 half
 * blocks: two module rows per text line, a 4-module quiet zone, dark on light whatever the
 * terminal's colours, since the blocks draw the light modules) and as a PNG file (libpng:
 * 8-bit greyscale, 8 pixels a module). The text holds a TOTP secret: the PNG is created
 * O_EXCL with mode 0600, and nothing here keeps a copy (libqrencode's bitmap is wiped).
 * Thread: any. */
#ifndef HDX_QR_H
#define HDX_QR_H

#include <stdio.h>

/* Writes the code for text to out. HDX_E_INVAL when text cannot be encoded. */
int hdx_qr_print(FILE *out, const char *text);
/* Writes the code for text to a new file path (refused when it exists). */
int hdx_qr_png(const char *path, const char *text, char *why, size_t why_cap);

#endif
