/* front: the people's side of the HTTPS port (DESIGN M7, M8): logins, sessions and the API
 * routes, on top of net/http_session.h. docs/HTTP.md is the reference for clients.
 *
 * Logins (POST /auth/login): throttled first (auth/throttle.h: per account, per source,
 * spraying), then checked on the auth worker (auth/worker.h: Argon2id off the event loop),
 * then, when a TOTP step or recovery code was used, that use is committed as an admin record
 * (user_totp_used / user_recovery_used) BEFORE the session is granted, so a code works once
 * even across a restart. A user without a second factor gets an enrol-only session, good for
 * POST /auth/mfa/enrol and nothing else. Every answer to a failed login is the same 401
 * "invalid credentials", whatever failed.
 * Sessions (auth/session.h) end by logout, idle timeout, lifetime, or at once when an admin
 * record changes their user (hdx_front_admin_committed: a lock, a password or MFA change,
 * revoke-sessions).
 * Every login, success or failure, every lockout and spray detection, logout and enrolment is
 * an audit record (audit/audit.h, event auth).
 * The API (front_api.c): GET /api/records, /api/records/SEQ, /api/stream (Server-Sent Events)
 * and /api/audit, each record authorized by the policy engine for the asking principal (the
 * policy data reloaded from the store whenever an admin record changes it) and each
 * disclosure and refusal audited (event access).
 * Thread: the network thread. */
#ifndef HDX_NET_FRONT_H
#define HDX_NET_FRONT_H

#include <event2/event.h>

#include "audit/audit.h"
#include "bus/bus.h"
#include "commit/commit.h"
#include "core/conf.h"
#include "crypto/keys.h"
#include "net/http_session.h"
#include "store/store.h"

struct hdx_front_env {
    const struct hdx_conf *conf;
    struct event_base *base;
    const struct hdx_keyring *kr;
    struct hdx_store *ro_store; /* the network thread's */
    struct hdx_bus *bus;        /* live records for /api/stream */
    struct hdx_dicom *dicom;    /* the DICOM catalogue, for DICOMweb; NULL: none */
    /* Hands an item to the commit pipeline (its on_done is called on this thread). */
    void (*submit)(void *arg, struct hdx_intake_item *it);
    void (*audit)(void *arg, const struct hdx_audit *a);
    void *arg;
};

struct hdx_front;
struct hdx_dicom;

/* Starts the auth worker and adds the routes to h. */
int hdx_front_new(const struct hdx_front_env *env, struct hdx_http *h, struct hdx_front **out,
                  char *why, size_t why_cap);
void hdx_front_free(struct hdx_front *f);
/* An admin record committed (any producer): sessions of a user it changed are re-checked. */
void hdx_front_admin_committed(struct hdx_front *f, const struct hdx_intake_item *it);
/* The log holds records up to seq: the FHIR view (fhir/index.h) follows it. */
void hdx_front_fhir_committed(struct hdx_front *f, uint64_t seq);
/* Once a second or so: expired sessions end. */
void hdx_front_tick(struct hdx_front *f);

#endif
