/* policy_load: the decision engine's data (policy/policy.h) from the store (store/store.h): the
 * users' training dates, the care teams, the consent directives and the break-glass grants,
 * each table the replay of its admin records (commit/admin.h).
 * Contract: all or nothing, from one read snapshot: HDX_OK and a fresh *out (the caller frees
 * it with hdx_policy_free), or a negative hdx_err with *out NULL, and the caller keeps the
 * policy it has. A policy-table row no statement could have made (store.h: bad), a consent
 * naming no known purpose or role, or a training value that is not a date is
 * HDX_E_INTEGRITY: a skipped consent row would permit what the patient refused.
 * Training: "YYYY-MM-DD" counts as completed at 00:00:00 UTC of that day; "" is none.
 * Grants: those expired at now_us are left out; the others are decided against each request's
 * own time by the engine, so a policy needs no reload when a grant runs out, only when the
 * tables change (a committed admin record). Thread: the store handle's; not inside a
 * transaction (it takes a read snapshot). */
#ifndef HDX_POLICY_LOAD_H
#define HDX_POLICY_LOAD_H

#include <stdint.h>

#include "policy/policy.h"
#include "store/store.h"

int hdx_policy_load(struct hdx_store *s, int64_t training_period_days, int64_t now_us,
                    struct hdx_policy **out);

/* "YYYY-MM-DD" (a day that exists) as microseconds at 00:00 UTC into *us; HDX_E_INVAL else. */
int hdx_policy_date_us(const char *date, int64_t *us);

#endif
