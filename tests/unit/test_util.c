/* core/util.h helpers that touch the running thread: hdx_thread_background lowers only the
 * calling thread's priority (the network thread and the commit stages keep theirs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/util.h"

struct seen {
    int before, returned, after;
    char name[16];
};

static void *background_thread(void *arg)
{
    struct seen *s = arg;
    s->before = getpriority(PRIO_PROCESS, (id_t)gettid());
    s->returned = hdx_thread_background("hdx-test-bg");
    s->after = getpriority(PRIO_PROCESS, (id_t)gettid());
    pthread_getname_np(pthread_self(), s->name, sizeof(s->name));
    return NULL;
}

static void test_background_is_per_thread(void **state)
{
    (void)state;
    struct seen s = {0};
    int mine = getpriority(PRIO_PROCESS, (id_t)gettid());
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, background_thread, &s), 0);
    pthread_join(t, NULL);
    int want = s.before + HDX_BACKGROUND_NICE > 19 ? 19 : s.before + HDX_BACKGROUND_NICE;
    assert_int_equal(s.returned, want);
    assert_int_equal(s.after, want);
    assert_true(s.after > s.before || s.before == 19);
    assert_string_equal(s.name, "hdx-test-bg");
    /* the caller of pthread_create is untouched */
    assert_int_equal(getpriority(PRIO_PROCESS, (id_t)gettid()), mine);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_background_is_per_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
