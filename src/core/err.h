/* err: the one error type of hdx.
 * Every fallible function returns HDX_OK (0) or a negative hdx_err. hdx_strerror() gives a
 * short stable text for logs; it never includes input bytes. Protocol front-ends map these
 * to the wire in exactly one place each (HL7 ACK codes in proto/ack.c). */
#ifndef HDX_ERR_H
#define HDX_ERR_H

enum hdx_err {
    HDX_OK = 0,
    HDX_EAGAIN = -1, /* need more input */
    HDX_E_NOMEM = -2,
    HDX_E_INVAL = -3,  /* bad argument or malformed input */
    HDX_E_TOOBIG = -4, /* input over a configured limit */
    HDX_E_IO = -5,     /* read/write/fsync failed */
    HDX_E_CRYPTO = -6, /* a crypto operation or authentication tag failed */
    HDX_E_STORE = -7,  /* database error */
    HDX_E_NOTFOUND = -8,
    HDX_E_EXISTS = -9,
    HDX_E_TIMEOUT = -10,
    HDX_E_PERM = -11, /* refused by policy */
    HDX_E_TLS = -12,
    HDX_E_CONFIG = -13,
    HDX_E_INTEGRITY = -14, /* stored data failed verification */
};

const char *hdx_strerror(int err);

#endif
