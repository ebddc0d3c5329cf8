#include "core/err.h"

const char *hdx_strerror(int err)
{
    switch (err) {
    case HDX_OK:
        return "ok";
    case HDX_EAGAIN:
        return "need more input";
    case HDX_E_NOMEM:
        return "out of memory";
    case HDX_E_INVAL:
        return "invalid input";
    case HDX_E_TOOBIG:
        return "over size limit";
    case HDX_E_IO:
        return "i/o error";
    case HDX_E_CRYPTO:
        return "cryptographic failure";
    case HDX_E_STORE:
        return "store error";
    case HDX_E_NOTFOUND:
        return "not found";
    case HDX_E_EXISTS:
        return "already exists";
    case HDX_E_TIMEOUT:
        return "timed out";
    case HDX_E_PERM:
        return "permission denied";
    case HDX_E_TLS:
        return "tls error";
    case HDX_E_CONFIG:
        return "configuration error";
    case HDX_E_INTEGRITY:
        return "integrity check failed";
    }
    return "unknown error";
}
