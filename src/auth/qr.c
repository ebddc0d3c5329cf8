#include "auth/qr.h"

#include <errno.h>
#include <fcntl.h>
#include <png.h>
#include <qrencode.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"

#define QUIET 4 /* modules of light border: ISO/IEC 18004 asks for 4 */
#define PX 8    /* PNG pixels a module */

/* Error correction M (15%): an otpauth URI fits in version 6-7 and a phone reads it from a
 * screen easily. */
static QRcode *encode(const char *text)
{
    return QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
}

static void qr_free(QRcode *q)
{
    if (!q) return;
    sodium_memzero(q->data, (size_t)q->width * (size_t)q->width);
    QRcode_free(q);
}

/* 1 for a dark module; the quiet zone and anything outside is light. */
static int dark(const QRcode *q, int x, int y)
{
    x -= QUIET;
    y -= QUIET;
    if (x < 0 || y < 0 || x >= q->width || y >= q->width) return 0;
    return q->data[y * q->width + x] & 1;
}

int hdx_qr_print(FILE *out, const char *text)
{
    QRcode *q = encode(text);
    if (!q) return HDX_E_INVAL;
    int side = q->width + 2 * QUIET;
    /* The blocks draw the light modules, as `qrencode -t UTF8` does: on the usual dark
     * terminal that is dark code on a light field. */
    for (int y = 0; y < side; y += 2) {
        for (int x = 0; x < side; x++) {
            int top = !dark(q, x, y), bottom = y + 1 < side ? !dark(q, x, y + 1) : 0;
            fputs(top && bottom ? "\u2588" : top ? "\u2580" : bottom ? "\u2584" : " ", out);
        }
        fputc('\n', out);
    }
    qr_free(q);
    return ferror(out) ? HDX_E_IO : HDX_OK;
}

/* libpng reports errors by longjmp: nothing this function changes after setjmp is read after
 * it, so no local needs to be volatile. */
static int write_png_rows(FILE *f, png_bytep *rows, int side)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return HDX_E_NOMEM;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return HDX_E_IO;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)side, (png_uint_32)side, 8, PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return HDX_OK;
}

int hdx_qr_png(const char *path, const char *text, char *why, size_t why_cap)
{
    QRcode *q = encode(text);
    if (!q) {
        snprintf(why, why_cap, "the URI cannot be encoded as a QR code");
        return HDX_E_INVAL;
    }
    int side = (q->width + 2 * QUIET) * PX;
    size_t bytes = (size_t)side * (size_t)side;
    png_bytep pixels = malloc(bytes);
    png_bytep *rows = malloc((size_t)side * sizeof(*rows));
    int rc = HDX_E_NOMEM;
    FILE *f = NULL;
    if (!pixels || !rows) goto out;
    for (int y = 0; y < side; y++) {
        rows[y] = pixels + (size_t)y * (size_t)side;
        for (int x = 0; x < side; x++)
            rows[y][x] = dark(q, x / PX, y / PX) ? 0 : 255;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || !(f = fdopen(fd, "wb"))) {
        snprintf(why, why_cap, "cannot create %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        rc = HDX_E_IO;
        goto out;
    }
    rc = write_png_rows(f, rows, side);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) rc = HDX_E_IO;
    if (fclose(f) != 0) rc = HDX_E_IO;
    if (rc != HDX_OK) {
        snprintf(why, why_cap, "cannot write %s", path);
        unlink(path);
    }
out:
    if (rc == HDX_E_NOMEM) snprintf(why, why_cap, "out of memory");
    if (pixels) sodium_memzero(pixels, bytes); /* the image is the secret too */
    free(pixels);
    free(rows);
    qr_free(q);
    return rc;
}
