/* failsync: an LD_PRELOAD shim for fault injection. While the file named by
 * HDX_FAIL_FSYNC_FLAG exists, fsync and fdatasync fail with EIO without syncing, as a disk
 * that lost power or a failing device would report. Used by 38-fsync-failure. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int failing(void)
{
    const char *flag = getenv("HDX_FAIL_FSYNC_FLAG");
    return flag && access(flag, F_OK) == 0;
}

int fsync(int fd)
{
    static int (*real)(int);
    if (failing()) {
        errno = EIO;
        return -1;
    }
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (failing()) {
        errno = EIO;
        return -1;
    }
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
